//! The node agent: reads what the kernel decided and counted, attaches Kubernetes identity
//! and policy traces, folds connections into flow updates, and uploads them. The collectors
//! here read NFLOG verdicts (the rule tag that decided, and the packet's five-tuple) and
//! conntrack entries (original and reply tuples, counters), and snoop DNS answers for the
//! names behind destination addresses.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod assembly;
pub mod conntrack;
pub mod dns;
pub mod metrics;
mod netlink;
pub mod nflog;
pub mod runtime;
pub mod upload;

pub use assembly::{Assembler, AssemblyConfig, AssemblyStats, Directory, ServiceAddress};
pub use conntrack::{ConntrackEntry, ConntrackSocket, DirectionCounters, EntryEvent};
pub use dns::{parse_answer, DnsAnswer, DnsCache, DNS_PREFIX};
pub use nflog::{parse_packet, parse_prefix, FiveTuple, NflogError, NflogSocket, Verdict};
pub use runtime::{NodeAgent, NodeSockets, NodeStats};
pub use upload::{UploadConfig, UploadStats, Uploader};
