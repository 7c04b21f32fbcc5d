//! Flow assembly, the agent's pure core: NFLOG verdicts and conntrack entries go in with the
//! time they were seen; every flush turns the connections active since the last one into
//! flow updates, one per reporting side that is a local workload, folded at the configured
//! aggregation level. No sockets and no clock here: the agent's edge feeds it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;

use caracal_flow::{
    is_private, Action, AggregationLevel, Counters, DomainSet, Endpoint as FlowEndpoint,
    EndpointType, Flow, FlowKey, HitAction, IpSet, Labels, PolicyHit, PolicyTrace, Reporter,
    ServiceRef,
};
use caracal_policy::{Connection, Direction, Endpoint, Evaluator, Inventory, RuleTag};

use crate::conntrack::{ConntrackEntry, DirectionCounters, EntryEvent};
use crate::dns::{DnsAnswer, DnsCache};
use crate::nflog::{FiveTuple, Verdict};

/// Who owns an address: the workload, network set or nothing. The lab's inventory implements
/// it now; a Kubernetes watcher implements the same from the API server's pods, namespaces and
/// network sets, and the agent swaps directories with [`Assembler::set_directory`].
pub trait Directory: Send {
    /// The endpoint at `address`.
    fn endpoint(&self, address: IpAddr) -> Endpoint;
}

impl Directory for Inventory {
    fn endpoint(&self, address: IpAddr) -> Endpoint {
        Inventory::endpoint(self, address)
    }
}

/// A Kubernetes Service address and port, for naming pre-DNAT destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAddress {
    /// ClusterIP.
    pub address: IpAddr,
    /// Service port.
    pub port: u16,
    /// Protocol number.
    pub protocol: u8,
    /// Service name, namespace and port name.
    pub service: ServiceRef,
}

/// How the assembler folds and names.
#[derive(Clone, Debug)]
pub struct AssemblyConfig {
    /// Aggregation level of allowed flows (default 2).
    pub allowed_level: AggregationLevel,
    /// Aggregation level of denied flows (default 1).
    pub denied_level: AggregationLevel,
    /// Verdicts with no conntrack entry after this many seconds are dropped (and counted).
    pub verdict_ttl: i64,
    /// (client, address) pairs the DNS cache holds at most.
    pub dns_capacity: usize,
    /// Seconds a DNS answer still names its address after its TTL ran out.
    pub dns_grace: i64,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        Self {
            allowed_level: AggregationLevel::Workload,
            denied_level: AggregationLevel::Pod,
            verdict_ttl: 30,
            dns_capacity: 100_000,
            dns_grace: 120,
        }
    }
}

/// Counts the assembler keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblyStats {
    /// Verdicts whose prefix names another ruleset generation or an unknown tag.
    pub unknown_tags: u64,
    /// Allowed verdicts that never met a conntrack entry.
    pub orphan_verdicts: u64,
    /// Connections seen first in a dump (their enforced trace comes from the evaluator).
    pub adopted_connections: u64,
    /// DNS answers learned.
    pub dns_answers: u64,
    /// DNS names not learned because the cache was full.
    pub dns_dropped: u64,
}

struct Tracked {
    original: FiveTuple,
    reply: FiveTuple,
    hits: Vec<(Direction, PolicyHit)>,
    domains: DomainSet,
    reported: (DirectionCounters, DirectionCounters),
    current: (DirectionCounters, DirectionCounters),
    started: bool,
    ended: bool,
}

struct Pending {
    seen: i64,
    hits: Vec<(Direction, PolicyHit)>,
}

struct Denied {
    hits: Vec<(Direction, PolicyHit)>,
    domains: DomainSet,
    packets: u64,
}

/// Joins verdicts and connections, and makes flow updates.
pub struct Assembler {
    config: AssemblyConfig,
    directory: Box<dyn Directory>,
    evaluator: Evaluator,
    local: Vec<IpAddr>,
    services: Vec<ServiceAddress>,
    generation: u32,
    tags: Vec<RuleTag>,
    verdicts: HashMap<FiveTuple, Pending>,
    connections: HashMap<u32, Tracked>,
    denied: HashMap<FiveTuple, Denied>,
    dns: DnsCache,
    stats: AssemblyStats,
}

/// The names the source of `original` resolved to its destination, before or after DNAT.
fn domains_of(dns: &DnsCache, original: &FiveTuple, forwarded: &FiveTuple, now: i64) -> DomainSet {
    let mut names = dns.names(original.source, original.destination, now);
    if forwarded.destination != original.destination {
        names.extend(dns.names(original.source, forwarded.destination, now));
    }
    DomainSet::from_members(names)
}

/// The tuple of the packets the forward hook sees: original source, post-DNAT destination.
fn forwarded(original: &FiveTuple, reply: &FiveTuple) -> FiveTuple {
    FiveTuple {
        destination: reply.source,
        destination_port: reply.source_port,
        ..*original
    }
}

fn protocol_name(number: u8) -> String {
    match number {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmp6".into(),
        132 => "sctp".into(),
        other => other.to_string(),
    }
}

impl Assembler {
    /// An assembler for a node whose local workloads have `local` addresses.
    pub fn new(
        config: AssemblyConfig,
        directory: impl Directory + 'static,
        evaluator: Evaluator,
        local: Vec<IpAddr>,
        services: Vec<ServiceAddress>,
    ) -> Self {
        let dns = DnsCache::new(config.dns_capacity, config.dns_grace);
        Assembler {
            dns,
            config,
            directory: Box::new(directory),
            evaluator,
            local,
            services,
            generation: 0,
            tags: Vec::new(),
            verdicts: HashMap::new(),
            connections: HashMap::new(),
            denied: HashMap::new(),
            stats: AssemblyStats::default(),
        }
    }

    /// Uses the tags of the ruleset now applied.
    pub fn set_ruleset(&mut self, generation: u32, tags: Vec<RuleTag>) {
        self.generation = generation;
        self.tags = tags;
    }

    /// Names endpoints from `directory` from now on (workloads came or went).
    pub fn set_directory(&mut self, directory: impl Directory + 'static) {
        self.directory = Box::new(directory);
    }

    /// Evaluates pending traces with changed policies from now on.
    pub fn set_evaluator(&mut self, evaluator: Evaluator) {
        self.evaluator = evaluator;
    }

    /// Counts so far.
    pub fn stats(&self) -> AssemblyStats {
        AssemblyStats {
            dns_dropped: self.dns.dropped,
            ..self.stats
        }
    }

    /// Connections tracked now.
    pub fn tracked(&self) -> usize {
        self.connections.len()
    }

    /// (client, address) pairs the DNS cache holds now.
    pub fn dns_pairs(&self) -> usize {
        self.dns.len()
    }

    /// A DNS answer seen at `now`: names for the connections its client opens next.
    pub fn on_dns(&mut self, answer: &DnsAnswer, now: i64) {
        self.stats.dns_answers += 1;
        self.dns.learn(answer, now);
    }

    /// A verdict logged at `now`.
    pub fn on_verdict(&mut self, verdict: &Verdict, now: i64) {
        let tag = (verdict.generation == self.generation)
            .then(|| self.tags.get(verdict.tag as usize))
            .flatten();
        let Some(tag) = tag else {
            self.stats.unknown_tags += 1;
            return;
        };
        let hit = (tag.direction, tag.hit.clone());
        if tag.hit.action == HitAction::Deny {
            let pending = self
                .verdicts
                .remove(&verdict.packet)
                .map(|pending| pending.hits)
                .unwrap_or_default();
            let dns = &self.dns;
            let denied = self.denied.entry(verdict.packet).or_insert_with(|| Denied {
                hits: pending,
                domains: domains_of(dns, &verdict.packet, &verdict.packet, now),
                packets: 0,
            });
            if denied.packets == 0 {
                denied.hits.push(hit);
            }
            denied.packets += 1;
            return;
        }
        self.verdicts
            .entry(verdict.packet)
            .or_insert_with(|| Pending {
                seen: now,
                hits: Vec::new(),
            })
            .hits
            .push(hit);
    }

    /// A conntrack event or dump entry seen at `now`.
    pub fn on_conntrack(&mut self, entry: &ConntrackEntry, now: i64) {
        let tuple = forwarded(&entry.original, &entry.reply);
        let tracked = match self.connections.entry(entry.id) {
            Entry::Occupied(tracked) => tracked.into_mut(),
            Entry::Vacant(slot) => {
                let hits = self.verdicts.remove(&tuple).map(|pending| pending.hits);
                if hits.is_none() {
                    self.stats.adopted_connections += u64::from(entry.event == EntryEvent::Dump);
                }
                slot.insert(Tracked {
                    original: entry.original,
                    reply: entry.reply,
                    hits: hits.unwrap_or_default(),
                    domains: domains_of(&self.dns, &entry.original, &tuple, now),
                    reported: Default::default(),
                    current: Default::default(),
                    started: entry.event != EntryEvent::Dump,
                    ended: false,
                })
            }
        };
        if entry.original_counters.bytes >= tracked.current.0.bytes {
            tracked.current = (entry.original_counters, entry.reply_counters);
        }
        if entry.event == EntryEvent::Destroy {
            tracked.ended = true;
        }
    }

    fn endpoint(
        &self,
        address: IpAddr,
        level: AggregationLevel,
    ) -> (FlowEndpoint, Labels, Endpoint) {
        let endpoint = self.directory.endpoint(address);
        let folded = matches!(
            level,
            AggregationLevel::Workload | AggregationLevel::WorkloadNoPort
        );
        let (flow_endpoint, labels) = match (&endpoint.workload, &endpoint.network_set) {
            (Some(workload), _) => {
                let name = match (&workload.generate_name, folded) {
                    (Some(prefix), true) => format!("{prefix}*"),
                    _ => workload.name.clone(),
                };
                let labels = Labels::new(
                    workload
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect(),
                );
                (
                    FlowEndpoint {
                        kind: EndpointType::Workload,
                        namespace: workload.namespace.clone(),
                        name,
                    },
                    labels,
                )
            }
            (None, Some((namespace, name, labels))) => {
                let namespace = if namespace.is_empty() {
                    "-".to_string()
                } else {
                    namespace.clone()
                };
                let labels = Labels::new(labels.iter().map(|(k, v)| format!("{k}={v}")).collect());
                (
                    FlowEndpoint {
                        kind: EndpointType::NetworkSet,
                        namespace,
                        name: name.clone(),
                    },
                    labels,
                )
            }
            (None, None) => {
                let name = if is_private(address) { "pvt" } else { "pub" };
                (
                    FlowEndpoint {
                        kind: EndpointType::Network,
                        namespace: "-".into(),
                        name: name.into(),
                    },
                    Labels::default(),
                )
            }
        };
        (flow_endpoint, labels, endpoint)
    }

    fn service_of(&self, original: &FiveTuple) -> ServiceRef {
        self.services
            .iter()
            .find(|service| {
                service.address == original.destination
                    && service.port == original.destination_port
                    && service.protocol == original.protocol
            })
            .map(|service| service.service.clone())
            .unwrap_or_else(|| ServiceRef {
                name: "-".into(),
                namespace: "-".into(),
                port_name: "-".into(),
                port: 0,
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn flow(
        &self,
        original: &FiveTuple,
        destination: &FiveTuple,
        direction: Direction,
        action: Action,
        enforced: Vec<PolicyHit>,
        domains: &DomainSet,
        counters: Counters,
        start: i64,
        end: i64,
    ) -> Flow {
        let level = if action == Action::Allow {
            self.config.allowed_level
        } else {
            self.config.denied_level
        };
        let (source, source_labels, source_endpoint) = self.endpoint(original.source, level);
        let (dest, dest_labels, dest_endpoint) = self.endpoint(destination.destination, level);
        let connection = Connection {
            source: source_endpoint,
            destination: dest_endpoint,
            protocol: protocol_name(original.protocol),
            port: destination.destination_port,
            icmp: None,
        };
        let verdict = self.evaluator.evaluate(&connection);
        let side = match direction {
            Direction::Egress => verdict.egress,
            Direction::Ingress => verdict.ingress,
        };
        // The dataplane's own verdicts are the enforced trace; the evaluator stands in only
        // for connections that predate the agent, and always gives the pending trace.
        let enforced = if enforced.is_empty() {
            side.as_ref()
                .map(|side| side.enforced.clone())
                .unwrap_or_default()
        } else {
            enforced
        };
        let pending = side.map(|side| side.pending).unwrap_or_default();
        let dest_port = if level == AggregationLevel::WorkloadNoPort {
            0
        } else {
            destination.destination_port
        };
        Flow {
            key: FlowKey {
                source,
                dest,
                dest_port,
                service: self.service_of(original),
                proto: protocol_name(original.protocol),
                reporter: if direction == Direction::Egress {
                    Reporter::Src
                } else {
                    Reporter::Dst
                },
                action,
                policies: PolicyTrace { enforced, pending },
            },
            start_time: start,
            end_time: end,
            source_labels,
            dest_labels,
            counters,
            source_ips: IpSet::from_members([original.source]),
            dest_ips: IpSet::from_members([destination.destination]),
            dest_domains: domains.clone(),
        }
    }

    fn hits_for(hits: &[(Direction, PolicyHit)], direction: Direction) -> Vec<PolicyHit> {
        hits.iter()
            .filter(|(side, _)| *side == direction)
            .enumerate()
            .map(|(index, (_, hit))| PolicyHit {
                policy_index: index as i64,
                ..hit.clone()
            })
            .collect()
    }

    /// The flow updates of `[start, end)`: every connection active in it, reported by each
    /// local side, merged per flow key.
    pub fn flush(&mut self, start: i64, end: i64) -> Vec<Flow> {
        let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
        let mut add = |flow: Flow| match flows.get_mut(&flow.key) {
            Some(existing) => existing.merge(&flow),
            None => {
                flows.insert(flow.key.clone(), flow);
            }
        };
        for tracked in self.connections.values() {
            let delta = |now: DirectionCounters, before: DirectionCounters| DirectionCounters {
                packets: now.packets.saturating_sub(before.packets),
                bytes: now.bytes.saturating_sub(before.bytes),
            };
            let (out, back) = (
                delta(tracked.current.0, tracked.reported.0),
                delta(tracked.current.1, tracked.reported.1),
            );
            let destination = forwarded(&tracked.original, &tracked.reply);
            for direction in [Direction::Egress, Direction::Ingress] {
                let local = match direction {
                    Direction::Egress => tracked.original.source,
                    Direction::Ingress => destination.destination,
                };
                if !self.local.contains(&local) {
                    continue;
                }
                let (bytes_out, bytes_in, packets_out, packets_in) = match direction {
                    Direction::Egress => (out.bytes, back.bytes, out.packets, back.packets),
                    Direction::Ingress => (back.bytes, out.bytes, back.packets, out.packets),
                };
                let counters = Counters {
                    bytes_in,
                    bytes_out,
                    packets_in,
                    packets_out,
                    connections_started: u64::from(tracked.started),
                    connections_completed: u64::from(tracked.ended),
                    connections_live: 1,
                };
                add(self.flow(
                    &tracked.original,
                    &destination,
                    direction,
                    Action::Allow,
                    Self::hits_for(&tracked.hits, direction),
                    &tracked.domains,
                    counters,
                    start,
                    end,
                ));
            }
        }
        for (tuple, denied) in &self.denied {
            let direction = denied
                .hits
                .iter()
                .rev()
                .find(|(_, hit)| hit.action == HitAction::Deny)
                .map(|(side, _)| *side)
                .unwrap_or(Direction::Ingress);
            let counters = Counters {
                packets_out: if direction == Direction::Egress {
                    denied.packets
                } else {
                    0
                },
                packets_in: if direction == Direction::Ingress {
                    denied.packets
                } else {
                    0
                },
                connections_started: 1,
                ..Counters::default()
            };
            add(self.flow(
                tuple,
                tuple,
                direction,
                Action::Deny,
                Self::hits_for(&denied.hits, direction),
                &denied.domains,
                counters,
                start,
                end,
            ));
        }
        // What was reported is the baseline of the next interval; ended connections go.
        self.connections.retain(|_, tracked| !tracked.ended);
        for tracked in self.connections.values_mut() {
            tracked.reported = tracked.current;
            tracked.started = false;
        }
        self.denied.clear();
        let ttl = self.config.verdict_ttl;
        let before = self.verdicts.len();
        self.verdicts.retain(|_, pending| pending.seen >= end - ttl);
        self.stats.orphan_verdicts += (before - self.verdicts.len()) as u64;
        self.dns.expire(end);
        let mut flows: Vec<Flow> = flows.into_values().collect();
        flows.sort_by(|a, b| a.key.cmp(&b.key));
        flows
    }
}
