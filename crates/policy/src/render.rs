//! The nftables renderer: one `inet caracal` table per node, replaced atomically. Each local
//! endpoint gets an ingress and an egress chain; each tier that selects it is a chain jumped
//! to in tier order. Every verdict-giving rule, end of tier and profile logs the first packet
//! of a connection to an NFLOG group with a prefix `caracal:<generation>:<id>`; the id indexes
//! the returned tags (direction, endpoint, policy hit), because a prefix holds only 127 bytes.
//! Selectors are resolved to address sets here, from the inventory.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use caracal_flow::{HitAction, PolicyHit, PolicyKind};
use thiserror::Error;

use crate::eval::{identity_matches, Endpoint, Inventory, Workload};
use crate::model::*;

/// NFLOG prefix of the copies of DNS answers (the agent's DNS snooping).
pub const DNS_LOG_PREFIX: &str = "caracal-dns";

/// Bytes of a DNS answer copied to NFLOG: a UDP DNS message is at most 512 bytes without EDNS,
/// and answers of interest fit well below this.
pub const DNS_SNAPLEN: u32 = 1024;

/// Mark bit an allowing rule sets before returning to the endpoint chain.
const ALLOW_MARK: u32 = 0x0010_0000;

/// A workload on this node and the host side of its interface.
#[derive(Clone, Debug)]
pub struct LocalEndpoint {
    /// The pod.
    pub workload: Workload,
    /// Its address.
    pub address: IpAddr,
    /// The interface its traffic enters and leaves the node through (host side of its veth).
    pub interface: String,
}

/// What a logged prefix id stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTag {
    /// The id in `caracal:<generation>:<id>`.
    pub id: u32,
    /// Ingress or egress of `endpoint`.
    pub direction: Direction,
    /// `namespace/pod` of the local endpoint whose chain logged.
    pub endpoint: String,
    /// The hit (policy index 0: the agent numbers hits in the order it sees them).
    pub hit: PolicyHit,
}

/// A rendered ruleset.
#[derive(Clone, Debug)]
pub struct Ruleset {
    /// Input for `nft -f -`: replaces the `inet caracal` table in one transaction.
    pub text: String,
    /// Prefix ids to hits.
    pub tags: Vec<RuleTag>,
}

/// A policy that cannot be expressed in nftables here.
#[derive(Debug, Error)]
#[error("{origin}: {message}")]
pub struct RenderError {
    /// Where the policy came from.
    pub origin: String,
    /// Why.
    pub message: String,
}

struct Renderer<'a> {
    inventory: &'a Inventory,
    generation: u32,
    group: u16,
    tags: Vec<RuleTag>,
    out: String,
}

fn address_set(addresses: &BTreeSet<String>) -> String {
    format!(
        "{{ {} }}",
        addresses.iter().cloned().collect::<Vec<_>>().join(", ")
    )
}

/// Addresses per family, as nft set elements (`10.0.0.0/24`, `10.1.2.3`).
#[derive(Default, Clone)]
struct Addresses {
    v4: BTreeSet<String>,
    v6: BTreeSet<String>,
}

impl Addresses {
    fn add_net(&mut self, net: &ipnet::IpNet) {
        let text = if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.trunc().to_string()
        };
        match net {
            ipnet::IpNet::V4(_) => self.v4.insert(text),
            ipnet::IpNet::V6(_) => self.v6.insert(text),
        };
    }

    fn add_address(&mut self, address: IpAddr) {
        match address {
            IpAddr::V4(v4) => self.v4.insert(v4.to_string()),
            IpAddr::V6(v6) => self.v6.insert(v6.to_string()),
        };
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

fn protocol_matches_ports(protocol: Option<&str>) -> Option<&'static str> {
    match protocol {
        Some("tcp") => Some("tcp"),
        Some("udp") => Some("udp"),
        Some("sctp") => Some("sctp"),
        Some("udplite") => Some("udplite"),
        _ => None,
    }
}

/// One alternative of a rule's match: its nftables expression, and the address family it is
/// bound to (0 = `ip`, 1 = `ip6`), or none when it names no address.
struct MatchLine {
    family: Option<usize>,
    text: String,
}

impl Renderer<'_> {
    fn tag(&mut self, direction: Direction, endpoint: &Workload, hit: PolicyHit) -> String {
        let id = self.tags.len() as u32;
        self.tags.push(RuleTag {
            id,
            direction,
            endpoint: format!("{}/{}", endpoint.namespace, endpoint.name),
            hit,
        });
        format!(
            "log prefix \"caracal:{}:{id}\" group {}",
            self.generation, self.group
        )
    }

    /// Addresses whose identity satisfies a rule side's selectors; `None` when it has none.
    fn selected(&self, entity: &EntityRule, policy: &Policy) -> Option<(Addresses, Addresses)> {
        if entity.selector.is_none()
            && entity.not_selector.is_none()
            && entity.namespace_selector.is_none()
        {
            return None;
        }
        let positive = EntityRule {
            not_selector: None,
            ..entity.clone()
        };
        let mut matching = Addresses::default();
        let mut excluded = Addresses::default();
        for (address, workload) in self.inventory.workloads() {
            let endpoint = Endpoint {
                address,
                workload: Some(workload),
                network_set: None,
            };
            if identity_matches(&positive, policy, &endpoint) {
                matching.add_address(address);
            }
            if let Some(not) = &entity.not_selector {
                let labels = endpoint
                    .workload
                    .as_ref()
                    .map(|w| w.labels.clone())
                    .unwrap_or_default();
                if not.matches(&labels) {
                    excluded.add_address(address);
                }
            }
        }
        if !entity.workloads_only {
            for set in self.inventory.network_sets() {
                let endpoint = Endpoint {
                    address: IpAddr::from([0, 0, 0, 0]),
                    workload: None,
                    network_set: Some((
                        set.namespace.clone(),
                        set.name.clone(),
                        set.labels.clone(),
                    )),
                };
                if identity_matches(&positive, policy, &endpoint) {
                    set.nets.iter().for_each(|net| matching.add_net(net));
                }
                if entity
                    .not_selector
                    .as_ref()
                    .is_some_and(|not| not.matches(&set.labels))
                {
                    set.nets.iter().for_each(|net| excluded.add_net(net));
                }
            }
        }
        Some((matching, excluded))
    }

    /// The match expressions of one rule side, per family; `None` for a family it cannot match.
    fn side_matches(
        &self,
        entity: &EntityRule,
        policy: &Policy,
        side: &str,
    ) -> [Option<Vec<String>>; 2] {
        let mut result = [Some(Vec::new()), Some(Vec::new())];
        let mut nets = Addresses::default();
        entity.nets.iter().for_each(|net| nets.add_net(net));
        let mut not_nets = Addresses::default();
        entity.not_nets.iter().for_each(|net| not_nets.add_net(net));
        let selected = self.selected(entity, policy);
        for (index, name) in ["ip", "ip6"].into_iter().enumerate() {
            let pick = |addresses: &Addresses| {
                if index == 0 {
                    addresses.v4.clone()
                } else {
                    addresses.v6.clone()
                }
            };
            let Some(matches) = result[index].as_mut() else {
                continue;
            };
            if !entity.nets.is_empty() {
                let own = pick(&nets);
                if own.is_empty() {
                    result[index] = None;
                    continue;
                }
                matches.push(format!("{name} {side}addr {}", address_set(&own)));
            }
            if let Some((matching, excluded)) = &selected {
                let own = pick(matching);
                if own.is_empty() {
                    result[index] = None;
                    continue;
                }
                matches.push(format!("{name} {side}addr {}", address_set(&own)));
                let excluded = pick(excluded);
                if !excluded.is_empty() {
                    matches.push(format!("{name} {side}addr != {}", address_set(&excluded)));
                }
            }
            let own = pick(&not_nets);
            if !own.is_empty() {
                matches.push(format!("{name} {side}addr != {}", address_set(&own)));
            }
        }
        // A side with no address constraint needs no family: keep one unqualified variant.
        if entity.nets.is_empty() && selected.is_none() && not_nets.is_empty() {
            return [Some(Vec::new()), None];
        }
        result
    }

    fn ports(specs: &[PortSpec], named_from: Option<&Workload>, protocol: &str) -> Option<String> {
        let mut ports = BTreeSet::new();
        for spec in specs {
            match spec {
                PortSpec::Single(port) => {
                    ports.insert(format!("{port}"));
                }
                PortSpec::Range(low, high) => {
                    ports.insert(format!("{low}-{high}"));
                }
                PortSpec::Named(name) => {
                    for port in named_from.iter().flat_map(|workload| workload.ports.iter()) {
                        if &port.name == name && port.protocol == protocol {
                            ports.insert(port.port.to_string());
                        }
                    }
                }
            }
        }
        (!ports.is_empty())
            .then(|| format!("{{ {} }}", ports.into_iter().collect::<Vec<_>>().join(", ")))
    }

    /// An egress rule with named destination ports: each name means the port of that name
    /// on whichever pod the packet goes to, so it becomes a set of `address . port` pairs
    /// from the inventory; numbered ports in the same list are one more alternative.
    fn named_egress_lines(
        &self,
        rule: &Rule,
        policy: &Policy,
        endpoint: &Workload,
    ) -> Result<Vec<MatchLine>, String> {
        let (named, numbered): (Vec<PortSpec>, Vec<PortSpec>) = rule
            .destination
            .ports
            .iter()
            .cloned()
            .partition(|spec| matches!(spec, PortSpec::Named(_)));
        let without_ports = |ports: Vec<PortSpec>| {
            let mut copy = rule.clone();
            copy.destination.ports = ports;
            copy
        };
        let mut lines = Vec::new();
        if !numbered.is_empty() {
            lines.extend(self.rule_lines(
                &without_ports(numbered),
                policy,
                Direction::Egress,
                endpoint,
            )?);
        }
        let Some(protocol) = protocol_matches_ports(rule.protocol.as_deref()) else {
            return Ok(lines);
        };
        let mut pairs: [BTreeSet<String>; 2] = Default::default();
        for (address, workload) in self.inventory.workloads() {
            for port in &workload.ports {
                let wanted = named
                    .iter()
                    .any(|spec| matches!(spec, PortSpec::Named(name) if *name == port.name));
                if wanted && port.protocol == protocol {
                    pairs[usize::from(address.is_ipv6())]
                        .insert(format!("{address} . {}", port.port));
                }
            }
        }
        // The same rule without ports, narrowed per family to the pairs of that family.
        for line in self.rule_lines(
            &without_ports(Vec::new()),
            policy,
            Direction::Egress,
            endpoint,
        )? {
            for (index, name) in ["ip", "ip6"].into_iter().enumerate() {
                if line.family.is_some_and(|family| family != index) || pairs[index].is_empty() {
                    continue;
                }
                let set = pairs[index].iter().cloned().collect::<Vec<_>>().join(", ");
                let head = if line.text.is_empty() {
                    String::new()
                } else {
                    format!("{} ", line.text)
                };
                lines.push(MatchLine {
                    family: Some(index),
                    text: format!("{head}{name} daddr . {protocol} dport {{ {set} }}"),
                });
            }
        }
        Ok(lines)
    }

    fn rule_lines(
        &self,
        rule: &Rule,
        policy: &Policy,
        direction: Direction,
        endpoint: &Workload,
    ) -> Result<Vec<MatchLine>, String> {
        let mut common = Vec::new();
        if let Some(protocol) = &rule.protocol {
            common.push(format!("meta l4proto {protocol}"));
        }
        if let Some(protocol) = &rule.not_protocol {
            common.push(format!("meta l4proto != {protocol}"));
        }
        let port_protocol = protocol_matches_ports(rule.protocol.as_deref());
        let is_named = |spec: &PortSpec| matches!(spec, PortSpec::Named(_));
        if direction == Direction::Egress && rule.destination.not_ports.iter().any(is_named) {
            return Err("named ports in egress notPorts are not rendered; use port numbers".into());
        }
        if direction == Direction::Egress && rule.destination.ports.iter().any(is_named) {
            return self.named_egress_lines(rule, policy, endpoint);
        }
        if let Some(protocol) = port_protocol {
            let local = (direction == Direction::Ingress).then_some(endpoint);
            if !rule.destination.ports.is_empty() {
                match Self::ports(&rule.destination.ports, local, protocol) {
                    Some(ports) => common.push(format!("{protocol} dport {ports}")),
                    None => return Ok(Vec::new()),
                }
            }
            if let Some(ports) = Self::ports(&rule.destination.not_ports, local, protocol) {
                common.push(format!("{protocol} dport != {ports}"));
            }
        }
        for (icmp, negated) in [(&rule.icmp, false), (&rule.not_icmp, true)] {
            if let Some(icmp) = icmp {
                let keyword = if rule.protocol.as_deref() == Some("icmp6") {
                    "icmpv6"
                } else {
                    "icmp"
                };
                let operator = if negated { "!= " } else { "" };
                match icmp.code {
                    Some(code) if !negated => common.push(format!(
                        "{keyword} type {} {keyword} code {code}",
                        icmp.icmp_type
                    )),
                    _ => common.push(format!("{keyword} type {operator}{}", icmp.icmp_type)),
                }
            }
        }
        let sources = self.side_matches(&rule.source, policy, "s");
        let destinations = self.side_matches(&rule.destination, policy, "d");
        let mut lines = Vec::new();
        let unqualified_source =
            sources[1].is_none() && sources[0].as_ref().is_some_and(Vec::is_empty);
        let unqualified_destination =
            destinations[1].is_none() && destinations[0].as_ref().is_some_and(Vec::is_empty);
        if unqualified_source && unqualified_destination {
            lines.push(MatchLine {
                family: None,
                text: common.join(" "),
            });
            return Ok(lines);
        }
        for family_index in 0..2 {
            let source = if unqualified_source {
                Some(Vec::new())
            } else {
                sources[family_index].clone()
            };
            let destination = if unqualified_destination {
                Some(Vec::new())
            } else {
                destinations[family_index].clone()
            };
            if let (Some(source), Some(destination)) = (source, destination) {
                let mut parts = common.clone();
                if family_index == 0 && rule.protocol.as_deref() == Some("icmp6")
                    || family_index == 1 && rule.protocol.as_deref() == Some("icmp")
                {
                    continue;
                }
                parts.extend(source);
                parts.extend(destination);
                lines.push(MatchLine {
                    family: Some(family_index),
                    text: parts.join(" "),
                });
            }
        }
        Ok(lines)
    }

    fn tier_chain(
        &mut self,
        chain: &str,
        tier: &Tier,
        policies: &[&Policy],
        direction: Direction,
        endpoint: &Workload,
    ) -> Result<(), RenderError> {
        let mut body = String::new();
        for policy in policies {
            let _ = writeln!(
                body,
                "\t\t# {} {}{}",
                policy.kind.long_name(),
                if policy.namespace.is_empty() {
                    String::new()
                } else {
                    format!("{}/", policy.namespace)
                },
                policy.name
            );
            for (index, rule) in policy
                .rules(direction)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let action = match rule.action {
                    RuleAction::Log => continue,
                    RuleAction::Allow => HitAction::Allow,
                    RuleAction::Deny => HitAction::Deny,
                    RuleAction::Pass => HitAction::Pass,
                };
                let lines =
                    self.rule_lines(rule, policy, direction, endpoint)
                        .map_err(|message| RenderError {
                            origin: policy.origin.clone(),
                            message,
                        })?;
                if lines.is_empty() {
                    let _ = writeln!(
                        body,
                        "\t\t# rule {index} matches no endpoint in the inventory"
                    );
                    continue;
                }
                let hit = PolicyHit {
                    kind: policy.kind,
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    tier: policy.tier.clone(),
                    action,
                    policy_index: 0,
                    rule_index: index as i64,
                    trigger: None,
                };
                let log = self.tag(direction, endpoint, hit);
                let verdict = match action {
                    HitAction::Allow => format!("meta mark set mark or {ALLOW_MARK:#x} return"),
                    HitAction::Deny => "drop".to_string(),
                    HitAction::Pass => "return".to_string(),
                };
                for line in lines {
                    let separator = if line.text.is_empty() { "" } else { " " };
                    let _ = writeln!(body, "\t\t{}{separator}{log} {verdict}", line.text);
                }
            }
        }
        let first = policies[0];
        let action = match tier.default_action {
            TierDefault::Deny => HitAction::Deny,
            TierDefault::Pass => HitAction::Pass,
        };
        let trigger = PolicyHit {
            kind: first.kind,
            namespace: first.namespace.clone(),
            name: first.name.clone(),
            tier: first.tier.clone(),
            action,
            policy_index: 0,
            rule_index: -1,
            trigger: None,
        };
        let hit = PolicyHit {
            kind: PolicyKind::EndOfTier,
            namespace: String::new(),
            name: String::new(),
            tier: tier.name.clone(),
            action,
            policy_index: 0,
            rule_index: -1,
            trigger: Some(Box::new(trigger)),
        };
        let log = self.tag(direction, endpoint, hit);
        let verdict = if action == HitAction::Deny {
            "drop"
        } else {
            "return"
        };
        let _ = writeln!(body, "\t\t# end of tier {}\n\t\t{log} {verdict}", tier.name);
        let _ = writeln!(self.out, "\tchain {chain} {{\n{body}\t}}\n");
        Ok(())
    }
}

/// Renders the ruleset of one node. `generation` goes into every prefix so the agent can
/// tell logs of a replaced ruleset apart; `group` is the NFLOG group.
pub fn render(
    set: &PolicySet,
    inventory: &Inventory,
    endpoints: &[LocalEndpoint],
    generation: u32,
    group: u16,
) -> Result<Ruleset, RenderError> {
    let evaluator_order = crate::eval::Evaluator::new(set);
    let mut renderer = Renderer {
        inventory,
        generation,
        group,
        tags: Vec::new(),
        out: String::new(),
    };
    let mut dispatch = String::new();
    for (index, local) in endpoints.iter().enumerate() {
        for direction in [Direction::Egress, Direction::Ingress] {
            let name = match direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            let chain = format!("ep{index}-{name}");
            let mut body = format!(
                "\t\t# {direction:?} of {}/{} ({})\n\t\tmeta mark set mark and {:#x}\n",
                local.workload.namespace, local.workload.name, local.address, !ALLOW_MARK
            );
            for (tier_index, (tier, policies)) in evaluator_order.enforced_tiers().enumerate() {
                let selecting: Vec<&Policy> = policies
                    .iter()
                    .filter(|policy| {
                        policy.rules(direction).is_some()
                            && crate::eval::Evaluator::selects_workload(policy, &local.workload)
                    })
                    .collect();
                if selecting.is_empty() {
                    continue;
                }
                let tier_chain = format!("{chain}-t{tier_index}");
                renderer.tier_chain(&tier_chain, tier, &selecting, direction, &local.workload)?;
                let _ = writeln!(body, "\t\tjump {tier_chain}\n\t\tmeta mark and {ALLOW_MARK:#x} == {ALLOW_MARK:#x} return");
            }
            let profile = PolicyHit {
                kind: PolicyKind::Profile,
                namespace: String::new(),
                name: format!("kns.{}", local.workload.namespace),
                tier: String::new(),
                action: HitAction::Allow,
                policy_index: 0,
                rule_index: 0,
                trigger: None,
            };
            let log = renderer.tag(direction, &local.workload, profile);
            let _ = writeln!(body, "\t\t# namespace profile\n\t\t{log} return");
            let _ = writeln!(renderer.out, "\tchain {chain} {{\n{body}\t}}\n");
            let interface = match direction {
                Direction::Egress => format!("iifname \"{}\"", local.interface),
                Direction::Ingress => format!("oifname \"{}\"", local.interface),
            };
            let _ = writeln!(dispatch, "\t\t{interface} jump {chain}");
        }
    }
    let mut text = String::from("# rendered by caracal; replaces table inet caracal atomically\n");
    text.push_str("table inet caracal\ndelete table inet caracal\ntable inet caracal {\n");
    let _ = writeln!(
        text,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\t# DNS answers are copied for the agent's domain names; log gives no verdict\n\t\tudp sport 53 log prefix \"{DNS_LOG_PREFIX}\" group {group} snaplen {DNS_SNAPLEN}\n\t\tct state established,related accept\n\t\tct state invalid drop\n{dispatch}\t}}\n"
    );
    text.push_str(&renderer.out);
    text.push_str("}\n");
    Ok(Ruleset {
        text,
        tags: renderer.tags,
    })
}
