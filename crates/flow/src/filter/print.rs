//! The canonical text of a filter: what the console puts in URLs and what `parse` reads back
//! to the same expression.

use std::fmt;

use super::parse::is_keyword;
use super::{Expr, Field, HitField, Op, TraceScope, Value};

pub(super) fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Contains => "~",
        Op::NotContains => "!~",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::In => "IN",
        Op::NotIn => "NOT IN",
    }
}

pub(super) fn field_text(field: &Field) -> String {
    match field {
        Field::Text(text) => text.name().to_string(),
        Field::Number(number) => number.name().to_string(),
        Field::Label(side, key) => format!("{side}_label {}", quote(key)),
        Field::Ip(side) => format!("{side}_ip"),
        Field::Domain => "dest_domain".to_string(),
        Field::Policy(TraceScope::Pending, HitField::Action) => "pending_action".to_string(),
        Field::Policy(scope, property) => {
            let scope = match scope {
                TraceScope::Any => "policy",
                TraceScope::Enforced => "enforced",
                TraceScope::Pending => "pending",
            };
            format!("{scope}.{}", property.name())
        }
    }
}

fn quote(text: &str) -> String {
    let bare = !text.is_empty()
        && !is_keyword(text)
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*' | ':'));
    if bare {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(text) => f.write_str(&quote(text)),
            Value::Number(number) => write!(f, "{number}"),
            Value::Net(net) => write!(f, "{net}"),
        }
    }
}

impl Expr {
    fn write_child(&self, f: &mut fmt::Formatter<'_>, parenthesize: bool) -> fmt::Result {
        if parenthesize {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => Ok(()),
            Expr::And(children) => {
                for (index, child) in children.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" AND ")?;
                    }
                    child.write_child(f, matches!(child, Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Or(children) => {
                for (index, child) in children.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" OR ")?;
                    }
                    child.write_child(f, false)?;
                }
                Ok(())
            }
            Expr::Not(child) => {
                f.write_str("NOT ")?;
                child.write_child(f, matches!(**child, Expr::And(_) | Expr::Or(_)))
            }
            Expr::HasLabel(side, key) => write!(f, "has({side}_label {})", quote(key)),
            Expr::Hit(scope, comparisons) => {
                let scope = match scope {
                    TraceScope::Any => "policy",
                    TraceScope::Enforced => "enforced",
                    TraceScope::Pending => "pending",
                };
                write!(f, "{scope}(")?;
                for (index, comparison) in comparisons.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" AND ")?;
                    }
                    let Field::Policy(_, property) = comparison.field else {
                        continue;
                    };
                    write!(f, "{} {} ", property.name(), op_text(comparison.op))?;
                    write_values(f, comparison)?;
                }
                f.write_str(")")
            }
            Expr::Compare(comparison) => {
                write!(
                    f,
                    "{} {} ",
                    field_text(&comparison.field),
                    op_text(comparison.op)
                )?;
                write_values(f, comparison)
            }
        }
    }
}

fn write_values(f: &mut fmt::Formatter<'_>, comparison: &super::Comparison) -> fmt::Result {
    if !matches!(comparison.op, Op::In | Op::NotIn) {
        return write!(f, "{}", comparison.values[0]);
    }
    f.write_str("(")?;
    for (index, value) in comparison.values.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{value}")?;
    }
    f.write_str(")")
}
