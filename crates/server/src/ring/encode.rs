//! The canonical byte encoding of a flow key. Each held key keeps its encoding in one
//! allocation, so finding an incoming key costs one hash of a reused scratch buffer and one
//! comparison of contiguous bytes, instead of a pointer chase per string.

use caracal_flow::{FlowKey, PolicyHit};

fn text(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

fn hit(out: &mut Vec<u8>, hit: &PolicyHit) {
    out.push(hit.kind as u8);
    out.push(hit.action as u8);
    out.extend_from_slice(&hit.policy_index.to_le_bytes());
    out.extend_from_slice(&hit.rule_index.to_le_bytes());
    text(out, &hit.namespace);
    text(out, &hit.name);
    text(out, &hit.tier);
    match &hit.trigger {
        Some(trigger) => {
            out.push(1);
            self::hit(out, trigger);
        }
        None => out.push(0),
    }
}

/// Writes the encoding of `key` into `out` (cleared first). Equal keys, equal bytes.
pub fn encode_key(key: &FlowKey, out: &mut Vec<u8>) {
    out.clear();
    out.push(key.source.kind as u8);
    out.push(key.dest.kind as u8);
    out.push(key.reporter as u8);
    out.push(key.action as u8);
    out.extend_from_slice(&key.dest_port.to_le_bytes());
    out.extend_from_slice(&key.service.port.to_le_bytes());
    for value in [
        &key.source.namespace,
        &key.source.name,
        &key.dest.namespace,
        &key.dest.name,
        &key.service.name,
        &key.service.namespace,
        &key.service.port_name,
        &key.proto,
    ] {
        text(out, value);
    }
    for hits in [&key.policies.enforced, &key.policies.pending] {
        out.extend_from_slice(&(hits.len() as u32).to_le_bytes());
        for policy_hit in hits {
            hit(out, policy_hit);
        }
    }
}

#[cfg(test)]
mod tests {
    use caracal_flow::*;
    use proptest::prelude::*;

    use super::encode_key;

    fn key(names: [String; 4], port: u16, hits: Vec<(String, String)>) -> FlowKey {
        let [a, b, c, d] = names;
        FlowKey {
            source: Endpoint {
                kind: EndpointType::Workload,
                namespace: a,
                name: b,
            },
            dest: Endpoint {
                kind: EndpointType::Network,
                namespace: c,
                name: d,
            },
            dest_port: port,
            service: ServiceRef::default(),
            proto: "tcp".into(),
            reporter: Reporter::Src,
            action: Action::Allow,
            policies: PolicyTrace {
                enforced: hits
                    .into_iter()
                    .enumerate()
                    .map(|(index, (tier, name))| PolicyHit {
                        kind: PolicyKind::GlobalNetworkPolicy,
                        namespace: String::new(),
                        name,
                        tier,
                        action: HitAction::Allow,
                        policy_index: index as i64,
                        rule_index: 0,
                        trigger: None,
                    })
                    .collect(),
                pending: vec![],
            },
        }
    }

    proptest! {
        /// Distinct keys never share an encoding (lengths prefix every string).
        #[test]
        fn encodings_are_equal_exactly_when_keys_are(
            a in proptest::array::uniform4("[ab]{0,2}"), b in proptest::array::uniform4("[ab]{0,2}"),
            port_a in 0u16..3, port_b in 0u16..3,
            hits_a in proptest::collection::vec(("[ab]{0,2}", "[ab]{0,2}"), 0..3),
            hits_b in proptest::collection::vec(("[ab]{0,2}", "[ab]{0,2}"), 0..3),
        ) {
            let (left, right) = (key(a, port_a, hits_a), key(b, port_b, hits_b));
            let (mut left_bytes, mut right_bytes) = (Vec::new(), Vec::new());
            encode_key(&left, &mut left_bytes);
            encode_key(&right, &mut right_bytes);
            prop_assert_eq!(left == right, left_bytes == right_bytes);
        }
    }
}
