//! A whole lab from a spec: nodes joined by a fabric bridge (node `i` owns pods in
//! 10.244.i.0/24 and routes the other nodes' pods through the fabric), externals on the
//! fabric with their documentation-range address, pods named like replica-set pods, and each
//! node's nftables rendered from the spec's policies. Dropping a `Lab` removes it; `keep`
//! hands it to a state file that `down` reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use caracal_policy::{
    load_str, render, Inventory, LocalEndpoint, Manifests, NamedPort, NamespaceInfo, PodInfo,
    Ruleset,
};
use serde::{Deserialize, Serialize};

use crate::netns::{delete_with_prefix, LabError, Namespace, Prefix};
use crate::node::Node;
use crate::spec::LabSpec;

/// NFLOG group the lab's rulesets log verdicts to.
pub const NFLOG_GROUP: u16 = 42;

/// A pod of a running lab.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabPod {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name (`<workload>-<hash>-<suffix>`).
    pub name: String,
    /// The workload it belongs to.
    pub workload: String,
    /// The node it runs on.
    pub node: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// Its network namespace.
    pub netns: String,
    /// The host side of its veth in the node's namespace.
    pub host_interface: String,
}

/// A service of a running lab.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabService {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Its ports.
    pub ports: Vec<ServicePort>,
}

/// One port of a running service and where it leads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name.
    pub name: String,
    /// The service port.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Backends as (pod address, target port).
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// The ClusterIP of the `index`th service.
fn cluster_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, (index / 250) as u8, (index % 250) as u8 + 2)
}

/// The `nat` table that does kube-proxy's job in every node: DNAT from a service address
/// and port to one of its backends, chosen at random per connection.
pub fn render_services(services: &[LabService]) -> String {
    let mut text = String::from(
        "table ip caracal-services
delete table ip caracal-services
table ip caracal-services {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
",
    );
    for service in services {
        for ServicePort {
            name,
            port,
            protocol,
            backends,
        } in &service.ports
        {
            let protocol = protocol.to_ascii_lowercase();
            let head = format!("		ip daddr {} {protocol} dport {port}", service.cluster_ip);
            let comment = format!("comment \"{}/{}:{name}\"", service.namespace, service.name);
            match backends.as_slice() {
                [] => text.push_str(&format!(
                    "\t\t# {}/{}:{name} has no backend\n",
                    service.namespace, service.name
                )),
                [(address, target)] => {
                    text.push_str(&format!("{head} dnat to {address}:{target} {comment}\n"))
                }
                many => {
                    let entries: Vec<String> = many
                        .iter()
                        .enumerate()
                        .map(|(index, (address, target))| format!("{index} : {address} . {target}"))
                        .collect();
                    text.push_str(&format!(
                        "{head} dnat ip to numgen random mod {} map {{ {} }} {comment}\n",
                        many.len(),
                        entries.join(", ")
                    ));
                }
            }
        }
    }
    text.push_str(
        "	}
}
",
    );
    text
}

/// What `down`, `status` and `exec` need after `up` has exited.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    /// The run's prefix.
    pub prefix: String,
    /// The spec it was built from.
    pub spec: PathBuf,
    /// Node name to network namespace.
    pub nodes: BTreeMap<String, String>,
    /// Pods.
    pub pods: Vec<LabPod>,
    /// External name to (network namespace, address).
    pub externals: BTreeMap<String, (String, Ipv4Addr)>,
    /// Services.
    #[serde(default)]
    pub services: Vec<LabService>,
    /// The fabric namespace.
    pub fabric: String,
}

/// A running lab that is removed when dropped (unless kept).
pub struct Lab {
    /// The run's prefix.
    pub prefix: Prefix,
    /// Nodes, in spec order.
    pub nodes: Vec<(String, Node)>,
    /// Pods.
    pub pods: Vec<LabPod>,
    /// Externals: name, namespace, address.
    pub externals: Vec<(String, Namespace, Ipv4Addr)>,
    /// Services with their ClusterIPs and backends.
    pub services: Vec<LabService>,
    /// The ruleset applied to each node, by node name: its tags map NFLOG prefixes to hits.
    pub rulesets: BTreeMap<String, Ruleset>,
    fabric: Namespace,
    manifests: Manifests,
    spec_path: PathBuf,
}

const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Replica-set-style names that are stable for a spec: `<name>-<10 chars>-<5 chars>`.
fn pod_names(workload: &str, namespace: &str, replicas: usize) -> (String, Vec<String>) {
    let mut state = workload
        .bytes()
        .chain(namespace.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
    let mut next = |length: usize| -> String {
        (0..length)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                HASH_ALPHABET[(state >> 33) as usize % HASH_ALPHABET.len()] as char
            })
            .collect()
    };
    let generate_name = format!("{workload}-{}-", next(10));
    let pods = (0..replicas)
        .map(|_| format!("{generate_name}{}", next(5)))
        .collect();
    (generate_name, pods)
}

fn fabric_address(node_index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, node_index as u8 + 1)
}

fn load_policies(spec: &LabSpec, base: &Path, manifests: &mut Manifests) -> Result<(), LabError> {
    let mut files = Vec::new();
    for path in &spec.policies {
        let path = base.join(path);
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|source| LabError::Io {
                    what: format!("cannot read {}", path.display()),
                    source,
                })?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.extension()
                        .is_some_and(|extension| extension == "yaml" || extension == "yml")
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path);
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LabError::Io {
            what: format!("cannot read {}", file.display()),
            source,
        })?;
        load_str(&file.display().to_string(), &text, manifests).map_err(|errors| {
            LabError::Command {
                command: "load policies".into(),
                stderr: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        })?;
    }
    let problems = caracal_policy::validate(&manifests.policies);
    if !problems.is_empty() {
        return Err(LabError::Command {
            command: "validate policies".into(),
            stderr: problems.join("\n"),
        });
    }
    Ok(())
}

impl Lab {
    /// Builds the lab of `spec` (read from `spec_path`); anything built is removed again if a
    /// step fails.
    pub fn up(spec: &LabSpec, spec_path: &Path, prefix: Prefix) -> Result<Lab, LabError> {
        let base = spec_path.parent().unwrap_or(Path::new("."));
        let mut manifests = Manifests::default();
        load_policies(spec, base, &mut manifests)?;
        let fabric = Namespace::create(&prefix, "fabric")?;
        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        fabric.ip(&["link", "set", "br0", "up"])?;
        let mut nodes: Vec<(String, Node)> = Vec::new();
        for (index, name) in spec.nodes.iter().enumerate() {
            let node = Node::create(&prefix, &format!("n{index}"))?;
            let uplink = format!("{}f{index}", prefix.as_str());
            let peer = format!("{}g{index}", prefix.as_str());
            node.namespace.ip(&[
                "link", "add", &uplink, "type", "veth", "peer", "name", &peer,
            ])?;
            node.namespace
                .ip(&["link", "set", &peer, "netns", fabric.name()])?;
            fabric.ip(&["link", "set", &peer, "master", "br0"])?;
            fabric.ip(&["link", "set", &peer, "up"])?;
            node.namespace.ip(&[
                "addr",
                "add",
                &format!("{}/24", fabric_address(index)),
                "dev",
                &uplink,
            ])?;
            node.namespace.ip(&["link", "set", &uplink, "up"])?;
            nodes.push((name.clone(), node));
        }
        for (index, (_, node)) in nodes.iter().enumerate() {
            for other in (0..nodes.len()).filter(|other| *other != index) {
                node.namespace.ip(&[
                    "route",
                    "add",
                    &format!("10.244.{other}.0/24"),
                    "via",
                    &fabric_address(other).to_string(),
                ])?;
            }
        }
        let mut externals = Vec::new();
        for (index, external) in spec.externals.iter().enumerate() {
            let namespace = Namespace::create(&prefix, &format!("x{index}"))?;
            let bridge_side = format!("{}x{index}", prefix.as_str());
            fabric.ip(&[
                "link",
                "add",
                &bridge_side,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                namespace.name(),
            ])?;
            fabric.ip(&["link", "set", &bridge_side, "master", "br0"])?;
            fabric.ip(&["link", "set", &bridge_side, "up"])?;
            namespace.ip(&[
                "addr",
                "add",
                &format!("{}/32", external.address),
                "dev",
                "eth0",
            ])?;
            namespace.ip(&["link", "set", "eth0", "up"])?;
            for (node_index, (_, node)) in nodes.iter().enumerate() {
                let gateway = fabric_address(node_index).to_string();
                namespace.ip(&[
                    "route",
                    "add",
                    &format!("10.244.{node_index}.0/24"),
                    "via",
                    &gateway,
                    "dev",
                    "eth0",
                    "onlink",
                ])?;
                let uplink = format!("{}f{node_index}", prefix.as_str());
                node.namespace.ip(&[
                    "route",
                    "add",
                    &format!("{}/32", external.address),
                    "dev",
                    &uplink,
                ])?;
            }
            externals.push((external.name.clone(), namespace, external.address));
        }
        for namespace in &spec.namespaces {
            manifests.namespaces.push(NamespaceInfo {
                name: namespace.name.clone(),
                labels: namespace.labels.clone(),
            });
        }
        let mut pods = Vec::new();
        let mut per_node = vec![0usize; nodes.len()];
        for workload in &spec.workloads {
            let (generate_name, names) =
                pod_names(&workload.name, &workload.namespace, workload.replicas);
            let placement: Vec<usize> = if workload.nodes.is_empty() {
                (0..nodes.len()).collect()
            } else {
                workload
                    .nodes
                    .iter()
                    .map(|name| {
                        spec.nodes
                            .iter()
                            .position(|node| node == name)
                            .expect("validated node")
                    })
                    .collect()
            };
            for (replica, pod_name) in names.into_iter().enumerate() {
                let node_index = placement[replica % placement.len()];
                let address =
                    Ipv4Addr::new(10, 244, node_index as u8, per_node[node_index] as u8 + 2);
                per_node[node_index] += 1;
                let global = pods.len();
                let (node_name, node) = &mut nodes[node_index];
                let pod = node.add_pod(&format!("p{global}"), address)?;
                pods.push(LabPod {
                    namespace: workload.namespace.clone(),
                    name: pod_name.clone(),
                    workload: workload.name.clone(),
                    node: node_name.clone(),
                    address,
                    netns: pod.namespace.name().to_string(),
                    host_interface: pod.host_interface.clone(),
                });
                manifests.pods.push(PodInfo {
                    namespace: workload.namespace.clone(),
                    name: pod_name,
                    generate_name: Some(generate_name.clone()),
                    labels: workload.labels.clone(),
                    ip: Some(IpAddr::V4(address)),
                    node: Some(node_name.clone()),
                    ports: workload
                        .ports
                        .iter()
                        .map(|port| NamedPort {
                            name: port.name.clone(),
                            port: port.port,
                            protocol: port.protocol.to_ascii_lowercase(),
                        })
                        .collect(),
                });
            }
        }
        let mut services = Vec::new();
        for (index, service) in spec.services.iter().enumerate() {
            let backends: Vec<&PodInfo> = manifests
                .pods
                .iter()
                .filter(|pod| {
                    pod.namespace == service.namespace
                        && service
                            .selector
                            .iter()
                            .all(|(key, value)| pod.labels.get(key) == Some(value))
                })
                .collect();
            let ports = service
                .ports
                .iter()
                .map(|port| {
                    let targets = backends
                        .iter()
                        .filter_map(|pod| {
                            let IpAddr::V4(address) = pod.ip? else {
                                return None;
                            };
                            let target = match &port.target_port {
                                crate::spec::TargetPort::Number(number) => *number,
                                crate::spec::TargetPort::Name(name) => {
                                    pod.ports.iter().find(|named| &named.name == name)?.port
                                }
                            };
                            Some((address, target))
                        })
                        .collect();
                    ServicePort {
                        name: port.name.clone(),
                        port: port.port,
                        protocol: port.protocol.clone(),
                        backends: targets,
                    }
                })
                .collect();
            services.push(LabService {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                cluster_ip: cluster_ip(index),
                ports,
            });
        }
        let services_text = render_services(&services);
        for (_, node) in &nodes {
            // A pod's default route leads to its node, where the service address is DNAT'd.
            node.apply_nftables(&services_text)?;
        }
        let mut lab = Lab {
            prefix,
            nodes,
            pods,
            externals,
            services,
            rulesets: BTreeMap::new(),
            fabric,
            manifests,
            spec_path: spec_path.to_path_buf(),
        };
        lab.apply_policies(1)?;
        Ok(lab)
    }

    /// Namespaces, pods and policies of the lab, as manifests.
    pub fn manifests(&self) -> &Manifests {
        &self.manifests
    }

    /// Renders and applies each node's ruleset; `generation` goes into the NFLOG prefixes.
    pub fn apply_policies(&mut self, generation: u32) -> Result<(), LabError> {
        let inventory = Inventory::new(&self.manifests);
        for (name, node) in &self.nodes {
            let endpoints: Vec<LocalEndpoint> = self
                .pods
                .iter()
                .filter(|pod| &pod.node == name)
                .map(|pod| {
                    let address = IpAddr::V4(pod.address);
                    LocalEndpoint {
                        workload: inventory
                            .endpoint(address)
                            .workload
                            .expect("lab pod in inventory"),
                        address,
                        interface: pod.host_interface.clone(),
                    }
                })
                .collect();
            let ruleset = render(
                &self.manifests.policies,
                &inventory,
                &endpoints,
                generation,
                NFLOG_GROUP,
            )
            .map_err(|error| LabError::Command {
                command: "render policies".into(),
                stderr: error.to_string(),
            })?;
            node.apply_nftables(&ruleset.text)?;
            self.rulesets.insert(name.clone(), ruleset);
        }
        Ok(())
    }

    /// The pod namespace/name, or the first pod whose name starts with `name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&LabPod> {
        self.pods.iter().find(|pod| {
            pod.namespace == namespace && (pod.name == name || pod.name.starts_with(name))
        })
    }

    /// What `down`, `status` and `exec` need.
    pub fn state(&self) -> LabState {
        LabState {
            prefix: self.prefix.as_str().to_string(),
            spec: self.spec_path.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|(name, node)| (name.clone(), node.namespace.name().to_string()))
                .collect(),
            pods: self.pods.clone(),
            externals: self
                .externals
                .iter()
                .map(|(name, namespace, address)| {
                    (name.clone(), (namespace.name().to_string(), *address))
                })
                .collect(),
            fabric: self.fabric.name().to_string(),
            services: self.services.clone(),
        }
    }

    /// Leaves the lab running after this value is gone; returns its state for `down`.
    pub fn keep(self) -> LabState {
        let state = self.state();
        let Lab {
            nodes,
            externals,
            fabric,
            ..
        } = self;
        for (_, node) in nodes {
            node.keep();
        }
        for (_, namespace, _) in externals {
            namespace.keep();
        }
        fabric.keep();
        state
    }
}

impl LabState {
    /// The manifests of a running lab: namespaces and policies from its spec, pods from the
    /// state (names, addresses, nodes) with the labels and ports their workloads declare.
    pub fn manifests(&self) -> Result<Manifests, LabError> {
        let spec = crate::spec::LabSpec::load(&self.spec).map_err(|error| LabError::Command {
            command: "load spec".into(),
            stderr: error.to_string(),
        })?;
        let mut manifests = Manifests::default();
        load_policies(
            &spec,
            self.spec.parent().unwrap_or(Path::new(".")),
            &mut manifests,
        )?;
        for namespace in &spec.namespaces {
            manifests.namespaces.push(NamespaceInfo {
                name: namespace.name.clone(),
                labels: namespace.labels.clone(),
            });
        }
        for pod in &self.pods {
            let workload = spec.workloads.iter().find(|workload| {
                workload.namespace == pod.namespace && workload.name == pod.workload
            });
            manifests.pods.push(PodInfo {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                generate_name: pod
                    .name
                    .rsplit_once('-')
                    .map(|(prefix, _)| format!("{prefix}-")),
                labels: workload
                    .map(|workload| workload.labels.clone())
                    .unwrap_or_default(),
                ip: Some(IpAddr::V4(pod.address)),
                node: Some(pod.node.clone()),
                ports: workload
                    .map(|workload| {
                        workload
                            .ports
                            .iter()
                            .map(|port| NamedPort {
                                name: port.name.clone(),
                                port: port.port,
                                protocol: port.protocol.to_ascii_lowercase(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        Ok(manifests)
    }

    /// The policy files of the lab's spec, for watching.
    pub fn policy_files(&self) -> Vec<PathBuf> {
        let Ok(spec) = crate::spec::LabSpec::load(&self.spec) else {
            return Vec::new();
        };
        let base = self.spec.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut files = Vec::new();
        for path in &spec.policies {
            let path = base.join(path);
            if path.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    files.extend(entries.flatten().map(|entry| entry.path()));
                }
            } else {
                files.push(path);
            }
        }
        files.sort();
        files
    }
}

/// Removes a kept lab: every namespace with its prefix. Returns how many were removed.
pub fn down(state: &LabState) -> Result<usize, LabError> {
    delete_with_prefix(&Prefix::new(&state.prefix)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_render_as_one_dnat_rule_per_port() {
        let services = vec![
            LabService {
                namespace: "data".into(),
                name: "postgres".into(),
                cluster_ip: cluster_ip(3),
                ports: vec![ServicePort {
                    name: "postgres".into(),
                    port: 5432,
                    protocol: "TCP".into(),
                    backends: vec![
                        (Ipv4Addr::new(10, 244, 1, 2), 5432),
                        (Ipv4Addr::new(10, 244, 1, 3), 5432),
                    ],
                }],
            },
            LabService {
                namespace: "shop".into(),
                name: "idle".into(),
                cluster_ip: cluster_ip(4),
                ports: vec![ServicePort {
                    name: "http".into(),
                    port: 80,
                    protocol: "TCP".into(),
                    backends: vec![],
                }],
            },
        ];
        let text = render_services(&services);
        assert!(
            text.starts_with("table ip caracal-services\ndelete table ip caracal-services\n"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 10.96.0.5 tcp dport 5432 dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 5432, 1 : 10.244.1.3 . 5432 } comment \"data/postgres:postgres\""),
            "{text}"
        );
        assert!(text.contains("# shop/idle:http has no backend"), "{text}");
    }
}
