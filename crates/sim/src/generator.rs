//! Flow updates from the simulated cluster: each picks a route by weight (batch routes at
//! night), replicas at random, and reports from the source node and, for pod destinations,
//! the destination node, as Felix would at the end of a 15 s flush.

use std::net::{IpAddr, Ipv4Addr};

use caracal_flow::time::{bucket_start, BUCKET_SECONDS};
use caracal_flow::{
    Action, Counters, DomainSet, Endpoint, EndpointType, Flow, FlowKey, IpSet, Labels, PolicyHit,
    PolicyTrace, Reporter, ServiceRef,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{Cluster, Target};

/// Produces flow updates from a cluster, deterministically for a seed.
pub struct Generator {
    cluster: Cluster,
    rng: SmallRng,
}

/// Share of peak traffic at a time of day: low at night, highest at noon (UTC).
pub fn daily_rhythm(now: i64) -> f64 {
    let day_fraction = now.rem_euclid(86_400) as f64 / 86_400.0;
    0.55 + 0.45 * (std::f64::consts::TAU * (day_fraction - 0.25)).sin()
}

fn is_night(now: i64) -> bool {
    (1..5).contains(&(now.rem_euclid(86_400) / 3600))
}

impl Generator {
    /// A generator over `cluster`.
    pub fn new(cluster: Cluster, seed: u64) -> Self {
        Self {
            cluster,
            rng: SmallRng::seed_from_u64(seed ^ 0x51_3d),
        }
    }

    /// The cluster generated from.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// About `count` updates for the flush interval containing `now`.
    pub fn updates(&mut self, now: i64, count: usize) -> Vec<Flow> {
        let night = is_night(now);
        let weights: Vec<u32> = self
            .cluster
            .routes
            .iter()
            .map(|route| {
                if route.batch != night {
                    0
                } else {
                    route.weight
                }
            })
            .collect();
        let total: u32 = weights.iter().sum();
        let mut updates = Vec::with_capacity(count + 1);
        while updates.len() < count && total > 0 {
            let mut pick = self.rng.gen_range(0..total);
            let route = weights.iter().position(|weight| {
                if pick < *weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            });
            let Some(route) = route else { break };
            self.reports(route, now, &mut updates);
        }
        updates
    }

    fn reports(&mut self, route_index: usize, now: i64, out: &mut Vec<Flow>) {
        let cluster = &self.cluster;
        let route = &cluster.routes[route_index];
        let rng = &mut self.rng;
        let source = &cluster.deployments[route.source];
        let source_replica = rng.gen_range(0..source.pods.len());
        let folded = route.action == Action::Allow;
        let pod_name = |deployment: &crate::cluster::Deployment, replica: usize| {
            if folded {
                format!("{}*", deployment.generate_name)
            } else {
                deployment.pods[replica].clone()
            }
        };
        let source_endpoint = Endpoint {
            kind: EndpointType::Workload,
            namespace: source.namespace.clone(),
            name: pod_name(source, source_replica),
        };
        let (dest_endpoint, dest_labels, dest_address, service, domains) = match &route.target {
            Target::Deployment { index, via_service } => {
                let dest = &cluster.deployments[*index];
                let replica = rng.gen_range(0..dest.pods.len());
                let service = if *via_service {
                    ServiceRef {
                        name: dest.name.clone(),
                        namespace: dest.namespace.clone(),
                        port_name: dest.port.1.to_string(),
                        port: dest.port.0,
                    }
                } else {
                    ServiceRef {
                        name: "-".into(),
                        namespace: "-".into(),
                        port_name: "-".into(),
                        port: 0,
                    }
                };
                let endpoint = Endpoint {
                    kind: EndpointType::Workload,
                    namespace: dest.namespace.clone(),
                    name: pod_name(dest, replica),
                };
                (
                    endpoint,
                    dest.labels.clone(),
                    dest.addresses[replica],
                    service,
                    vec![],
                )
            }
            Target::External {
                name,
                addresses,
                domain,
            } => {
                let endpoint = Endpoint {
                    kind: EndpointType::Network,
                    namespace: "-".into(),
                    name: (*name).into(),
                };
                let address = addresses[rng.gen_range(0..addresses.len())];
                let service = ServiceRef {
                    name: "-".into(),
                    namespace: "-".into(),
                    port_name: "-".into(),
                    port: 0,
                };
                (
                    endpoint,
                    vec![],
                    address,
                    service,
                    domain.iter().map(|d| d.to_string()).collect(),
                )
            }
            Target::NetworkSet { name, addresses } => {
                let endpoint = Endpoint {
                    kind: EndpointType::NetworkSet,
                    namespace: "-".into(),
                    name: (*name).into(),
                };
                let service = ServiceRef {
                    name: "-".into(),
                    namespace: "-".into(),
                    port_name: "-".into(),
                    port: 0,
                };
                (
                    endpoint,
                    vec!["role=backup".into()],
                    addresses[0],
                    service,
                    vec![],
                )
            }
        };
        let connections = rng.gen_range(1..=6u64);
        let jitter = |rng: &mut SmallRng, bytes: u64| {
            ((bytes as f64) * rng.gen_range(0.5..1.5)) as u64 * connections
        };
        let (request, response) = if route.action == Action::Allow {
            (jitter(rng, route.bytes.0), jitter(rng, route.bytes.1))
        } else {
            (60 * connections, 0)
        };
        let packets = |bytes: u64| bytes / 900 + 3 * connections;
        let start = bucket_start(now);
        let make = |reporter: Reporter, trace: &PolicyTrace| {
            let (bytes_in, bytes_out) = if reporter == Reporter::Src {
                (response, request)
            } else {
                (request, response)
            };
            let counters = Counters {
                bytes_in,
                bytes_out,
                packets_in: if bytes_in > 0 { packets(bytes_in) } else { 0 },
                packets_out: if bytes_out > 0 { packets(bytes_out) } else { 0 },
                connections_started: connections,
                connections_completed: if route.action == Action::Allow {
                    connections
                } else {
                    0
                },
                connections_live: connections,
            };
            Flow {
                key: FlowKey {
                    source: source_endpoint.clone(),
                    dest: dest_endpoint.clone(),
                    dest_port: route.port,
                    service: service.clone(),
                    proto: route.proto.to_string(),
                    reporter,
                    action: route.action,
                    policies: trace.clone(),
                },
                start_time: start,
                end_time: start + BUCKET_SECONDS,
                source_labels: Labels::new(source.labels.clone()),
                dest_labels: Labels::new(dest_labels.clone()),
                counters,
                source_ips: IpSet::from_members([source.addresses[source_replica]]),
                dest_ips: IpSet::from_members([dest_address]),
                dest_domains: DomainSet::from_members(domains.clone()),
            }
        };
        out.push(make(Reporter::Src, &route.egress));
        // A denied egress never reaches the destination node; an allowed one is reported there too.
        if let Some(ingress) = &route.ingress {
            let denied_at_source = route
                .egress
                .enforced
                .iter()
                .any(|hit| hit.action == caracal_flow::HitAction::Deny);
            if !denied_at_source {
                out.push(make(Reporter::Dst, ingress));
            }
        }
    }
}

/// `distinct` flows with distinct keys shaped like a large cluster's, for benchmarks: keys are
/// combinations of about `distinct / 8` workloads (each with 3–8 labels and 1–3 pod
/// addresses), ports, reporters and verdicts, with 1–3 policy hits; labels and addresses
/// belong to workloads, as in a real cluster.
pub fn keyspace(seed: u64, distinct: usize) -> Vec<Flow> {
    struct Workload {
        namespace: String,
        name: String,
        labels: Labels,
        addresses: IpSet,
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let workload_count = (distinct / 8).max(16);
    let workloads: Vec<Workload> = (0..workload_count)
        .map(|index| {
            let namespace = format!("team-{:02}", index % 40);
            let app = format!("svc-{index:x}");
            let name = format!("{app}-{:08x}-*", rng.gen::<u32>());
            let count = rng.gen_range(3..=8);
            let mut labels = vec![
                format!("app={app}"),
                format!("team={}", index % 40),
                "app.kubernetes.io/managed-by=helm".to_string(),
            ];
            labels.extend(
                (3..count).map(|extra| format!("label-{extra}=value-{}", rng.gen_range(0..5))),
            );
            let pods = rng.gen_range(1..=3);
            let addresses = IpSet::from_members(
                (0..pods).map(|_| IpAddr::V4(Ipv4Addr::new(10, 244, rng.gen(), rng.gen()))),
            );
            Workload {
                namespace,
                name,
                labels: Labels::new(labels),
                addresses,
            }
        })
        .collect();
    let tiers = ["security", "platform", "default"];
    let ports = [80u16, 443, 5432, 6379, 8080, 9090];
    (0..distinct)
        .map(|index| {
            let source = &workloads[index % workload_count];
            let rest = index / workload_count;
            let dest_index =
                (index % workload_count + 1 + rest % (workload_count - 1)) % workload_count;
            let dest = &workloads[dest_index];
            let variant = rest / (workload_count - 1);
            let port = ports[variant % ports.len()];
            let reporter = if (variant / ports.len()).is_multiple_of(2) {
                Reporter::Src
            } else {
                Reporter::Dst
            };
            let action = if (variant / ports.len() / 2).is_multiple_of(2) {
                Action::Allow
            } else {
                Action::Deny
            };
            let hits = 1 + dest_index % 3;
            let enforced: Vec<PolicyHit> = (0..hits)
                .map(|position| {
                    let tier = tiers[position.min(2)];
                    let text = if position + 1 == hits {
                        let verdict = if action == Action::Allow {
                            "allow"
                        } else {
                            "deny"
                        };
                        format!(
                            "{position}|{tier}|knp:{}/allow-{}|{verdict}|{}",
                            dest.namespace,
                            dest_index % 50,
                            index % 3
                        )
                    } else {
                        format!(
                            "{position}|{tier}|gnp:{tier}.pass-{}|pass|0",
                            dest_index % 5
                        )
                    };
                    text.parse().expect("generated hit")
                })
                .collect();
            Flow {
                key: FlowKey {
                    source: Endpoint {
                        kind: EndpointType::Workload,
                        namespace: source.namespace.clone(),
                        name: source.name.clone(),
                    },
                    dest: Endpoint {
                        kind: EndpointType::Workload,
                        namespace: dest.namespace.clone(),
                        name: dest.name.clone(),
                    },
                    dest_port: port,
                    service: ServiceRef {
                        name: dest.name.trim_end_matches("-*").to_string(),
                        namespace: dest.namespace.clone(),
                        port_name: "http".into(),
                        port,
                    },
                    proto: if index.is_multiple_of(10) {
                        "udp"
                    } else {
                        "tcp"
                    }
                    .to_string(),
                    reporter,
                    action,
                    policies: PolicyTrace {
                        enforced,
                        pending: vec![],
                    },
                },
                start_time: 0,
                end_time: 15,
                source_labels: source.labels.clone(),
                dest_labels: dest.labels.clone(),
                counters: Counters {
                    bytes_in: rng.gen_range(100..100_000),
                    bytes_out: rng.gen_range(100..100_000),
                    packets_in: rng.gen_range(1..100),
                    packets_out: rng.gen_range(1..100),
                    connections_started: 1,
                    connections_completed: 1,
                    connections_live: 1,
                },
                source_ips: source.addresses.clone(),
                dest_ips: dest.addresses.clone(),
                dest_domains: DomainSet::default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let mut first = Generator::new(Cluster::generate(7, 3), 7);
        let mut second = Generator::new(Cluster::generate(7, 3), 7);
        assert_eq!(
            first.updates(1_700_000_000, 200),
            second.updates(1_700_000_000, 200)
        );
    }

    #[test]
    fn traffic_is_realistic() {
        let mut generator = Generator::new(Cluster::generate(1, 3), 1);
        let updates = generator.updates(1_700_000_000 - 1_700_000_000 % 86_400 + 12 * 3600, 2000);
        assert!(updates.len() >= 2000);
        assert!(
            updates.iter().any(|f| f.key.action == Action::Deny),
            "some denied traffic"
        );
        assert!(
            updates.iter().any(|f| f.key.dest.name == "pub"),
            "some external traffic"
        );
        assert!(
            updates.iter().any(|f| !f.key.policies.pending.is_empty()),
            "some staged policy hits"
        );
        assert!(updates.iter().any(|f| f.key.reporter == Reporter::Dst));
        assert!(updates.iter().all(|f| f.start_time % 15 == 0));
        let allowed_names_folded = updates
            .iter()
            .filter(|f| f.key.action == Action::Allow)
            .all(|f| f.key.source.name.ends_with('*'));
        assert!(
            allowed_names_folded,
            "allowed flows are at aggregation level 2"
        );
        assert!(daily_rhythm(12 * 3600) > daily_rhythm(3 * 3600));
    }

    #[test]
    fn keyspace_keys_are_distinct() {
        for distinct in [100, 5000, 50_000] {
            let flows = keyspace(3, distinct);
            let keys: std::collections::HashSet<_> = flows.iter().map(|f| f.key.clone()).collect();
            assert_eq!(keys.len(), distinct);
        }
    }
}
