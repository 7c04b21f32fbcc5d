//! The node agent: reads what the kernel decided and counted, attaches Kubernetes identity
//! and policy traces, folds connections into flow updates, and uploads them. This first room
//! is the NFLOG collector: verdicts logged by the rendered ruleset, parsed into the rule tag
//! that decided and the packet's five-tuple.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod nflog;

pub use nflog::{parse_packet, parse_prefix, FiveTuple, NflogError, NflogSocket, Verdict};
