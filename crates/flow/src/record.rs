//! The JSON form of a flow log used by the HTTP API, SSE and the CLI: flat snake_case fields
//! named as in flow-model.md, so `jq` filters read like the filter language.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{Action, EndpointType, Flow, PolicyTrace, Reporter};

/// One flow log as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Stable id of the key while the server holds it.
    pub id: i64,
    /// Start of the interval, Unix seconds.
    pub start_time: i64,
    /// End of the interval, Unix seconds.
    pub end_time: i64,
    /// Source endpoint type.
    pub source_type: EndpointType,
    /// Source namespace.
    pub source_namespace: String,
    /// Source name.
    pub source_name: String,
    /// Source labels (`key=value`).
    pub source_labels: Vec<String>,
    /// Source addresses seen.
    pub source_ips: Vec<IpAddr>,
    /// Whether source addresses were dropped to keep the bound.
    #[serde(default)]
    pub source_ips_truncated: bool,
    /// Destination endpoint type.
    pub dest_type: EndpointType,
    /// Destination namespace.
    pub dest_namespace: String,
    /// Destination name.
    pub dest_name: String,
    /// Destination labels.
    pub dest_labels: Vec<String>,
    /// Destination addresses seen.
    pub dest_ips: Vec<IpAddr>,
    /// Whether destination addresses were dropped to keep the bound.
    #[serde(default)]
    pub dest_ips_truncated: bool,
    /// Destination port.
    pub dest_port: u16,
    /// Service name.
    pub dest_service_name: String,
    /// Service namespace.
    pub dest_service_namespace: String,
    /// Service port name.
    pub dest_service_port_name: String,
    /// Service port.
    pub dest_service_port: u16,
    /// Destination domains.
    pub dest_domains: Vec<String>,
    /// Protocol.
    pub proto: String,
    /// Reporter.
    pub reporter: Reporter,
    /// Verdict.
    pub action: Action,
    /// Policy trace.
    pub policies: PolicyTrace,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Packets in.
    pub packets_in: u64,
    /// Packets out.
    pub packets_out: u64,
    /// Connections started.
    pub num_connections_started: u64,
    /// Connections completed.
    pub num_connections_completed: u64,
    /// Connections live.
    pub num_connections_live: u64,
}

impl FlowRecord {
    /// The record of a flow with its id.
    pub fn new(id: i64, flow: &Flow) -> Self {
        let key = &flow.key;
        FlowRecord {
            id,
            start_time: flow.start_time,
            end_time: flow.end_time,
            source_type: key.source.kind,
            source_namespace: key.source.namespace.clone(),
            source_name: key.source.name.clone(),
            source_labels: flow.source_labels.as_slice().to_vec(),
            source_ips: flow.source_ips.members().to_vec(),
            source_ips_truncated: flow.source_ips.truncated(),
            dest_type: key.dest.kind,
            dest_namespace: key.dest.namespace.clone(),
            dest_name: key.dest.name.clone(),
            dest_labels: flow.dest_labels.as_slice().to_vec(),
            dest_ips: flow.dest_ips.members().to_vec(),
            dest_ips_truncated: flow.dest_ips.truncated(),
            dest_port: key.dest_port,
            dest_service_name: key.service.name.clone(),
            dest_service_namespace: key.service.namespace.clone(),
            dest_service_port_name: key.service.port_name.clone(),
            dest_service_port: key.service.port,
            dest_domains: flow.dest_domains.members().to_vec(),
            proto: key.proto.clone(),
            reporter: key.reporter,
            action: key.action,
            policies: key.policies.clone(),
            bytes_in: flow.counters.bytes_in,
            bytes_out: flow.counters.bytes_out,
            packets_in: flow.counters.packets_in,
            packets_out: flow.counters.packets_out,
            num_connections_started: flow.counters.connections_started,
            num_connections_completed: flow.counters.connections_completed,
            num_connections_live: flow.counters.connections_live,
        }
    }
}
