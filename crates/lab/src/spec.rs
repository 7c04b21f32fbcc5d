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
    /// `NAMESPACE/SERVICE` of the cluster DNS: where pods send lookups (its pods run the
    /// built-in DNS server on a UDP port with `appProtocol: dns`).
    pub dns: Option<String>,
    /// Test domains the lab DNS server answers besides `<svc>.<ns>.svc.cluster.local`:
    /// name → `external:NAME` or `service:NS/NAME`.
    #[serde(default)]
    pub domains: BTreeMap<String, String>,
    /// Traffic the lab makes while it runs.
    #[serde(default)]
    pub traffic: Vec<TrafficSpec>,
}

/// What a traffic pattern speaks.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum TrafficProtocol {
    /// A TCP connection that sends `bytes` and closes.
    #[default]
    TCP,
    /// Datagrams carrying `bytes` in all.
    UDP,
    /// An HTTP/1.1 request (`POST` of `bytes`, or `GET`) answered `200 OK`.
    HTTP,
    /// A DNS lookup of the `domain:` target at the lab's DNS service.
    DNS,
}

/// A traffic pattern: connections, requests or lookups from a workload's replicas to a target.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// `NAMESPACE/WORKLOAD` whose replicas connect.
    pub from: String,
    /// `service:NS/NAME`, `workload:NS/NAME`, `external:NAME`, or `domain:NAME` (looked up
    /// at the lab's DNS service before each connection, so flows carry the name).
    pub to: String,
    /// TCP (default), UDP, HTTP or DNS.
    #[serde(default)]
    pub protocol: TrafficProtocol,
    /// Destination port (not used by DNS lookups).
    #[serde(default)]
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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    /// Port name.
    pub name: String,
    /// Port number.
    pub port: u16,
    /// TCP or UDP.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// What the built-in server speaks: `dns` on a UDP port runs the lab DNS server, `http`
    /// documents an HTTP port (every TCP port answers HTTP requests); plain otherwise.
    pub app_protocol: Option<String>,
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
                match (port.app_protocol.as_deref(), port.protocol.as_str()) {
                    (None, _) | (Some("dns"), "UDP") | (Some("http"), "TCP") => {}
                    (Some(other), protocol) => {
                        return Err(format!(
                            "{at}.ports[{port_index}].appProtocol: `{other}` on {protocol} is not supported; use dns on UDP or http on TCP"
                        ))
                    }
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
        if let Some(dns) = &self.dns {
            if !self.service_declared(dns) {
                return Err(format!(
                    "dns: `{dns}` is not a declared service NAMESPACE/NAME"
                ));
            }
        }
        for (name, target) in &self.domains {
            let valid_name = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            if !valid_name {
                return Err(format!("domains.{name}: not a lower-case domain name"));
            }
            let known = match target.split_once(':') {
                Some(("external", external)) => self
                    .externals
                    .iter()
                    .any(|declared| declared.name == external),
                Some(("service", service)) => self.service_declared(service),
                _ => false,
            };
            if !known {
                return Err(format!(
                    "domains.{name}: `{target}` is neither external:NAME nor service:NS/NAME of this spec"
                ));
            }
        }
        for (index, traffic) in self.traffic.iter().enumerate() {
            self.validate_traffic(traffic)
                .map_err(|message| format!("traffic[{index}].{message}"))?;
        }
        Ok(())
    }

    fn service_declared(&self, qualified: &str) -> bool {
        qualified.split_once('/').is_some_and(|(namespace, name)| {
            self.services
                .iter()
                .any(|service| service.namespace == namespace && service.name == name)
        })
    }

    fn validate_traffic(&self, traffic: &TrafficSpec) -> Result<(), String> {
        let from_known = traffic
            .from
            .split_once('/')
            .is_some_and(|(namespace, name)| {
                self.workloads
                    .iter()
                    .any(|workload| workload.namespace == namespace && workload.name == name)
            });
        if !from_known {
            return Err(format!(
                "from: `{}` is not a declared workload NAMESPACE/NAME",
                traffic.from
            ));
        }
        let to_known = match traffic.to.split_once(':') {
            Some(("service", service)) => self.service_declared(service),
            Some(("workload", workload)) => workload.split_once('/').is_some_and(|(ns, name)| {
                self.workloads
                    .iter()
                    .any(|declared| declared.namespace == ns && declared.name == name)
            }),
            Some(("external", name)) => self.externals.iter().any(|e| e.name == name),
            Some(("domain", name)) => {
                if self.dns.is_none() {
                    return Err(format!(
                        "to: `{}` needs a `dns:` service to look the name up",
                        traffic.to
                    ));
                }
                !name.is_empty()
            }
            _ => false,
        };
        if !to_known {
            return Err(format!(
                "to: `{}` is not service:NS/NAME, workload:NS/NAME, external:NAME or domain:NAME of this spec",
                traffic.to
            ));
        }
        if traffic.protocol == TrafficProtocol::DNS {
            if !traffic.to.starts_with("domain:") {
                return Err(format!(
                    "to: DNS traffic looks a name up; use domain:NAME, not `{}`",
                    traffic.to
                ));
            }
        } else if traffic.port == 0 {
            return Err("port: a destination port is required".into());
        }
        if !(traffic.rate > 0.0 && traffic.rate <= 200.0) {
            return Err(format!(
                "rate: {} is outside (0, 200] per second",
                traffic.rate
            ));
        }
        if traffic.bytes > 1 << 20 {
            return Err(format!("bytes: {} is more than 1 MiB", traffic.bytes));
        }
        if traffic.duration.is_some_and(|seconds| seconds > 86_400) {
            return Err("duration: at most 86400 seconds".into());
        }
        Ok(())
    }
}
