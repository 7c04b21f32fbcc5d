//! Network policy for Caracal: Calico's selector language, policy resources (Kubernetes
//! NetworkPolicy and Calico's tiered, global and staged policies, network sets) loaded from
//! YAML manifests, and the evaluator that turns a connection into enforced and pending policy
//! traces (flow-model.md §4). Pure: no I/O beyond reading the text it is given.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod selector;

pub use selector::{Selector, SelectorError};
pub mod eval;
pub mod load;
pub mod model;
pub mod render;
pub mod validate;

pub use eval::{Connection, Endpoint, Evaluator, Inventory, SideVerdict, Verdict, Workload};
pub use load::{load_str, LoadError, Manifests, NamedPort, NamespaceInfo, PodInfo};
pub use model::*;
pub use render::{
    render, LocalEndpoint, RenderError, RuleTag, Ruleset, DNS_LOG_PREFIX, DNS_SNAPLEN,
};
pub use validate::validate;
