//! The Caracal server: ingest of flow updates (Goldmane `FlowCollector`, Caracal's batched
//! protocol), the 15 s bucket ring holding the hot hour, and the query APIs over it (gRPC,
//! HTTP/JSON, SSE, Prometheus metrics), and the embedded web console.

mod config;
mod console;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod ring;
mod snapshot;
mod time_range;
mod whisker;

pub use config::{Server, ServerConfig, ServerError};
