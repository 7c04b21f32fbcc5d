//! The wire: Goldmane's gRPC API (`package goldmane`, wire-compatible with Calico v3.32 and
//! accepting the v3.30 `PolicyMatch`), Caracal's batched ingest protocol, and the only place
//! where wire messages become `caracal-flow` types and back, with typed errors.
#![deny(missing_docs)]

mod convert;
mod policy_match;

pub use convert::{filter_to_expr, hit_to_wire, policy_match_to_expr, ConvertError};
pub use policy_match::PolicyMatch;

/// Generated Goldmane messages and services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod goldmane {
    include!(concat!(env!("OUT_DIR"), "/goldmane.rs"));
}

/// Generated Caracal messages and services.
#[allow(missing_docs)]
pub mod caracal {
    /// Version 1 of Caracal's own protocol.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/caracal.v1.rs"));
    }
}
