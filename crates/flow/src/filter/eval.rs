//! Running a parsed filter against a record.

use std::net::IpAddr;

use super::{
    Comparison, Expr, Field, HitField, NumberField, Op, Side, TextField, TraceScope, Value,
};
use crate::model::{label_value, Flow, PolicyHit, PolicyTrace};

/// What a filter reads from a record. Stores implement it over their compact form so a filter
/// runs without materializing a [`Flow`]; a key-only view may answer the non-key methods with
/// empty values as long as it only runs filters for which [`Expr::is_key_only`] holds.
pub trait FlowFields {
    /// A text field of the key, in canonical form (`wep`, `src`, `allow`, ...).
    fn text(&self, field: TextField) -> &str;
    /// A port or counter.
    fn number(&self, field: NumberField) -> u64;
    /// The `key=value` labels of one side, sorted.
    fn labels(&self, side: Side) -> &[String];
    /// Addresses seen on one side.
    fn ips(&self, side: Side) -> &[IpAddr];
    /// Destination domains.
    fn domains(&self) -> &[String];
    /// The policy trace.
    fn trace(&self) -> &PolicyTrace;
}

impl Expr {
    /// Whether the record matches.
    pub fn matches(&self, record: &dyn FlowFields) -> bool {
        match self {
            Expr::All => true,
            Expr::And(children) => children.iter().all(|child| child.matches(record)),
            Expr::Or(children) => children.iter().any(|child| child.matches(record)),
            Expr::Not(child) => !child.matches(record),
            Expr::HasLabel(side, key) => label_value(record.labels(*side), key).is_some(),
            Expr::Compare(comparison) => comparison.matches(record),
            Expr::Hit(scope, comparisons) => hits_in(record.trace(), *scope).any(|hit| {
                comparisons
                    .iter()
                    .all(|comparison| comparison.matches_hit(hit))
            }),
        }
    }
}

impl Comparison {
    fn matches(&self, record: &dyn FlowFields) -> bool {
        match self.op {
            Op::Ne => !self.positive(Op::Eq, record),
            Op::NotContains => !self.positive(Op::Contains, record),
            Op::NotIn => !self.positive(Op::In, record),
            op => self.positive(op, record),
        }
    }

    fn positive(&self, op: Op, record: &dyn FlowFields) -> bool {
        match &self.field {
            Field::Text(field) => {
                let actual = record.text(*field);
                self.values
                    .iter()
                    .any(|value| text_matches(*field, actual, op, value))
            }
            Field::Number(field) => {
                let actual = record.number(*field);
                self.values.iter().any(|value| match value {
                    Value::Number(expected) => number_matches(actual, op, *expected),
                    _ => false,
                })
            }
            Field::Label(side, key) => match label_value(record.labels(*side), key) {
                Some(actual) => self
                    .values
                    .iter()
                    .any(|value| plain_matches(actual, op, value)),
                None => false,
            },
            Field::Ip(side) => record.ips(*side).iter().any(|address| {
                self.values.iter().any(|value| match value {
                    Value::Net(net) => net.contains(address),
                    _ => false,
                })
            }),
            Field::Domain => record.domains().iter().any(|domain| {
                self.values
                    .iter()
                    .any(|value| domain_matches(domain, op, value))
            }),
            Field::Policy(scope, field) => hits_in(record.trace(), *scope).any(|hit| {
                self.values
                    .iter()
                    .any(|value| hit_matches(hit, *field, op, value))
            }),
        }
    }
}

fn hits_in(trace: &PolicyTrace, scope: TraceScope) -> Box<dyn Iterator<Item = &PolicyHit> + '_> {
    match scope {
        TraceScope::Any => Box::new(trace.hits()),
        TraceScope::Enforced => Box::new(trace.enforced.iter()),
        TraceScope::Pending => Box::new(trace.pending.iter()),
    }
}

impl Comparison {
    /// Whether one policy hit satisfies this comparison (for `Field::Policy` comparisons).
    pub fn matches_hit(&self, hit: &PolicyHit) -> bool {
        let Field::Policy(_, field) = self.field else {
            return false;
        };
        let positive = |op| {
            self.values
                .iter()
                .any(|value| hit_matches(hit, field, op, value))
        };
        match self.op {
            Op::Ne => !positive(Op::Eq),
            Op::NotContains => !positive(Op::Contains),
            Op::NotIn => !positive(Op::In),
            op => positive(op),
        }
    }
}

fn plain_matches(actual: &str, op: Op, value: &Value) -> bool {
    let Value::Text(expected) = value else {
        return false;
    };
    match op {
        Op::Contains => actual.contains(expected.as_str()),
        _ => actual == expected,
    }
}

fn domain_matches(actual: &str, op: Op, value: &Value) -> bool {
    let Value::Text(expected) = value else {
        return false;
    };
    match op {
        Op::Contains => actual.contains(expected.as_str()),
        _ => match expected.strip_prefix("*.") {
            Some(suffix) => {
                actual.len() > suffix.len()
                    && actual.ends_with(suffix)
                    && actual[..actual.len() - suffix.len()].ends_with('.')
            }
            None => actual.eq_ignore_ascii_case(expected),
        },
    }
}

/// Names Goldmane and Whisker use for the stored short forms.
fn alias_equals(field: TextField, actual: &str, expected: &str) -> bool {
    match field {
        TextField::SourceName | TextField::DestName => {
            (actual == "pub" && expected == "PUBLIC NETWORK")
                || (actual == "pvt" && expected == "PRIVATE NETWORK")
        }
        TextField::SourceNamespace | TextField::DestNamespace | TextField::DestServiceNamespace => {
            actual == "-" && expected == "Global"
        }
        _ => false,
    }
}

fn text_matches(field: TextField, actual: &str, op: Op, value: &Value) -> bool {
    let Value::Text(expected) = value else {
        return false;
    };
    match (field, op) {
        (TextField::Proto, Op::Contains) => actual.to_ascii_lowercase().contains(expected.as_str()),
        (TextField::Proto, _) => actual.eq_ignore_ascii_case(expected),
        (_, Op::Contains) => actual.contains(expected.as_str()),
        _ => actual == expected || alias_equals(field, actual, expected),
    }
}

fn number_matches(actual: u64, op: Op, expected: u64) -> bool {
    match op {
        Op::Lt => actual < expected,
        Op::Le => actual <= expected,
        Op::Gt => actual > expected,
        Op::Ge => actual >= expected,
        _ => actual == expected,
    }
}

fn hit_matches(hit: &PolicyHit, field: HitField, op: Op, value: &Value) -> bool {
    // An end-of-tier hit is named after the policy that triggered it (Goldmane does the same).
    let named = match (&hit.trigger, field) {
        (Some(trigger), HitField::Name | HitField::Namespace) => trigger.as_ref(),
        _ => hit,
    };
    let actual: &str = match field {
        HitField::Name => &named.name,
        HitField::Namespace => &named.namespace,
        HitField::Tier => &hit.tier,
        HitField::Kind => hit.kind.as_str(),
        HitField::Action => hit.action.as_str(),
    };
    plain_matches(actual, op, value)
}

impl FlowFields for Flow {
    fn text(&self, field: TextField) -> &str {
        let key = &self.key;
        match field {
            TextField::SourceType => key.source.kind.as_str(),
            TextField::SourceNamespace => &key.source.namespace,
            TextField::SourceName => &key.source.name,
            TextField::DestType => key.dest.kind.as_str(),
            TextField::DestNamespace => &key.dest.namespace,
            TextField::DestName => &key.dest.name,
            TextField::DestServiceName => &key.service.name,
            TextField::DestServiceNamespace => &key.service.namespace,
            TextField::DestServicePortName => &key.service.port_name,
            TextField::Proto => &key.proto,
            TextField::Reporter => key.reporter.as_str(),
            TextField::Action => key.action.as_str(),
        }
    }

    fn number(&self, field: NumberField) -> u64 {
        let counters = &self.counters;
        match field {
            NumberField::DestPort => u64::from(self.key.dest_port),
            NumberField::DestServicePort => u64::from(self.key.service.port),
            NumberField::BytesIn => counters.bytes_in,
            NumberField::BytesOut => counters.bytes_out,
            NumberField::PacketsIn => counters.packets_in,
            NumberField::PacketsOut => counters.packets_out,
            NumberField::ConnectionsStarted => counters.connections_started,
            NumberField::ConnectionsCompleted => counters.connections_completed,
            NumberField::ConnectionsLive => counters.connections_live,
        }
    }

    fn labels(&self, side: Side) -> &[String] {
        match side {
            Side::Source => self.source_labels.as_slice(),
            Side::Dest => self.dest_labels.as_slice(),
        }
    }

    fn ips(&self, side: Side) -> &[IpAddr] {
        match side {
            Side::Source => self.source_ips.members(),
            Side::Dest => self.dest_ips.members(),
        }
    }

    fn domains(&self) -> &[String] {
        self.dest_domains.members()
    }

    fn trace(&self) -> &PolicyTrace {
        &self.key.policies
    }
}
