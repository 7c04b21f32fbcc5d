//! The filter parser: a lexer and a recursive-descent parser written by hand, because the
//! grammar is small and what users need most is an error that points at the column and says
//! what was expected there; a parser library would cost build time for worse messages.

use std::net::IpAddr;

use ipnet::IpNet;
use thiserror::Error;

use super::{
    Comparison, Expr, Field, HitField, NumberField, Op, Side, TextField, TraceScope, Value,
};

/// A filter that does not parse, with the 1-based column where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("filter error at column {column}: {message}")]
pub struct FilterError {
    /// 1-based character column in the filter text.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

const FIELD_NAMES: &str =
    "source_namespace, source_name, source_type, source_ip, source_label KEY, \
dest_namespace, dest_name, dest_type, dest_ip, dest_label KEY, dest_port, dest_domain, \
dest_service_name, dest_service_namespace, dest_service_port_name, dest_service_port, proto, \
reporter, action, policy.{name,namespace,tier,kind,action} (also enforced.* and pending.*), \
pending_action, bytes_in, bytes_out, packets_in, packets_out, num_connections_started, \
num_connections_completed, num_connections_live";

/// Parses a filter expression; the empty string matches everything.
pub fn parse(text: &str) -> Result<Expr, FilterError> {
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
    };
    if parser.peek().kind == TokenKind::End {
        return Ok(Expr::All);
    }
    let expr = parser.or_expr()?;
    let token = parser.peek();
    if token.kind != TokenKind::End {
        return Err(token.error(format!(
            "unexpected {}; expected AND, OR or the end",
            token.describe()
        )));
    }
    Ok(expr)
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    LeftParen,
    RightParen,
    Comma,
    Operator(Op),
    Word { text: String, quoted: bool },
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    column: usize,
}

impl Token {
    fn error(&self, message: String) -> FilterError {
        FilterError {
            column: self.column,
            message,
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            TokenKind::LeftParen => "`(`".into(),
            TokenKind::RightParen => "`)`".into(),
            TokenKind::Comma => "`,`".into(),
            TokenKind::Operator(op) => format!("operator `{}`", super::print::op_text(*op)),
            TokenKind::Word { text, quoted: true } => format!("\"{text}\""),
            TokenKind::Word { text, .. } => format!("`{text}`"),
            TokenKind::End => "end of filter".into(),
        }
    }

    fn keyword(&self) -> Option<String> {
        match &self.kind {
            TokenKind::Word {
                text,
                quoted: false,
            } => Some(text.to_ascii_uppercase()),
            _ => None,
        }
    }
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | ',' | '=' | '!' | '<' | '>' | '~' | '"')
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let column = index + 1;
        let mut push = |kind, width: usize| {
            tokens.push(Token { kind, column });
            width
        };
        let next = chars.get(index + 1).copied();
        index +=
            match c {
                c if c.is_whitespace() => 1,
                '(' => push(TokenKind::LeftParen, 1),
                ')' => push(TokenKind::RightParen, 1),
                ',' => push(TokenKind::Comma, 1),
                '=' if next == Some('=') => push(TokenKind::Operator(Op::Eq), 2),
                '=' => push(TokenKind::Operator(Op::Eq), 1),
                '!' if next == Some('=') => push(TokenKind::Operator(Op::Ne), 2),
                '!' if next == Some('~') => push(TokenKind::Operator(Op::NotContains), 2),
                '~' => push(TokenKind::Operator(Op::Contains), 1),
                '<' if next == Some('=') => push(TokenKind::Operator(Op::Le), 2),
                '<' => push(TokenKind::Operator(Op::Lt), 1),
                '>' if next == Some('=') => push(TokenKind::Operator(Op::Ge), 2),
                '>' => push(TokenKind::Operator(Op::Gt), 1),
                '!' => {
                    return Err(FilterError {
                        column,
                        message: "`!` must be followed by `=` or `~`; use NOT to negate".into(),
                    })
                }
                '"' => {
                    let mut value = String::new();
                    let mut end = index + 1;
                    loop {
                        match chars.get(end) {
                            None => {
                                return Err(FilterError {
                                    column,
                                    message: "unterminated string; add a closing `\"`".into(),
                                })
                            }
                            Some('"') => break,
                            Some('\\') => {
                                match chars.get(end + 1) {
                                    Some(escaped @ ('"' | '\\')) => value.push(*escaped),
                                    _ => return Err(FilterError {
                                        column: end + 1,
                                        message:
                                            "only `\\\"` and `\\\\` escapes are allowed in strings"
                                                .into(),
                                    }),
                                }
                                end += 2;
                            }
                            Some(other) => {
                                value.push(*other);
                                end += 1;
                            }
                        }
                    }
                    push(
                        TokenKind::Word {
                            text: value,
                            quoted: true,
                        },
                        end + 1 - index,
                    )
                }
                _ => {
                    let mut end = index;
                    while end < chars.len() && is_word_char(chars[end]) {
                        end += 1;
                    }
                    let word: String = chars[index..end].iter().collect();
                    push(
                        TokenKind::Word {
                            text: word,
                            quoted: false,
                        },
                        end - index,
                    )
                }
            };
    }
    tokens.push(Token {
        kind: TokenKind::End,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.position]
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.position].clone();
        if token.kind != TokenKind::End {
            self.position += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        self.peek().keyword().as_deref() == Some(keyword)
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> Result<Token, FilterError> {
        let token = self.next();
        if token.kind == kind {
            Ok(token)
        } else {
            Err(token.error(format!("expected {what}, found {}", token.describe())))
        }
    }

    fn or_expr(&mut self) -> Result<Expr, FilterError> {
        let mut children = vec![self.and_expr()?];
        while self.at_keyword("OR") {
            self.next();
            children.push(self.and_expr()?);
        }
        Ok(flatten(children, false))
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut children = vec![self.unary()?];
        while self.at_keyword("AND") {
            self.next();
            children.push(self.unary()?);
        }
        Ok(flatten(children, true))
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.at_keyword("NOT") {
            self.next();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek().kind == TokenKind::LeftParen {
            self.next();
            let inner = self.or_expr()?;
            self.expect(TokenKind::RightParen, "`)`")?;
            return Ok(inner);
        }
        if self.at_keyword("HAS")
            && self.tokens.get(self.position + 1).map(|t| &t.kind) == Some(&TokenKind::LeftParen)
        {
            self.next();
            self.next();
            let side_token = self.next();
            let side = match side_token.keyword().as_deref() {
                Some("SOURCE_LABEL") => Side::Source,
                Some("DEST_LABEL") => Side::Dest,
                _ => {
                    return Err(side_token.error(format!(
                        "expected `source_label` or `dest_label` in has(), found {}",
                        side_token.describe()
                    )))
                }
            };
            let key = self.word("a label key")?;
            self.expect(TokenKind::RightParen, "`)` closing has(")?;
            return Ok(Expr::HasLabel(side, key));
        }
        if let Some(scope) = self.hit_scope() {
            self.next();
            self.next();
            let mut comparisons = vec![self.hit_comparison(scope)?];
            while self.at_keyword("AND") {
                self.next();
                comparisons.push(self.hit_comparison(scope)?);
            }
            self.expect(TokenKind::RightParen, "AND or `)` closing the policy match")?;
            return Ok(Expr::Hit(scope, comparisons));
        }
        self.comparison()
    }

    /// `policy(`, `enforced(` or `pending(` starts a same-hit match.
    fn hit_scope(&self) -> Option<TraceScope> {
        if self.tokens.get(self.position + 1).map(|t| &t.kind) != Some(&TokenKind::LeftParen) {
            return None;
        }
        match self.peek().keyword().as_deref() {
            Some("POLICY") => Some(TraceScope::Any),
            Some("ENFORCED") => Some(TraceScope::Enforced),
            Some("PENDING") => Some(TraceScope::Pending),
            _ => None,
        }
    }

    fn hit_comparison(&mut self, scope: TraceScope) -> Result<Comparison, FilterError> {
        let token = self.peek().clone();
        let property = match token.keyword().as_deref() {
            Some("NAME") => HitField::Name,
            Some("NAMESPACE") => HitField::Namespace,
            Some("TIER") => HitField::Tier,
            Some("KIND") => HitField::Kind,
            Some("ACTION") => HitField::Action,
            _ => {
                return Err(token.error(format!(
                "expected name, namespace, tier, kind or action inside the policy match, found {}",
                token.describe()
            )))
            }
        };
        self.next();
        let field = Field::Policy(scope, property);
        let op_token = self.next();
        let op = match &op_token.kind {
            TokenKind::Operator(op) => *op,
            _ if op_token.keyword().as_deref() == Some("IN") => Op::In,
            _ => {
                return Err(op_token.error(format!(
                    "expected an operator after `{}`, found {}",
                    property.name(),
                    op_token.describe()
                )))
            }
        };
        check_operator(&field, op).map_err(|message| op_token.error(message))?;
        let values = if op == Op::In {
            self.expect(TokenKind::LeftParen, "`(` starting the IN list")?;
            let mut values = vec![self.value(&field)?];
            while self.peek().kind == TokenKind::Comma {
                self.next();
                values.push(self.value(&field)?);
            }
            self.expect(TokenKind::RightParen, "`,` or `)` in the IN list")?;
            values
        } else {
            vec![self.value(&field)?]
        };
        Ok(Comparison { field, op, values })
    }

    fn word(&mut self, what: &str) -> Result<String, FilterError> {
        let token = self.next();
        match token.kind {
            TokenKind::Word { text, .. } => Ok(text),
            _ => Err(token.error(format!("expected {what}, found {}", token.describe()))),
        }
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let field_token = self.next();
        let TokenKind::Word {
            text: name,
            quoted: false,
        } = &field_token.kind
        else {
            return Err(field_token.error(format!(
                "expected a field name, found {}",
                field_token.describe()
            )));
        };
        let field = match field_by_name(name) {
            Some(FieldName::Complete(field)) => field,
            Some(FieldName::NeedsLabelKey(side)) => {
                Field::Label(side, self.word("a label key after the label field")?)
            }
            None => {
                return Err(
                    field_token.error(format!("unknown field `{name}`; fields are: {FIELD_NAMES}"))
                )
            }
        };
        let field_text = super::print::field_text(&field);
        let op_token = self.next();
        let op = match &op_token.kind {
            TokenKind::Operator(op) => *op,
            _ if op_token.keyword().as_deref() == Some("IN") => Op::In,
            _ if op_token.keyword().as_deref() == Some("NOT") && self.at_keyword("IN") => {
                self.next();
                Op::NotIn
            }
            _ => {
                return Err(op_token.error(format!(
                    "expected an operator (= != ~ !~ < <= > >= IN) after `{field_text}`, found {}",
                    op_token.describe()
                )))
            }
        };
        check_operator(&field, op).map_err(|message| op_token.error(message))?;
        let values = if matches!(op, Op::In | Op::NotIn) {
            self.expect(TokenKind::LeftParen, "`(` starting the IN list")?;
            let mut values = vec![self.value(&field)?];
            while self.peek().kind == TokenKind::Comma {
                self.next();
                values.push(self.value(&field)?);
            }
            self.expect(TokenKind::RightParen, "`,` or `)` in the IN list")?;
            values
        } else {
            vec![self.value(&field)?]
        };
        Ok(Expr::Compare(Comparison { field, op, values }))
    }

    fn value(&mut self, field: &Field) -> Result<Value, FilterError> {
        let token = self.next();
        let TokenKind::Word { text, quoted } = &token.kind else {
            return Err(token.error(format!(
                "expected a value for `{}`, found {}",
                super::print::field_text(field),
                token.describe()
            )));
        };
        let field_text = super::print::field_text(field);
        match field {
            Field::Number(number_field) => {
                let number: u64 = text.parse().map_err(|_| {
                    token.error(format!(
                        "`{field_text}` takes a whole number, found `{text}`"
                    ))
                })?;
                if matches!(
                    number_field,
                    NumberField::DestPort | NumberField::DestServicePort
                ) && number > 65535
                {
                    return Err(token.error(format!(
                        "`{field_text}` is a port, 0 to 65535; found {number}"
                    )));
                }
                Ok(Value::Number(number))
            }
            Field::Ip(_) => {
                let net = text
                    .parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| token.error(format!("`{field_text}` takes an address or CIDR like 203.0.113.0/24, found `{text}`")))?;
                Ok(Value::Net(net))
            }
            Field::Text(text_field) => {
                if !quoted && is_keyword(text) {
                    return Err(token.error(format!("expected a value for `{field_text}`, found keyword `{text}`; quote it to mean the text")));
                }
                text_field
                    .check_value(text)
                    .map(Value::Text)
                    .map_err(|message| token.error(message))
            }
            Field::Policy(_, hit_field) => hit_field
                .check_value(text)
                .map(Value::Text)
                .map_err(|message| token.error(message)),
            Field::Label(..) | Field::Domain => Ok(Value::Text(text.clone())),
        }
    }
}

pub(super) fn is_keyword(word: &str) -> bool {
    matches!(
        word.to_ascii_uppercase().as_str(),
        "AND" | "OR" | "NOT" | "IN" | "HAS"
    )
}

fn flatten(children: Vec<Expr>, conjunction: bool) -> Expr {
    let mut flat = Vec::with_capacity(children.len());
    for child in children {
        match (child, conjunction) {
            (Expr::And(inner), true) | (Expr::Or(inner), false) => flat.extend(inner),
            (other, _) => flat.push(other),
        }
    }
    if flat.len() == 1 {
        return flat.pop().expect("one child");
    }
    if conjunction {
        Expr::And(flat)
    } else {
        Expr::Or(flat)
    }
}

enum FieldName {
    Complete(Field),
    NeedsLabelKey(Side),
}

fn field_by_name(name: &str) -> Option<FieldName> {
    use FieldName::Complete;
    let lower = name.to_ascii_lowercase();
    if let Some((scope, property)) = lower.split_once('.') {
        let scope = match scope {
            "policy" => TraceScope::Any,
            "enforced" => TraceScope::Enforced,
            "pending" => TraceScope::Pending,
            _ => return None,
        };
        let property = match property {
            "name" => HitField::Name,
            "namespace" => HitField::Namespace,
            "tier" => HitField::Tier,
            "kind" => HitField::Kind,
            "action" => HitField::Action,
            _ => return None,
        };
        return Some(Complete(Field::Policy(scope, property)));
    }
    let text = |field| Some(Complete(Field::Text(field)));
    let number = |field| Some(Complete(Field::Number(field)));
    match lower.as_str() {
        "source_type" => text(TextField::SourceType),
        "source_namespace" => text(TextField::SourceNamespace),
        "source_name" => text(TextField::SourceName),
        "dest_type" => text(TextField::DestType),
        "dest_namespace" => text(TextField::DestNamespace),
        "dest_name" => text(TextField::DestName),
        "dest_service_name" => text(TextField::DestServiceName),
        "dest_service_namespace" => text(TextField::DestServiceNamespace),
        "dest_service_port_name" => text(TextField::DestServicePortName),
        "proto" | "protocol" => text(TextField::Proto),
        "reporter" => text(TextField::Reporter),
        "action" => text(TextField::Action),
        "dest_port" | "port" => number(NumberField::DestPort),
        "dest_service_port" => number(NumberField::DestServicePort),
        "bytes_in" => number(NumberField::BytesIn),
        "bytes_out" => number(NumberField::BytesOut),
        "packets_in" => number(NumberField::PacketsIn),
        "packets_out" => number(NumberField::PacketsOut),
        "num_connections_started" => number(NumberField::ConnectionsStarted),
        "num_connections_completed" => number(NumberField::ConnectionsCompleted),
        "num_connections_live" => number(NumberField::ConnectionsLive),
        "source_ip" => Some(Complete(Field::Ip(Side::Source))),
        "dest_ip" => Some(Complete(Field::Ip(Side::Dest))),
        "dest_domain" | "domain" => Some(Complete(Field::Domain)),
        "pending_action" => Some(Complete(Field::Policy(
            TraceScope::Pending,
            HitField::Action,
        ))),
        "source_label" => Some(FieldName::NeedsLabelKey(Side::Source)),
        "dest_label" => Some(FieldName::NeedsLabelKey(Side::Dest)),
        _ => None,
    }
}

fn check_operator(field: &Field, op: Op) -> Result<(), String> {
    let ordering = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
    let substring = matches!(op, Op::Contains | Op::NotContains);
    let field_text = super::print::field_text(field);
    let op_text = super::print::op_text(op);
    match field {
        Field::Number(_) if substring => Err(format!(
            "`{op_text}` compares text; `{field_text}` is a number (use = < <= > >=)"
        )),
        Field::Ip(_) if ordering || substring => Err(format!(
            "`{field_text}` takes = != IN with an address or CIDR, not `{op_text}`"
        )),
        Field::Text(_) | Field::Label(..) | Field::Domain | Field::Policy(..) if ordering => Err(
            format!("`{op_text}` needs a numeric field; `{field_text}` is text (use = != ~ !~ IN)"),
        ),
        _ => Ok(()),
    }
}
