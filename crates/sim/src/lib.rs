//! A seeded generator of realistic cluster traffic and its sender. `Cluster` is a small but
//! plausible cluster (namespaces, deployments with replica-set pod names and labels, services,
//! external networks, tiered and staged policies); `Generator` turns it into flow updates with
//! a daily rhythm; `send` pushes them through the real gRPC ingest. Same seed, same traffic.

mod cluster;
mod generator;
mod sender;

pub use cluster::{Cluster, Deployment, Route};
pub use generator::{daily_rhythm, keyspace, Generator};
pub use sender::{connect, send, ClientTls, Protocol, SendError, SendReport, SimulateConfig};
