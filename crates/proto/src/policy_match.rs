//! `goldmane.PolicyMatch`, decoded by hand: Calico v3.30/3.31 clients send `tier`, `namespace`
//! and `name` as plain strings on the field numbers where v3.32 sends `StringMatch` messages.
//! Generated code cannot accept both, so a length-delimited field is read as a `StringMatch`
//! only when its bytes are a strict `StringMatch` encoding (fields 1 and 2 only), else as an
//! exact-match plain string.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::goldmane::{MatchType, StringMatch};

/// Matches policy hits: every set field must match the same hit.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct PolicyMatch {
    /// `goldmane.PolicyKind`; 0 is unset.
    pub kind: i32,
    /// The tier to match.
    pub tier: Option<StringMatch>,
    /// The namespace to match.
    pub namespace: Option<StringMatch>,
    /// The name to match.
    pub name: Option<StringMatch>,
    /// `goldmane.Action`; 0 is unset.
    pub action: i32,
}

/// Reads `bytes` as a strict `StringMatch`: only field 1 (string) and field 2 (varint).
fn strict_string_match(mut bytes: &[u8]) -> Option<StringMatch> {
    let mut result = StringMatch::default();
    while bytes.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(&mut bytes).ok()?;
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                let length = usize::try_from(encoding::decode_varint(&mut bytes).ok()?).ok()?;
                if length > bytes.len() {
                    return None;
                }
                result.value = String::from_utf8(bytes[..length].to_vec()).ok()?;
                bytes.advance(length);
            }
            (2, WireType::Varint) => {
                let value = i32::try_from(encoding::decode_varint(&mut bytes).ok()?).ok()?;
                MatchType::try_from(value).ok()?;
                result.r#type = value;
            }
            _ => return None,
        }
    }
    Some(result)
}

fn string_or_match(raw: Vec<u8>) -> Result<StringMatch, DecodeError> {
    if let Some(parsed) = strict_string_match(&raw) {
        return Ok(parsed);
    }
    // prost offers no other way to build a decode error from outside its own decoders.
    #[allow(deprecated)]
    let value = String::from_utf8(raw).map_err(|_| {
        DecodeError::new("PolicyMatch string field is neither a StringMatch nor UTF-8")
    })?;
    Ok(StringMatch {
        value,
        r#type: MatchType::Exact as i32,
    })
}

impl prost::Message for PolicyMatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.kind != 0 {
            encoding::int32::encode(1, &self.kind, buf);
        }
        for (tag, field) in [(2, &self.tier), (3, &self.namespace), (4, &self.name)] {
            if let Some(value) = field {
                encoding::message::encode(tag, value, buf);
            }
        }
        if self.action != 0 {
            encoding::int32::encode(5, &self.action, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::int32::merge(wire_type, &mut self.kind, buf, ctx),
            2..=4 => {
                let mut raw = Vec::new();
                encoding::bytes::merge(wire_type, &mut raw, buf, ctx)?;
                let parsed = string_or_match(raw)?;
                match tag {
                    2 => self.tier = Some(parsed),
                    3 => self.namespace = Some(parsed),
                    _ => self.name = Some(parsed),
                }
                Ok(())
            }
            5 => encoding::int32::merge(wire_type, &mut self.action, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let mut length = 0;
        if self.kind != 0 {
            length += encoding::int32::encoded_len(1, &self.kind);
        }
        for (tag, field) in [(2, &self.tier), (3, &self.namespace), (4, &self.name)] {
            if let Some(value) = field {
                length += encoding::message::encoded_len(tag, value);
            }
        }
        if self.action != 0 {
            length += encoding::int32::encoded_len(5, &self.action);
        }
        length
    }

    fn clear(&mut self) {
        *self = PolicyMatch::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The v3.30 encoding: field 4 (`name`) as the plain string "allow-web".
    const OLD_NAME_ONLY: &[u8] = b"\x22\x09allow-web";

    #[test]
    fn old_plain_strings_are_exact_matches() {
        let decoded = PolicyMatch::decode(OLD_NAME_ONLY).unwrap();
        assert_eq!(
            decoded.name,
            Some(StringMatch {
                value: "allow-web".into(),
                r#type: 0
            })
        );
    }

    #[test]
    fn new_string_matches_round_trip() {
        let original = PolicyMatch {
            kind: 2,
            tier: Some(StringMatch {
                value: "security".into(),
                r#type: 1,
            }),
            namespace: None,
            name: Some(StringMatch {
                value: "deny".into(),
                r#type: 0,
            }),
            action: 2,
        };
        let bytes = original.encode_to_vec();
        assert_eq!(PolicyMatch::decode(bytes.as_slice()).unwrap(), original);
    }

    #[test]
    fn printable_names_that_look_like_tags_stay_strings() {
        // "abc" starts with 0x61: field 12, fixed64 — skipped by a lenient decoder, but not a
        // StringMatch, so it must stay the plain name.
        for name in ["abc", "\n", "default.allow", "x"] {
            let mut bytes = vec![0x22, name.len() as u8];
            bytes.extend_from_slice(name.as_bytes());
            let decoded = PolicyMatch::decode(bytes.as_slice()).unwrap();
            assert_eq!(decoded.name.unwrap().value, name);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_plain_utf8_name_decodes_to_itself_or_a_valid_match(name in "[ -~]{0,30}") {
            let mut bytes = vec![0x22, name.len() as u8];
            bytes.extend_from_slice(name.as_bytes());
            let decoded = PolicyMatch::decode(bytes.as_slice()).unwrap();
            let matched = decoded.name.unwrap();
            if strict_string_match(name.as_bytes()).is_none() {
                proptest::prop_assert_eq!(matched.value, name);
            }
        }
    }
}
