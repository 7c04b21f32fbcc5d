//! Caracal's flow model: what a flow log is (endpoints, key, counters, policy trace), how two
//! records of one key merge, how time is cut into 15 s buckets, and the one filter language
//! shared by the CLI, the HTTP API, the console and alert rules. Pure: no I/O, no clock reads.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod filter;
#[cfg(test)]
mod merge_props;
mod model;
mod record;
mod sets;
pub mod time;

pub use model::*;
pub use record::FlowRecord;
pub use sets::{BoundedSet, DOMAINS_BOUND, IPS_BOUND};
