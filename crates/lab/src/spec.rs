//! The lab spec: nodes, namespaces with labels, deployment-like workloads (replicas with
//! replica-set-style pod names, labels, placement, named ports), external hosts, and policy
//! files. Strict YAML: an unknown or invalid field is an error with its path, line and column.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// A spec that cannot be used, with the file and the reason.
#[derive(Debug, Error)]
#[error("{file}: {message}")]
pub struct SpecError {
    /// The spec file.
    pub file: String,
    /// What is wrong (field path, line and column when from the parser).
    pub message: String,
}

/// A lab spec.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// Spec format version; 1.
    pub version: u32,
    /// Node names (at least two, so cross-node traffic has two reporters).
    pub nodes: Vec<String>,
    /// Kubernetes namespaces and their labels.
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    /// Deployment-like workloads.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    /// ClusterIP services.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Hosts outside the cluster.
    #[serde(default)]
    pub externals: Vec<ExternalSpec>,
    /// Policy manifest files or directories, relative to the spec file.
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// Traffic the lab makes while it runs.
    #[serde(default)]
    pub traffic: Vec<TrafficSpec>,
}

/// A traffic pattern: TCP connections from a workload's replicas to a target.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// `NAMESPACE/WORKLOAD` whose replicas connect.
    pub from: String,
    /// `service:NS/NAME`, `workload:NS/NAME` or `external:NAME`.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// Connections per second (at most 200).
    pub rate: f64,
    /// Bytes sent on each connection (at most 1 MiB).
    #[serde(default)]
    pub bytes: usize,
    /// Seconds it runs; until the lab stops when absent.
    pub duration: Option<u64>,
}

/// A namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A named container port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Port name.
    pub name: String,
    /// Port number.
    pub port: u16,
    /// TCP or UDP.
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "TCP".into()
}

/// A deployment-like workload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Name (pods are `<name>-<hash>-<suffix>`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Pod count.
    #[serde(default = "one")]
    pub replicas: usize,
    /// Pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Nodes to place replicas on, round robin; all nodes when empty.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Listening ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

fn one() -> usize {
    1
}

/// A ClusterIP service: a virtual address DNAT'd to the pods its selector picks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Pod labels that pick its backends (in its namespace).
    pub selector: BTreeMap<String, String>,
    /// Ports.
    pub ports: Vec<ServicePortSpec>,
}

/// One port of a service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePortSpec {
    /// Port name.
    pub name: String,
    /// The service port.
    pub port: u16,
    /// The backend port: a number or the name of a container port.
    pub target_port: TargetPort,
    /// TCP or UDP.
    #[serde(default = "tcp")]
    pub protocol: String,
}

/// A backend port by number or by container port name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// A host outside the cluster, on the fabric.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// Name.
    pub name: String,
    /// Its address: a documentation or private range, never a real host.
    pub address: Ipv4Addr,
    /// TCP ports it listens on.
    #[serde(default)]
    pub ports: Vec<u16>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

impl LabSpec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<LabSpec, SpecError> {
        let file = path.display().to_string();
        let fail = |message: String| SpecError {
            file: file.clone(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|error| fail(format!("cannot read: {error}")))?;
        let spec: LabSpec = serde_yaml::from_str(&text).map_err(|error| fail(error.to_string()))?;
        spec.validate().map_err(fail)?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!("version: {} is not supported; use 1", self.version));
        }
        if self.nodes.len() < 2 || self.nodes.len() > 16 {
            return Err(format!(
                "nodes: a lab has 2 to 16 nodes, got {}",
                self.nodes.len()
            ));
        }
        for (index, node) in self.nodes.iter().enumerate() {
            if !valid_name(node) {
                return Err(format!(
                    "nodes[{index}]: `{node}` is not a lower-case DNS label"
                ));
            }
        }
        for (index, workload) in self.workloads.iter().enumerate() {
            let at = format!("workloads[{index}]");
            if !valid_name(&workload.name) {
                return Err(format!(
                    "{at}.name: `{}` is not a lower-case DNS label",
                    workload.name
                ));
            }
            if !self
                .namespaces
                .iter()
                .any(|namespace| namespace.name == workload.namespace)
            {
                return Err(format!(
                    "{at}.namespace: `{}` is not declared under namespaces",
                    workload.namespace
                ));
            }
            if workload.replicas == 0 || workload.replicas > 50 {
                return Err(format!(
                    "{at}.replicas: {} is outside 1..=50",
                    workload.replicas
                ));
            }
            for (node_index, node) in workload.nodes.iter().enumerate() {
                if !self.nodes.contains(node) {
                    return Err(format!(
                        "{at}.nodes[{node_index}]: `{node}` is not one of the lab's nodes"
                    ));
                }
            }
            for (port_index, port) in workload.ports.iter().enumerate() {
                if !matches!(port.protocol.as_str(), "TCP" | "UDP") {
                    return Err(format!(
                        "{at}.ports[{port_index}].protocol: `{}` is not TCP or UDP",
                        port.protocol
                    ));
                }
            }
        }
        let pods: usize = self
            .workloads
            .iter()
            .map(|workload| workload.replicas)
            .sum();
        if pods > 250 {
            return Err(format!(
                "workloads: {pods} pods is more than a lab holds (250)"
            ));
        }
        for (index, external) in self.externals.iter().enumerate() {
            let octets = external.address.octets();
            let documentation = matches!(
                octets,
                [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
            );
            if !documentation {
                return Err(format!(
                    "externals[{index}].address: {} is not in a documentation range (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24); lab traffic never leaves the lab",
                    external.address
                ));
            }
        }
        Ok(())
    }
}
