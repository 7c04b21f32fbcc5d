//! Calico's label selector language: `app == 'web' && tier in {'api', 'db'} && !has(debug)`.
//! Parsed by hand for errors that name the position and what was expected; printed back in a
//! canonical form that parses to the same selector.

use std::fmt;

use thiserror::Error;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `all()`: every endpoint.
    All,
    /// `has(key)`.
    Has(String),
    /// `key == 'value'`.
    Equals(String, String),
    /// `key != 'value'` (true when the label is absent).
    NotEquals(String, String),
    /// `key in {'a', 'b'}`.
    In(String, Vec<String>),
    /// `key not in {'a', 'b'}` (true when the label is absent).
    NotIn(String, Vec<String>),
    /// `key starts with 'prefix'`.
    StartsWith(String, String),
    /// `key ends with 'suffix'`.
    EndsWith(String, String),
    /// `key contains 'part'`.
    Contains(String, String),
    /// `!selector`.
    Not(Box<Selector>),
    /// `a && b && ...`.
    And(Vec<Selector>),
    /// `a || b || ...`.
    Or(Vec<Selector>),
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("selector error at column {column}: {message}")]
pub struct SelectorError {
    /// 1-based character column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Where a selector reads labels from.
pub trait Labels {
    /// The value of label `key`.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for std::collections::BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Selector {
    /// Parses a selector; the empty string means `all()` as in Calico.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            position: 0,
        };
        parser.skip_space();
        if parser.at_end() {
            return Ok(Selector::All);
        }
        let selector = parser.or()?;
        parser.skip_space();
        if !parser.at_end() {
            return Err(parser.error("expected `&&`, `||`, `)` or the end of the selector"));
        }
        Ok(selector)
    }

    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &dyn Labels) -> bool {
        match self {
            Selector::All => true,
            Selector::Has(key) => labels.label(key).is_some(),
            Selector::Equals(key, value) => labels.label(key) == Some(value),
            Selector::NotEquals(key, value) => labels.label(key) != Some(value),
            Selector::In(key, values) => labels
                .label(key)
                .is_some_and(|actual| values.iter().any(|value| value == actual)),
            Selector::NotIn(key, values) => !labels
                .label(key)
                .is_some_and(|actual| values.iter().any(|value| value == actual)),
            Selector::StartsWith(key, prefix) => labels
                .label(key)
                .is_some_and(|actual| actual.starts_with(prefix.as_str())),
            Selector::EndsWith(key, suffix) => labels
                .label(key)
                .is_some_and(|actual| actual.ends_with(suffix.as_str())),
            Selector::Contains(key, part) => labels
                .label(key)
                .is_some_and(|actual| actual.contains(part.as_str())),
            Selector::Not(inner) => !inner.matches(labels),
            Selector::And(children) => children.iter().all(|child| child.matches(labels)),
            Selector::Or(children) => children.iter().any(|child| child.matches(labels)),
        }
    }
}

struct Parser {
    chars: Vec<char>,
    position: usize,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> SelectorError {
        SelectorError {
            column: self.position + 1,
            message: message.into(),
        }
    }

    fn at_end(&self) -> bool {
        self.position >= self.chars.len()
    }

    fn skip_space(&mut self) {
        while self
            .chars
            .get(self.position)
            .is_some_and(|c| c.is_whitespace())
        {
            self.position += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let end = self.position + token.chars().count();
        if end <= self.chars.len()
            && self.chars[self.position..end]
                .iter()
                .copied()
                .eq(token.chars())
        {
            self.position = end;
            true
        } else {
            false
        }
    }

    /// A keyword: the text followed by something that cannot continue a key.
    fn eat_word(&mut self, word: &str) -> bool {
        let saved = self.position;
        if self.eat(word)
            && !self
                .chars
                .get(self.position)
                .copied()
                .is_some_and(is_key_char)
        {
            return true;
        }
        self.position = saved;
        false
    }

    fn or(&mut self) -> Result<Selector, SelectorError> {
        let mut children = vec![self.and()?];
        while self.eat("||") {
            children.push(self.and()?);
        }
        Ok(flatten(children, false))
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut children = vec![self.unary()?];
        while self.eat("&&") {
            children.push(self.unary()?);
        }
        Ok(flatten(children, true))
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        if self.eat("!") {
            if self.chars.get(self.position) == Some(&'=') {
                return Err(self.error("`!=` needs a label key before it"));
            }
            return Ok(Selector::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(inner);
        }
        if self.eat_word("all") {
            if !(self.eat("(") && self.eat(")")) {
                return Err(self.error("expected `()` after all"));
            }
            return Ok(Selector::All);
        }
        if self.eat_word("has") {
            if !self.eat("(") {
                return Err(self.error("expected `(` after has"));
            }
            let key = self.key()?;
            if !self.eat(")") {
                return Err(self.error("expected `)` closing has("));
            }
            return Ok(Selector::Has(key));
        }
        let key = self.key()?;
        if self.eat("==") {
            return Ok(Selector::Equals(key, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::NotEquals(key, self.string()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(key, self.set()?));
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.error("expected `in` after `not`"));
            }
            return Ok(Selector::NotIn(key, self.set()?));
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(self.error("expected `with` after `starts`"));
            }
            return Ok(Selector::StartsWith(key, self.string()?));
        }
        if self.eat_word("ends") {
            if !self.eat_word("with") {
                return Err(self.error("expected `with` after `ends`"));
            }
            return Ok(Selector::EndsWith(key, self.string()?));
        }
        if self.eat_word("contains") {
            return Ok(Selector::Contains(key, self.string()?));
        }
        self.skip_space();
        Err(self.error(format!("expected an operator after `{key}`: ==, !=, in, not in, starts with, ends with or contains")))
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        self.skip_space();
        let start = self.position;
        while self
            .chars
            .get(self.position)
            .copied()
            .is_some_and(is_key_char)
        {
            self.position += 1;
        }
        if start == self.position {
            return Err(self.error("expected a label key, all(), has(), `!` or `(`"));
        }
        Ok(self.chars[start..self.position].iter().collect())
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        self.skip_space();
        let Some(&quote @ ('\'' | '"')) = self.chars.get(self.position) else {
            return Err(self.error("expected a quoted value like 'web'"));
        };
        let start = self.position + 1;
        let Some(length) = self.chars[start..].iter().position(|&c| c == quote) else {
            return Err(self.error("unterminated string"));
        };
        self.position = start + length + 1;
        Ok(self.chars[start..start + length].iter().collect())
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("expected `{` starting a set like {'a', 'b'}"));
        }
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.string()?);
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected `,` or `}` in the set"));
            }
        }
    }
}

fn flatten(children: Vec<Selector>, conjunction: bool) -> Selector {
    let mut flat = Vec::new();
    for child in children {
        match (child, conjunction) {
            (Selector::And(inner), true) | (Selector::Or(inner), false) => flat.extend(inner),
            (other, _) => flat.push(other),
        }
    }
    if flat.len() == 1 {
        return flat.pop().expect("one child");
    }
    if conjunction {
        Selector::And(flat)
    } else {
        Selector::Or(flat)
    }
}

fn quoted(value: &str) -> String {
    if value.contains('\'') {
        format!("\"{value}\"")
    } else {
        format!("'{value}'")
    }
}

fn set(values: &[String]) -> String {
    values
        .iter()
        .map(|value| quoted(value))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("all()"),
            Selector::Has(key) => write!(f, "has({key})"),
            Selector::Equals(key, value) => write!(f, "{key} == {}", quoted(value)),
            Selector::NotEquals(key, value) => write!(f, "{key} != {}", quoted(value)),
            Selector::In(key, values) => write!(f, "{key} in {{{}}}", set(values)),
            Selector::NotIn(key, values) => write!(f, "{key} not in {{{}}}", set(values)),
            Selector::StartsWith(key, value) => write!(f, "{key} starts with {}", quoted(value)),
            Selector::EndsWith(key, value) => write!(f, "{key} ends with {}", quoted(value)),
            Selector::Contains(key, value) => write!(f, "{key} contains {}", quoted(value)),
            Selector::Not(inner) => match **inner {
                Selector::And(_) | Selector::Or(_) => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            Selector::And(children) => {
                let parts: Vec<String> = children
                    .iter()
                    .map(|child| {
                        if matches!(child, Selector::Or(_)) {
                            format!("({child})")
                        } else {
                            child.to_string()
                        }
                    })
                    .collect();
                f.write_str(&parts.join(" && "))
            }
            Selector::Or(children) => f.write_str(
                &children
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" || "),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_matches_as_calico_documents() {
        let web = labels(&[
            ("app", "web"),
            ("tier", "frontend"),
            ("projectcalico.org/namespace", "shop"),
        ]);
        for (text, expected) in [
            ("", true),
            ("all()", true),
            ("app == 'web'", true),
            ("app == \"web\"", true),
            ("app != 'web'", false),
            ("missing != 'x'", true),
            ("tier in {'frontend', 'api'}", true),
            ("tier not in {'frontend'}", false),
            ("missing not in {'x'}", true),
            ("has(app) && !has(debug)", true),
            (
                "app starts with 'we' && app ends with 'eb' && tier contains 'ront'",
                true,
            ),
            ("!(app == 'web' || tier == 'x')", false),
            (
                "(app == 'db' || tier == 'frontend') && projectcalico.org/namespace == 'shop'",
                true,
            ),
            ("tier in {}", false),
        ] {
            let selector = Selector::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(selector.matches(&web), expected, "{text}");
        }
    }

    #[test]
    fn errors_name_the_column() {
        for (text, column, needle) in [
            ("app = 'web'", 5, "expected an operator after `app`"),
            ("app == web", 8, "expected a quoted value"),
            ("app == 'web", 8, "unterminated string"),
            ("tier in {'a' 'b'}", 14, "expected `,` or `}`"),
            ("has(app", 8, "expected `)` closing has("),
            ("app == 'a' &&", 14, "expected a label key"),
            ("(app == 'a'", 12, "expected `)`"),
            ("app == 'a' b", 12, "expected `&&`, `||`"),
        ] {
            let error = Selector::parse(text).expect_err(text);
            assert!(error.message.contains(needle), "{text}: {error}");
            assert_eq!(error.column, column, "{text}: {error}");
        }
    }

    fn leaf() -> impl Strategy<Value = Selector> {
        let key = "[a-z][a-z0-9./-]{0,6}";
        let value = "[a-zA-Z0-9 _.-]{0,6}";
        prop_oneof![
            Just(Selector::All),
            key.prop_map(Selector::Has),
            (key, value).prop_map(|(k, v)| Selector::Equals(k, v)),
            (key, value).prop_map(|(k, v)| Selector::NotEquals(k, v)),
            (key, proptest::collection::vec(value, 0..3)).prop_map(|(k, v)| Selector::In(k, v)),
            (key, proptest::collection::vec(value, 0..3)).prop_map(|(k, v)| Selector::NotIn(k, v)),
            (key, value).prop_map(|(k, v)| Selector::StartsWith(k, v)),
            (key, value).prop_map(|(k, v)| Selector::EndsWith(k, v)),
            (key, value).prop_map(|(k, v)| Selector::Contains(k, v)),
        ]
    }

    fn selector() -> impl Strategy<Value = Selector> {
        leaf().prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|c| flatten(c, true)),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|c| flatten(c, false)),
                inner.prop_map(|c| Selector::Not(Box::new(c))),
            ]
        })
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_selector(selector in selector()) {
            let text = selector.to_string();
            prop_assert_eq!(Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?, selector);
        }

        #[test]
        fn the_parser_never_panics(text in "[ -~]{0,30}") {
            let _ = Selector::parse(&text);
        }
    }
}
