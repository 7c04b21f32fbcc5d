//! The lab: a real multi-node cluster on one Linux host built from network namespaces, veth
//! pairs and /32 routes like Calico's routed model. This first room holds the pieces every
//! lab needs: namespaces named with a per-run prefix that delete themselves, routed pods on a
//! node, and sockets opened inside a namespace. No namespace gets a route to the host network.
#![deny(missing_docs)]

pub mod apps;
mod lab;
mod netns;
mod node;
pub mod spec;
mod traffic;

pub use lab::{down, render_services, Lab, LabPod, LabService, LabState, ServicePort, NFLOG_GROUP};
pub use netns::{delete_with_prefix, exec_in, in_namespace, LabError, Namespace, Prefix};
pub use node::{apply_nftables_in, tcp_connects, tcp_send, Node, Pod, TcpListeners};
pub use spec::{LabSpec, SpecError, TrafficProtocol, TrafficSpec};
pub use traffic::{dns_records, Servers, TrafficRunner, TrafficStats};
