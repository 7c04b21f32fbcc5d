//! Reading the compact form back: a key as `FlowFields` for filters that need only the key,
//! and whole flows materialized over chosen buckets.

use std::net::IpAddr;

use caracal_flow::filter::{FlowFields, NumberField, Side, TextField};
use caracal_flow::{Counters, Endpoint, Flow, FlowKey, PolicyTrace, ServiceRef};

use super::intern::Interner;
use super::{BucketRing, CompactKey, SlotBits};

/// A held key seen through the filter interface; non-key fields read as empty.
pub(super) struct KeyView<'a> {
    pub strings: &'a Interner<Box<str>>,
    pub traces: &'a Interner<PolicyTrace>,
    pub key: &'a CompactKey,
}

impl FlowFields for KeyView<'_> {
    fn text(&self, field: TextField) -> &str {
        let text = |id: u32| &**self.strings.get(id);
        let key = self.key;
        match field {
            TextField::SourceType => key.source_type.as_str(),
            TextField::SourceNamespace => text(key.source_namespace),
            TextField::SourceName => text(key.source_name),
            TextField::DestType => key.dest_type.as_str(),
            TextField::DestNamespace => text(key.dest_namespace),
            TextField::DestName => text(key.dest_name),
            TextField::DestServiceName => text(key.service_name),
            TextField::DestServiceNamespace => text(key.service_namespace),
            TextField::DestServicePortName => text(key.service_port_name),
            TextField::Proto => text(key.proto),
            TextField::Reporter => key.reporter.as_str(),
            TextField::Action => key.action.as_str(),
        }
    }

    fn number(&self, field: NumberField) -> u64 {
        match field {
            NumberField::DestPort => u64::from(self.key.dest_port),
            NumberField::DestServicePort => u64::from(self.key.service_port),
            _ => 0,
        }
    }

    fn labels(&self, _side: Side) -> &[String] {
        &[]
    }

    fn ips(&self, _side: Side) -> &[IpAddr] {
        &[]
    }

    fn domains(&self) -> &[String] {
        &[]
    }

    fn trace(&self) -> &PolicyTrace {
        self.traces.get(self.key.trace)
    }
}

impl BucketRing {
    pub(super) fn key_view(&self, key_id: u32) -> KeyView<'_> {
        let entry = self.keys[key_id as usize].as_ref().expect("live key");
        KeyView {
            strings: &self.strings,
            traces: &self.traces,
            key: &entry.key,
        }
    }

    pub(super) fn resolve_key(&self, key: &CompactKey) -> FlowKey {
        let text = |id: u32| String::from(&**self.strings.get(id));
        FlowKey {
            source: Endpoint {
                kind: key.source_type,
                namespace: text(key.source_namespace),
                name: text(key.source_name),
            },
            dest: Endpoint {
                kind: key.dest_type,
                namespace: text(key.dest_namespace),
                name: text(key.dest_name),
            },
            dest_port: key.dest_port,
            service: ServiceRef {
                name: text(key.service_name),
                namespace: text(key.service_namespace),
                port_name: text(key.service_port_name),
                port: key.service_port,
            },
            proto: text(key.proto),
            reporter: key.reporter,
            action: key.action,
            policies: self.traces.get(key.trace).clone(),
        }
    }

    /// The window of `key_id` in ring slot `slot`, if any.
    pub(super) fn window_in(&self, key_id: u32, slot: usize) -> Option<&super::Window> {
        let bucket = &self.buckets[slot];
        bucket
            .index
            .find(super::hash_index(key_id), |&index| {
                bucket.windows[index as usize].key == key_id
            })
            .map(|&index| &bucket.windows[index as usize])
    }

    /// One flow for `key_id` over the slots in `slots` (time order) that hold it, with
    /// `start`/`end` the bounds of the buckets covered.
    pub(super) fn materialize(
        &self,
        key_id: u32,
        slots: &[(i64, usize)],
        mask: &SlotBits,
    ) -> Option<Flow> {
        let entry = self.keys[key_id as usize].as_ref()?;
        let mut flow: Option<Flow> = None;
        // Interned ids already merged: a window holding the same sets adds nothing but counters.
        let mut seen = [u32::MAX; 5];
        for &(bucket, slot) in slots {
            if mask[slot / 64] & entry.slots[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let Some(window) = self.window_in(key_id, slot) else {
                continue;
            };
            let ids = [
                window.source_labels,
                window.dest_labels,
                window.source_ips,
                window.dest_ips,
                window.domains,
            ];
            let Some(flow) = &mut flow else {
                seen = ids;
                flow = Some(Flow {
                    key: self.resolve_key(&entry.key),
                    start_time: bucket,
                    end_time: bucket + caracal_flow::time::BUCKET_SECONDS,
                    source_labels: self.label_sets.get(window.source_labels).clone(),
                    dest_labels: self.label_sets.get(window.dest_labels).clone(),
                    counters: window.counters,
                    source_ips: self.ip_sets.get(window.source_ips).clone(),
                    dest_ips: self.ip_sets.get(window.dest_ips).clone(),
                    dest_domains: self.domain_sets.get(window.domains).clone(),
                });
                continue;
            };
            flow.start_time = flow.start_time.min(bucket);
            flow.end_time = flow
                .end_time
                .max(bucket + caracal_flow::time::BUCKET_SECONDS);
            flow.counters.add(&window.counters);
            if ids[0] != seen[0] {
                flow.source_labels = flow
                    .source_labels
                    .intersect(self.label_sets.get(window.source_labels));
            }
            if ids[1] != seen[1] {
                flow.dest_labels = flow
                    .dest_labels
                    .intersect(self.label_sets.get(window.dest_labels));
            }
            if ids[2] != seen[2] {
                flow.source_ips
                    .union_with(self.ip_sets.get(window.source_ips));
            }
            if ids[3] != seen[3] {
                flow.dest_ips.union_with(self.ip_sets.get(window.dest_ips));
            }
            if ids[4] != seen[4] {
                flow.dest_domains
                    .union_with(self.domain_sets.get(window.domains));
            }
            seen = ids;
        }
        flow
    }

    /// Flows of many keys at once over the masked slots: one sequential pass over each bucket's
    /// windows instead of a hashed lookup per (key, bucket). `wanted` holds the key ids.
    pub(super) fn materialize_many(
        &self,
        wanted: &[u32],
        slots: &[(i64, usize)],
        mask: &SlotBits,
    ) -> Vec<Option<Flow>> {
        const NONE: u32 = u32::MAX;
        let mut position = vec![NONE; self.keys.len()];
        for (index, &key_id) in wanted.iter().enumerate() {
            position[key_id as usize] = index as u32;
        }
        let mut flows: Vec<Option<Flow>> = vec![None; wanted.len()];
        let mut seen = vec![[u32::MAX; 5]; wanted.len()];
        for &(bucket, slot) in slots {
            if mask[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            for window in &self.buckets[slot].windows {
                let index = position[window.key as usize];
                if index == NONE {
                    continue;
                }
                let index = index as usize;
                let ids = [
                    window.source_labels,
                    window.dest_labels,
                    window.source_ips,
                    window.dest_ips,
                    window.domains,
                ];
                let end = bucket + caracal_flow::time::BUCKET_SECONDS;
                match &mut flows[index] {
                    None => {
                        let entry = self.keys[window.key as usize]
                            .as_ref()
                            .expect("window of a live key");
                        flows[index] = Some(Flow {
                            key: self.resolve_key(&entry.key),
                            start_time: bucket,
                            end_time: end,
                            source_labels: self.label_sets.get(ids[0]).clone(),
                            dest_labels: self.label_sets.get(ids[1]).clone(),
                            counters: window.counters,
                            source_ips: self.ip_sets.get(ids[2]).clone(),
                            dest_ips: self.ip_sets.get(ids[3]).clone(),
                            dest_domains: self.domain_sets.get(ids[4]).clone(),
                        });
                    }
                    Some(flow) => {
                        flow.start_time = flow.start_time.min(bucket);
                        flow.end_time = flow.end_time.max(end);
                        flow.counters.add(&window.counters);
                        let previous = seen[index];
                        if ids[0] != previous[0] {
                            flow.source_labels =
                                flow.source_labels.intersect(self.label_sets.get(ids[0]));
                        }
                        if ids[1] != previous[1] {
                            flow.dest_labels =
                                flow.dest_labels.intersect(self.label_sets.get(ids[1]));
                        }
                        if ids[2] != previous[2] {
                            flow.source_ips.union_with(self.ip_sets.get(ids[2]));
                        }
                        if ids[3] != previous[3] {
                            flow.dest_ips.union_with(self.ip_sets.get(ids[3]));
                        }
                        if ids[4] != previous[4] {
                            flow.dest_domains.union_with(self.domain_sets.get(ids[4]));
                        }
                    }
                }
                seen[index] = ids;
            }
        }
        flows
    }

    /// Summed counters of `key_id` over the masked slots, without materializing.
    pub(super) fn counters_over(
        &self,
        key_id: u32,
        slots: &[(i64, usize)],
        mask: &SlotBits,
    ) -> Counters {
        let mut total = Counters::default();
        let Some(entry) = self.keys[key_id as usize].as_ref() else {
            return total;
        };
        for &(_, slot) in slots {
            if mask[slot / 64] & entry.slots[slot / 64] & (1 << (slot % 64)) != 0 {
                if let Some(window) = self.window_in(key_id, slot) {
                    total.add(&window.counters);
                }
            }
        }
        total
    }
}
