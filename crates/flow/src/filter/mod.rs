//! The filter language shared by the CLI, the HTTP API, the console and alert rules:
//! `source_namespace = shop AND action = deny AND dest_port IN (80, 443)`.
//! An expression is parsed once into [`Expr`], checked against the field types, and then run
//! against any record that exposes [`FlowFields`] (a materialized [`Flow`] or a stored key).

mod eval;
mod parse;
mod print;
#[cfg(test)]
mod tests;

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use eval::FlowFields;
pub use parse::{parse, FilterError};

use crate::model::{Action, EndpointType, HitAction, PolicyKind, Reporter};

/// A parsed filter. `And`/`Or` are flat: neither holds a child of its own kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Matches every flow (the empty filter).
    All,
    /// Every child matches.
    And(Vec<Expr>),
    /// Some child matches.
    Or(Vec<Expr>),
    /// The child does not match.
    Not(Box<Expr>),
    /// `has(source_label KEY)`: the endpoint carries the label.
    HasLabel(Side, String),
    /// A field compared with values.
    Compare(Comparison),
    /// `policy(name = a AND tier = b)`: one hit in the scope satisfies every comparison
    /// (each on a `Field::Policy` of that scope).
    Hit(TraceScope, Vec<Comparison>),
}

/// One end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The initiating endpoint.
    Source,
    /// The receiving endpoint.
    Dest,
}

/// Which hits of the policy trace a policy field looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceScope {
    /// Enforced or pending hits.
    Any,
    /// Enforced hits only.
    Enforced,
    /// Pending (staged) hits only.
    Pending,
}

/// A property of a policy hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HitField {
    /// The policy's name.
    Name,
    /// The policy's namespace.
    Namespace,
    /// The policy's tier.
    Tier,
    /// The policy's kind.
    Kind,
    /// What the hit decided.
    Action,
}

/// A text field of the flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextField {
    /// `source_type`.
    SourceType,
    /// `source_namespace`.
    SourceNamespace,
    /// `source_name`.
    SourceName,
    /// `dest_type`.
    DestType,
    /// `dest_namespace`.
    DestNamespace,
    /// `dest_name`.
    DestName,
    /// `dest_service_name`.
    DestServiceName,
    /// `dest_service_namespace`.
    DestServiceNamespace,
    /// `dest_service_port_name`.
    DestServicePortName,
    /// `proto`.
    Proto,
    /// `reporter`.
    Reporter,
    /// `action`.
    Action,
}

/// A numeric field: a port of the key or a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NumberField {
    /// `dest_port`.
    DestPort,
    /// `dest_service_port`.
    DestServicePort,
    /// `bytes_in`.
    BytesIn,
    /// `bytes_out`.
    BytesOut,
    /// `packets_in`.
    PacketsIn,
    /// `packets_out`.
    PacketsOut,
    /// `num_connections_started`.
    ConnectionsStarted,
    /// `num_connections_completed`.
    ConnectionsCompleted,
    /// `num_connections_live`.
    ConnectionsLive,
}

/// What a comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A text field of the key.
    Text(TextField),
    /// A port or counter.
    Number(NumberField),
    /// A label value of one side (`source_label app`).
    Label(Side, String),
    /// The addresses seen on one side.
    Ip(Side),
    /// The destination domains.
    Domain,
    /// A property of policy hits.
    Policy(TraceScope, HitField),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=` (the negation of `=`)
    Ne,
    /// `~` case-sensitive substring
    Contains,
    /// `!~`
    NotContains,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `IN (a, b)`
    In,
    /// `NOT IN (a, b)`
    NotIn,
}

/// A typed literal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Text.
    Text(String),
    /// A non-negative number.
    Number(u64),
    /// An address or network.
    Net(IpNet),
}

/// `field op value(s)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: Op,
    /// With what; one value except for `IN`/`NOT IN`.
    pub values: Vec<Value>,
}

impl Expr {
    /// Conjunction of two expressions, kept flat.
    pub fn and(self, other: Expr) -> Expr {
        match (self, other) {
            (Expr::All, other) | (other, Expr::All) => other,
            (Expr::And(mut left), Expr::And(right)) => {
                left.extend(right);
                Expr::And(left)
            }
            (Expr::And(mut left), other) => {
                left.push(other);
                Expr::And(left)
            }
            (first, Expr::And(mut right)) => {
                right.insert(0, first);
                Expr::And(right)
            }
            (first, second) => Expr::And(vec![first, second]),
        }
    }

    /// Whether evaluating needs only the flow key (no labels, addresses, domains or counters),
    /// so a store can decide once per key instead of once per record.
    pub fn is_key_only(&self) -> bool {
        match self {
            Expr::All => true,
            Expr::And(children) | Expr::Or(children) => children.iter().all(Expr::is_key_only),
            Expr::Not(child) => child.is_key_only(),
            Expr::HasLabel(..) => false,
            Expr::Hit(..) => true,
            Expr::Compare(comparison) => match &comparison.field {
                Field::Text(_) | Field::Policy(..) => true,
                Field::Number(field) => {
                    matches!(field, NumberField::DestPort | NumberField::DestServicePort)
                }
                Field::Label(..) | Field::Ip(_) | Field::Domain => false,
            },
        }
    }
}

impl TextField {
    /// The field's name in the language (and in JSON).
    pub fn name(self) -> &'static str {
        match self {
            TextField::SourceType => "source_type",
            TextField::SourceNamespace => "source_namespace",
            TextField::SourceName => "source_name",
            TextField::DestType => "dest_type",
            TextField::DestNamespace => "dest_namespace",
            TextField::DestName => "dest_name",
            TextField::DestServiceName => "dest_service_name",
            TextField::DestServiceNamespace => "dest_service_namespace",
            TextField::DestServicePortName => "dest_service_port_name",
            TextField::Proto => "proto",
            TextField::Reporter => "reporter",
            TextField::Action => "action",
        }
    }

    /// The values an enumerated field accepts, `None` for free text.
    fn check_value(self, value: &str) -> Result<String, String> {
        let canonical = match self {
            TextField::SourceType | TextField::DestType => {
                value.parse::<EndpointType>().map(|v| v.to_string())
            }
            TextField::Reporter => value.parse::<Reporter>().map(|v| v.to_string()),
            TextField::Action => value.parse::<Action>().map(|v| v.to_string()),
            TextField::Proto => return Ok(value.to_ascii_lowercase()),
            _ => return Ok(value.to_string()),
        };
        canonical.map_err(|error| error.to_string())
    }
}

impl NumberField {
    /// The field's name in the language.
    pub fn name(self) -> &'static str {
        match self {
            NumberField::DestPort => "dest_port",
            NumberField::DestServicePort => "dest_service_port",
            NumberField::BytesIn => "bytes_in",
            NumberField::BytesOut => "bytes_out",
            NumberField::PacketsIn => "packets_in",
            NumberField::PacketsOut => "packets_out",
            NumberField::ConnectionsStarted => "num_connections_started",
            NumberField::ConnectionsCompleted => "num_connections_completed",
            NumberField::ConnectionsLive => "num_connections_live",
        }
    }
}

impl HitField {
    pub(crate) fn name(self) -> &'static str {
        match self {
            HitField::Name => "name",
            HitField::Namespace => "namespace",
            HitField::Tier => "tier",
            HitField::Kind => "kind",
            HitField::Action => "action",
        }
    }

    fn check_value(self, value: &str) -> Result<String, String> {
        match self {
            HitField::Kind => value
                .parse::<PolicyKind>()
                .map(|v| v.to_string())
                .map_err(|e| e.to_string()),
            HitField::Action => value
                .parse::<HitAction>()
                .map(|v| v.to_string())
                .map_err(|e| e.to_string()),
            _ => Ok(value.to_string()),
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Dest => "dest",
        })
    }
}
