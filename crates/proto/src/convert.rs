//! Wire messages to `caracal-flow` types and back. A record from the network that breaks the
//! model (unknown enum value, port out of range, negative counter, bad address) is rejected
//! with the field it broke, so the server can count it by reason and go on.

use std::net::IpAddr;

use caracal_flow::filter::{
    Comparison, Expr, Field, HitField, NumberField, Op, TextField, TraceScope, Value,
};
use caracal_flow::{
    Action, Counters, DomainSet, Endpoint, EndpointType, Flow, FlowKey, HitAction, IpSet, Labels,
    PolicyHit, PolicyKind, PolicyTrace, Reporter, ServiceRef,
};
use thiserror::Error;

use crate::goldmane as wire;
use crate::PolicyMatch;

/// A wire record that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid `{field}`: {reason}")]
pub struct ConvertError {
    /// The wire field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl ConvertError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// A short, stable label for metrics (`bad_source_type`, ...).
    pub fn metric_reason(&self) -> String {
        format!("bad_{}", self.field.replace('.', "_"))
    }
}

fn endpoint_type(field: &'static str, value: i32) -> Result<EndpointType, ConvertError> {
    match wire::EndpointType::try_from(value) {
        Ok(wire::EndpointType::WorkloadEndpoint) => Ok(EndpointType::Workload),
        Ok(wire::EndpointType::HostEndpoint) => Ok(EndpointType::Host),
        Ok(wire::EndpointType::NetworkSet) => Ok(EndpointType::NetworkSet),
        Ok(wire::EndpointType::Network) => Ok(EndpointType::Network),
        _ => Err(ConvertError::new(
            field,
            format!("endpoint type {value} is unspecified or unknown"),
        )),
    }
}

fn endpoint_type_to_wire(kind: EndpointType) -> wire::EndpointType {
    match kind {
        EndpointType::Workload => wire::EndpointType::WorkloadEndpoint,
        EndpointType::Host => wire::EndpointType::HostEndpoint,
        EndpointType::NetworkSet => wire::EndpointType::NetworkSet,
        EndpointType::Network => wire::EndpointType::Network,
    }
}

fn port(field: &'static str, value: i64) -> Result<u16, ConvertError> {
    u16::try_from(value)
        .map_err(|_| ConvertError::new(field, format!("port {value} is outside 0..=65535")))
}

fn counter(field: &'static str, value: i64) -> Result<u64, ConvertError> {
    u64::try_from(value)
        .map_err(|_| ConvertError::new(field, format!("counter {value} is negative")))
}

/// The wire value of a policy kind.
pub fn kind_to_wire(kind: PolicyKind) -> wire::PolicyKind {
    match kind {
        PolicyKind::CalicoNetworkPolicy => wire::PolicyKind::CalicoNetworkPolicy,
        PolicyKind::GlobalNetworkPolicy => wire::PolicyKind::GlobalNetworkPolicy,
        PolicyKind::StagedNetworkPolicy => wire::PolicyKind::StagedNetworkPolicy,
        PolicyKind::StagedGlobalNetworkPolicy => wire::PolicyKind::StagedGlobalNetworkPolicy,
        PolicyKind::StagedKubernetesNetworkPolicy => {
            wire::PolicyKind::StagedKubernetesNetworkPolicy
        }
        PolicyKind::KubernetesNetworkPolicy => wire::PolicyKind::NetworkPolicy,
        PolicyKind::ClusterNetworkPolicy => wire::PolicyKind::ClusterNetworkPolicy,
        PolicyKind::Profile => wire::PolicyKind::Profile,
        PolicyKind::EndOfTier => wire::PolicyKind::EndOfTier,
    }
}

fn kind_from_wire(value: i32) -> Option<PolicyKind> {
    Some(match wire::PolicyKind::try_from(value).ok()? {
        wire::PolicyKind::KindUnspecified => return None,
        wire::PolicyKind::CalicoNetworkPolicy => PolicyKind::CalicoNetworkPolicy,
        wire::PolicyKind::GlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
        wire::PolicyKind::StagedNetworkPolicy => PolicyKind::StagedNetworkPolicy,
        wire::PolicyKind::StagedGlobalNetworkPolicy => PolicyKind::StagedGlobalNetworkPolicy,
        wire::PolicyKind::StagedKubernetesNetworkPolicy => {
            PolicyKind::StagedKubernetesNetworkPolicy
        }
        wire::PolicyKind::NetworkPolicy => PolicyKind::KubernetesNetworkPolicy,
        wire::PolicyKind::ClusterNetworkPolicy => PolicyKind::ClusterNetworkPolicy,
        wire::PolicyKind::Profile => PolicyKind::Profile,
        wire::PolicyKind::EndOfTier => PolicyKind::EndOfTier,
    })
}

fn hit_action_to_wire(action: HitAction) -> wire::Action {
    match action {
        HitAction::Allow => wire::Action::Allow,
        HitAction::Deny => wire::Action::Deny,
        HitAction::Pass => wire::Action::Pass,
    }
}

fn hit_action_from_wire(value: i32) -> Option<HitAction> {
    match wire::Action::try_from(value).ok()? {
        wire::Action::Allow => Some(HitAction::Allow),
        wire::Action::Deny => Some(HitAction::Deny),
        wire::Action::Pass => Some(HitAction::Pass),
        wire::Action::Unspecified => None,
    }
}

fn hit_from_wire(hit: wire::PolicyHit, depth: usize) -> Result<PolicyHit, ConvertError> {
    let kind = kind_from_wire(hit.kind).ok_or_else(|| {
        ConvertError::new(
            "policies.kind",
            format!("policy kind {} is unspecified or unknown", hit.kind),
        )
    })?;
    let action = hit_action_from_wire(hit.action).ok_or_else(|| {
        ConvertError::new(
            "policies.action",
            format!("policy action {} is unspecified or unknown", hit.action),
        )
    })?;
    let trigger = match hit.trigger {
        Some(_) if depth > 0 => {
            return Err(ConvertError::new(
                "policies.trigger",
                "a trigger cannot have a trigger",
            ))
        }
        Some(trigger) => Some(Box::new(hit_from_wire(*trigger, depth + 1)?)),
        None => None,
    };
    Ok(PolicyHit {
        kind,
        namespace: hit.namespace,
        name: hit.name,
        tier: hit.tier,
        action,
        policy_index: hit.policy_index,
        rule_index: hit.rule_index,
        trigger,
    })
}

/// A policy hit on the wire.
pub fn hit_to_wire(hit: &PolicyHit) -> wire::PolicyHit {
    wire::PolicyHit {
        kind: kind_to_wire(hit.kind) as i32,
        namespace: hit.namespace.clone(),
        name: hit.name.clone(),
        tier: hit.tier.clone(),
        action: hit_action_to_wire(hit.action) as i32,
        policy_index: hit.policy_index,
        rule_index: hit.rule_index,
        trigger: hit
            .trigger
            .as_ref()
            .map(|trigger| Box::new(hit_to_wire(trigger))),
    }
}

fn addresses(field: &'static str, values: Vec<String>) -> Result<IpSet, ConvertError> {
    let parsed = values
        .iter()
        .map(|value| {
            value
                .parse::<IpAddr>()
                .map_err(|_| ConvertError::new(field, format!("`{value}` is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IpSet::from_members(parsed))
}

impl TryFrom<wire::Flow> for Flow {
    type Error = ConvertError;

    fn try_from(flow: wire::Flow) -> Result<Flow, ConvertError> {
        let key = flow
            .key
            .ok_or_else(|| ConvertError::new("Key", "missing"))?;
        let reporter = match wire::Reporter::try_from(key.reporter) {
            Ok(wire::Reporter::Src) => Reporter::Src,
            Ok(wire::Reporter::Dst) => Reporter::Dst,
            _ => {
                return Err(ConvertError::new(
                    "reporter",
                    format!("reporter {} is unspecified or unknown", key.reporter),
                ))
            }
        };
        let action = match wire::Action::try_from(key.action) {
            Ok(wire::Action::Allow) => Action::Allow,
            Ok(wire::Action::Deny) => Action::Deny,
            _ => {
                return Err(ConvertError::new(
                    "action",
                    format!("a flow's action must be Allow or Deny, got {}", key.action),
                ))
            }
        };
        if flow.end_time < flow.start_time {
            return Err(ConvertError::new(
                "end_time",
                format!("end {} is before start {}", flow.end_time, flow.start_time),
            ));
        }
        let trace = key.policies.unwrap_or_default();
        let convert_hits = |hits: Vec<wire::PolicyHit>| {
            hits.into_iter()
                .map(|hit| hit_from_wire(hit, 0))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut enforced = convert_hits(trace.enforced_policies)?;
        let mut pending = convert_hits(trace.pending_policies)?;
        enforced.sort_by_key(|hit| hit.policy_index);
        pending.sort_by_key(|hit| hit.policy_index);
        Ok(Flow {
            key: FlowKey {
                source: Endpoint {
                    kind: endpoint_type("source_type", key.source_type)?,
                    namespace: key.source_namespace,
                    name: key.source_name,
                },
                dest: Endpoint {
                    kind: endpoint_type("dest_type", key.dest_type)?,
                    namespace: key.dest_namespace,
                    name: key.dest_name,
                },
                dest_port: port("dest_port", key.dest_port)?,
                service: ServiceRef {
                    name: key.dest_service_name,
                    namespace: key.dest_service_namespace,
                    port_name: key.dest_service_port_name,
                    port: port("dest_service_port", key.dest_service_port)?,
                },
                proto: key.proto,
                reporter,
                action,
                policies: PolicyTrace { enforced, pending },
            },
            start_time: flow.start_time,
            end_time: flow.end_time,
            source_labels: Labels::new(flow.source_labels),
            dest_labels: Labels::new(flow.dest_labels),
            counters: Counters {
                packets_in: counter("packets_in", flow.packets_in)?,
                packets_out: counter("packets_out", flow.packets_out)?,
                bytes_in: counter("bytes_in", flow.bytes_in)?,
                bytes_out: counter("bytes_out", flow.bytes_out)?,
                connections_started: counter(
                    "num_connections_started",
                    flow.num_connections_started,
                )?,
                connections_completed: counter(
                    "num_connections_completed",
                    flow.num_connections_completed,
                )?,
                connections_live: counter("num_connections_live", flow.num_connections_live)?,
            },
            source_ips: addresses("source_ips", flow.source_ips)?,
            dest_ips: addresses("dest_ips", flow.dest_ips)?,
            dest_domains: DomainSet::from_members(flow.dest_domains),
        })
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl From<&Flow> for wire::Flow {
    fn from(flow: &Flow) -> wire::Flow {
        wire::Flow::from(flow.clone())
    }
}

fn hit_into_wire(hit: PolicyHit) -> wire::PolicyHit {
    wire::PolicyHit {
        kind: kind_to_wire(hit.kind) as i32,
        namespace: hit.namespace,
        name: hit.name,
        tier: hit.tier,
        action: hit_action_to_wire(hit.action) as i32,
        policy_index: hit.policy_index,
        rule_index: hit.rule_index,
        trigger: hit.trigger.map(|trigger| Box::new(hit_into_wire(*trigger))),
    }
}

/// Moves a flow's strings into the wire message instead of copying them (query answers).
impl From<Flow> for wire::Flow {
    fn from(flow: Flow) -> wire::Flow {
        let key = flow.key;
        let counters = flow.counters;
        wire::Flow {
            key: Some(wire::FlowKey {
                source_name: key.source.name,
                source_namespace: key.source.namespace,
                source_type: endpoint_type_to_wire(key.source.kind) as i32,
                dest_name: key.dest.name,
                dest_namespace: key.dest.namespace,
                dest_type: endpoint_type_to_wire(key.dest.kind) as i32,
                dest_port: i64::from(key.dest_port),
                dest_service_name: key.service.name,
                dest_service_namespace: key.service.namespace,
                dest_service_port_name: key.service.port_name,
                dest_service_port: i64::from(key.service.port),
                proto: key.proto,
                reporter: match key.reporter {
                    Reporter::Src => wire::Reporter::Src,
                    Reporter::Dst => wire::Reporter::Dst,
                } as i32,
                action: match key.action {
                    Action::Allow => wire::Action::Allow,
                    Action::Deny => wire::Action::Deny,
                } as i32,
                policies: Some(wire::PolicyTrace {
                    enforced_policies: key
                        .policies
                        .enforced
                        .into_iter()
                        .map(hit_into_wire)
                        .collect(),
                    pending_policies: key
                        .policies
                        .pending
                        .into_iter()
                        .map(hit_into_wire)
                        .collect(),
                }),
            }),
            start_time: flow.start_time,
            end_time: flow.end_time,
            source_labels: flow.source_labels.as_slice().to_vec(),
            dest_labels: flow.dest_labels.as_slice().to_vec(),
            packets_in: saturating_i64(counters.packets_in),
            packets_out: saturating_i64(counters.packets_out),
            bytes_in: saturating_i64(counters.bytes_in),
            bytes_out: saturating_i64(counters.bytes_out),
            num_connections_started: saturating_i64(counters.connections_started),
            num_connections_completed: saturating_i64(counters.connections_completed),
            num_connections_live: saturating_i64(counters.connections_live),
            source_ips: flow
                .source_ips
                .members()
                .iter()
                .map(ToString::to_string)
                .collect(),
            dest_ips: flow
                .dest_ips
                .members()
                .iter()
                .map(ToString::to_string)
                .collect(),
            dest_domains: flow.dest_domains.members().to_vec(),
        }
    }
}

fn string_match(field: Field, matches: &[wire::StringMatch]) -> Expr {
    let comparisons: Vec<Expr> = matches
        .iter()
        .map(|string_match| {
            let op = if string_match.r#type == wire::MatchType::Fuzzy as i32 {
                Op::Contains
            } else {
                Op::Eq
            };
            Expr::Compare(Comparison {
                field: field.clone(),
                op,
                values: vec![Value::Text(string_match.value.clone())],
            })
        })
        .collect();
    any_of(comparisons)
}

fn any_of(mut alternatives: Vec<Expr>) -> Expr {
    match alternatives.len() {
        0 => Expr::All,
        1 => alternatives.pop().expect("one alternative"),
        _ => Expr::Or(alternatives),
    }
}

/// The same-hit expression of one `PolicyMatch`, `None` when it sets nothing.
pub fn policy_match_to_expr(policy_match: &PolicyMatch) -> Option<Expr> {
    let mut comparisons = Vec::new();
    let text = |field: HitField, string_match: &wire::StringMatch| Comparison {
        field: Field::Policy(TraceScope::Any, field),
        op: if string_match.r#type == wire::MatchType::Fuzzy as i32 {
            Op::Contains
        } else {
            Op::Eq
        },
        values: vec![Value::Text(string_match.value.clone())],
    };
    if let Some(kind) = kind_from_wire(policy_match.kind) {
        comparisons.push(Comparison {
            field: Field::Policy(TraceScope::Any, HitField::Kind),
            op: Op::Eq,
            values: vec![Value::Text(kind.to_string())],
        });
    }
    for (field, value) in [
        (HitField::Tier, &policy_match.tier),
        (HitField::Namespace, &policy_match.namespace),
        (HitField::Name, &policy_match.name),
    ] {
        if let Some(string_match) = value.as_ref().filter(|m| !m.value.is_empty()) {
            comparisons.push(text(field, string_match));
        }
    }
    if let Some(action) = hit_action_from_wire(policy_match.action) {
        comparisons.push(Comparison {
            field: Field::Policy(TraceScope::Any, HitField::Action),
            op: Op::Eq,
            values: vec![Value::Text(action.to_string())],
        });
    }
    (!comparisons.is_empty()).then_some(Expr::Hit(TraceScope::Any, comparisons))
}

/// A Goldmane `Filter` as a filter expression: AND across fields, OR within a list.
pub fn filter_to_expr(filter: &wire::Filter) -> Expr {
    let mut expr = Expr::All;
    for (field, matches) in [
        (TextField::SourceName, &filter.source_names),
        (TextField::SourceNamespace, &filter.source_namespaces),
        (TextField::DestName, &filter.dest_names),
        (TextField::DestNamespace, &filter.dest_namespaces),
        (TextField::Proto, &filter.protocols),
    ] {
        expr = expr.and(string_match(Field::Text(field), matches));
    }
    if !filter.dest_ports.is_empty() {
        let ports = filter
            .dest_ports
            .iter()
            .map(|port| Value::Number(u64::try_from(port.port).unwrap_or(u64::MAX)))
            .collect();
        expr = expr.and(Expr::Compare(Comparison {
            field: Field::Number(NumberField::DestPort),
            op: Op::In,
            values: ports,
        }));
    }
    if !filter.actions.is_empty() {
        let actions = filter
            .actions
            .iter()
            .map(|action| {
                Value::Text(match wire::Action::try_from(*action) {
                    Ok(wire::Action::Allow) => "allow".into(),
                    Ok(wire::Action::Deny) => "deny".into(),
                    _ => "pass".into(),
                })
            })
            .collect();
        expr = expr.and(Expr::Compare(Comparison {
            field: Field::Text(TextField::Action),
            op: Op::In,
            values: actions,
        }));
    }
    let policies: Vec<Expr> = filter
        .policies
        .iter()
        .filter_map(policy_match_to_expr)
        .collect();
    if !filter.policies.is_empty() && !policies.is_empty() {
        expr = expr.and(any_of(policies));
    }
    match wire::Reporter::try_from(filter.reporter) {
        Ok(wire::Reporter::Src) => expr = expr.and(text_equals(TextField::Reporter, "src")),
        Ok(wire::Reporter::Dst) => expr = expr.and(text_equals(TextField::Reporter, "dst")),
        _ => {}
    }
    if !filter.pending_actions.is_empty() {
        let actions = filter
            .pending_actions
            .iter()
            .filter_map(|action| hit_action_from_wire(*action))
            .map(|a| Value::Text(a.to_string()))
            .collect();
        expr = expr.and(Expr::Compare(Comparison {
            field: Field::Policy(TraceScope::Pending, HitField::Action),
            op: Op::In,
            values: actions,
        }));
    }
    expr
}

fn text_equals(field: TextField, value: &str) -> Expr {
    Expr::Compare(Comparison {
        field: Field::Text(field),
        op: Op::Eq,
        values: vec![Value::Text(value.to_string())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_flow() -> wire::Flow {
        wire::Flow {
            key: Some(wire::FlowKey {
                source_name: "frontend-*".into(),
                source_namespace: "shop".into(),
                source_type: 1,
                dest_name: "pub".into(),
                dest_namespace: "-".into(),
                dest_type: 4,
                dest_port: 443,
                proto: "tcp".into(),
                reporter: 1,
                action: 2,
                policies: Some(wire::PolicyTrace {
                    enforced_policies: vec![wire::PolicyHit {
                        kind: 10,
                        tier: "security".into(),
                        action: 2,
                        policy_index: 0,
                        rule_index: -1,
                        trigger: Some(Box::new(wire::PolicyHit {
                            kind: 2,
                            name: "egress".into(),
                            tier: "security".into(),
                            action: 2,
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    pending_policies: vec![],
                }),
                ..Default::default()
            }),
            start_time: 30,
            end_time: 45,
            source_labels: vec!["b=2".into(), "a=1".into()],
            bytes_out: 10,
            source_ips: vec!["10.0.0.1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn wire_flows_convert_both_ways() {
        let flow = Flow::try_from(wire_flow()).unwrap();
        assert_eq!(flow.source_labels.as_slice(), ["a=1", "b=2"]);
        let back = wire::Flow::from(&flow);
        assert_eq!(Flow::try_from(back.clone()).unwrap(), flow);
        assert_eq!(
            wire::Flow::from(flow.clone()),
            back,
            "moving and copying give the same message"
        );
    }

    #[test]
    fn bad_records_name_the_field() {
        let mut bad = wire_flow();
        bad.key.as_mut().unwrap().dest_port = 70000;
        assert_eq!(Flow::try_from(bad).unwrap_err().field, "dest_port");
        let mut bad = wire_flow();
        bad.bytes_in = -1;
        assert_eq!(Flow::try_from(bad).unwrap_err().field, "bytes_in");
        let mut bad = wire_flow();
        bad.key.as_mut().unwrap().reporter = 0;
        assert_eq!(Flow::try_from(bad).unwrap_err().field, "reporter");
        let mut bad = wire_flow();
        bad.source_ips = vec!["nope".into()];
        assert_eq!(Flow::try_from(bad).unwrap_err().field, "source_ips");
        let mut bad = wire_flow();
        bad.key = None;
        assert_eq!(Flow::try_from(bad).unwrap_err().field, "Key");
    }

    #[test]
    fn goldmane_filters_become_expressions() {
        let flow = Flow::try_from(wire_flow()).unwrap();
        let filter = wire::Filter {
            source_namespaces: vec![wire::StringMatch {
                value: "sho".into(),
                r#type: 1,
            }],
            dest_names: vec![wire::StringMatch {
                value: "PUBLIC NETWORK".into(),
                r#type: 0,
            }],
            protocols: vec![wire::StringMatch {
                value: "TCP".into(),
                r#type: 0,
            }],
            dest_ports: vec![wire::PortMatch { port: 443 }],
            actions: vec![2],
            policies: vec![PolicyMatch {
                name: Some(wire::StringMatch {
                    value: "egress".into(),
                    r#type: 0,
                }),
                kind: 10,
                ..Default::default()
            }],
            reporter: 1,
            ..Default::default()
        };
        let expr = filter_to_expr(&filter);
        assert!(expr.matches(&flow), "{expr}");
        let reparsed = caracal_flow::filter::parse(&expr.to_string()).unwrap();
        assert!(reparsed.matches(&flow), "{expr}");
        let miss = wire::Filter {
            reporter: 2,
            ..Default::default()
        };
        assert!(!filter_to_expr(&miss).matches(&flow));
    }
}
