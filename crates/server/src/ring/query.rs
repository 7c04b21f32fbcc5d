//! Queries over the hot buckets: list (filter, sort, page, intervals), filter hints, the flows
//! of one bucket for streams, policy statistics and the flow graph. A filter that needs only
//! the key is decided once per key; other filters run on the materialized flow.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use caracal_flow::filter::{Comparison, Expr, FlowFields};
use caracal_flow::time::{bucket_start, BUCKET_SECONDS};
use caracal_flow::{
    Action, Counters, EndpointType, Flow, HitAction, PolicyHit, PolicyKind, Reporter,
};
use serde::Serialize;

use super::{BucketRing, SlotBits, MAX_SLOTS};

/// Orders of `List` (Goldmane `SortBy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Newest start first.
    #[default]
    Time,
    /// Destination name ascending.
    DestName,
    /// Destination namespace ascending.
    DestNamespace,
    /// Destination type ascending.
    DestType,
    /// Source name ascending.
    SourceName,
    /// Source namespace ascending.
    SourceNamespace,
    /// Source type ascending.
    SourceType,
}

/// A resolved `List` request: absolute times, parsed filter.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Inclusive start, Unix seconds.
    pub start: i64,
    /// Exclusive end, Unix seconds.
    pub end: i64,
    /// Which flows.
    pub filter: Expr,
    /// Order of results.
    pub sort: SortOrder,
    /// 0-based page.
    pub page: usize,
    /// Results per page; 0 means all (capped).
    pub page_size: usize,
    /// Seconds per result interval; 0 means one result per key over the whole range.
    pub interval: i64,
}

/// A page of results.
#[derive(Clone, Debug)]
pub struct ListResult {
    /// Results before paging.
    pub total_results: usize,
    /// Pages at the page size used.
    pub total_pages: usize,
    /// The page size used.
    pub page_size: usize,
    /// Whether the page size was lowered to the server's cap.
    pub capped: bool,
    /// (stable id, flow) in order.
    pub flows: Vec<(i64, Flow)>,
}

/// Fields with filter hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintField {
    /// Source names.
    SourceName,
    /// Destination names.
    DestName,
    /// Source namespaces.
    SourceNamespace,
    /// Destination namespaces.
    DestNamespace,
    /// Policy tiers.
    PolicyTier,
    /// Policy names.
    PolicyName,
    /// Policy kinds.
    PolicyKind,
    /// Policy namespaces.
    PolicyNamespace,
}

/// One page of filter hints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintPage {
    /// Distinct values before paging.
    pub total: usize,
    /// Pages at the page size used (1 when all values fit in one).
    pub pages: usize,
    /// The values of this page, sorted.
    pub values: Vec<String>,
}

/// What a statistic counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatisticType {
    /// Packets.
    Packets,
    /// Bytes.
    Bytes,
    /// Live connections.
    LiveConnections,
}

/// How statistics are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatisticsGroup {
    /// Per policy.
    Policy,
    /// Per policy rule.
    PolicyRule,
}

/// A resolved statistics request.
#[derive(Clone, Debug)]
pub struct StatisticsQuery {
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
    /// What to count.
    pub kind: StatisticType,
    /// Grouping.
    pub group: StatisticsGroup,
    /// Hits must satisfy all of these (empty: any hit).
    pub policy: Vec<Comparison>,
    /// One value per bucket instead of a sum.
    pub time_series: bool,
}

/// Counts for one policy (or rule) and direction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatisticsRow {
    /// The policy (rule index -1... kept only when grouping by rule).
    pub policy: PolicyHit,
    /// `ingress` (reported at the destination) or `egress` (at the source).
    pub direction: &'static str,
    /// Allowed, into the endpoint.
    pub allowed_in: Vec<i64>,
    /// Allowed, out of the endpoint.
    pub allowed_out: Vec<i64>,
    /// Denied, in.
    pub denied_in: Vec<i64>,
    /// Denied, out.
    pub denied_out: Vec<i64>,
    /// Passed, in.
    pub passed_in: Vec<i64>,
    /// Passed, out.
    pub passed_out: Vec<i64>,
    /// Bucket start times.
    pub x: Vec<i64>,
}

/// How graph nodes are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphGroup {
    /// One node per namespace.
    Namespace,
    /// One node per workload (pod prefix).
    #[default]
    Workload,
    /// One node per pod (or the finest name reported).
    Pod,
}

/// A node of the flow graph.
#[derive(Clone, Debug, Serialize)]
pub struct GraphNode {
    /// Stable id (`ns:shop`, `wl:shop/frontend-*`, `pod:shop/frontend-x`, `net:pub`, ...).
    pub id: String,
    /// `namespace`, `workload`, `pod`, `host`, `networkset` or `network`.
    pub kind: &'static str,
    /// Namespace (`-` when none).
    pub namespace: String,
    /// Display name.
    pub name: String,
    /// The namespace node id this node sits in, for workloads and pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Bytes sent and received.
    pub bytes: u64,
}

/// An edge of the flow graph: (source, destination, port, protocol, action).
#[derive(Clone, Debug, Serialize)]
pub struct GraphEdge {
    /// Source node id.
    pub source: String,
    /// Destination node id.
    pub target: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub proto: String,
    /// Verdict.
    pub action: Action,
    /// Bytes both ways.
    pub bytes: u64,
    /// Packets both ways.
    pub packets: u64,
    /// Connections started.
    pub connections: u64,
    /// Policies seen (text form of each enforced hit).
    pub policies: Vec<String>,
}

/// Nodes and edges.
#[derive(Clone, Debug, Serialize)]
pub struct GraphResult {
    /// Nodes, sorted by id.
    pub nodes: Vec<GraphNode>,
    /// Edges, largest first.
    pub edges: Vec<GraphEdge>,
    /// Whether edges were cut to the limit.
    pub truncated: bool,
}

/// A set of interned ids as a growable bitset.
#[derive(Default)]
struct IdSet(Vec<u64>);

impl IdSet {
    fn insert(&mut self, id: u32) {
        let word = id as usize / 64;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (id % 64);
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(word, bits)| {
            (0..64)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| (word * 64 + bit) as u32)
        })
    }
}

/// The held buckets of a time range: (bucket start, slot) in time order and their mask.
/// Slots follow ring order from the first one, wrapping, so time order is a rotation.
struct Range {
    slots: Vec<(i64, usize)>,
    mask: SlotBits,
    /// Slots in the ring.
    ring_len: usize,
}

/// The lowest set position in `from..to`.
fn first_set(bits: &SlotBits, from: usize, to: usize) -> Option<usize> {
    let mut word = from / 64;
    while word * 64 < to {
        let mut value = bits[word];
        if word == from / 64 {
            value &= u64::MAX << (from % 64);
        }
        if value != 0 {
            let position = word * 64 + value.trailing_zeros() as usize;
            return (position < to).then_some(position);
        }
        word += 1;
    }
    None
}

/// The highest set position in `from..to`.
fn last_set(bits: &SlotBits, from: usize, to: usize) -> Option<usize> {
    if from >= to {
        return None;
    }
    let mut word = (to - 1) / 64;
    loop {
        let mut value = bits[word];
        if word == (to - 1) / 64 && !to.is_multiple_of(64) {
            value &= u64::MAX >> (64 - to % 64);
        }
        if value != 0 {
            let position = word * 64 + 63 - value.leading_zeros() as usize;
            return (position >= from).then_some(position);
        }
        if word == 0 || word * 64 <= from {
            return None;
        }
        word -= 1;
    }
}

type EdgeKey = (String, String, u16, String, Action);
type EdgeTotals = ([Counters; 2], BTreeSet<String>);

impl Range {
    fn contains(&self, bits: &SlotBits) -> bool {
        (0..MAX_SLOTS / 64).any(|word| bits[word] & self.mask[word] != 0)
    }

    /// Earliest and latest held bucket of a key within the range.
    fn bounds(&self, bits: &SlotBits) -> Option<(i64, i64)> {
        let &(first_bucket, origin) = self.slots.first()?;
        let mut present = [0u64; MAX_SLOTS / 64];
        for (word, value) in present.iter_mut().enumerate() {
            *value = bits[word] & self.mask[word];
        }
        let earliest = first_set(&present, origin, self.ring_len)
            .or_else(|| first_set(&present, 0, origin))?;
        let latest =
            last_set(&present, 0, origin).or_else(|| last_set(&present, origin, self.ring_len))?;
        let time_of = |position: usize| {
            first_bucket
                + ((position + self.ring_len - origin) % self.ring_len) as i64 * BUCKET_SECONDS
        };
        Some((time_of(earliest), time_of(latest) + BUCKET_SECONDS))
    }
}

struct Candidate {
    key_id: u32,
    interval: usize,
    start: i64,
    flow: Option<Flow>,
}

impl BucketRing {
    fn range(&self, start: i64, end: i64) -> Range {
        let mut slots = Vec::new();
        let mut mask = [0u64; MAX_SLOTS / 64];
        let first = bucket_start(start).max(self.oldest_bucket());
        let last = self.current + BUCKET_SECONDS;
        let mut bucket = first;
        while bucket <= last && bucket < end {
            let slot = self.slot_of(bucket);
            if self.buckets[slot].start == Some(bucket) {
                slots.push((bucket, slot));
                mask[slot / 64] |= 1 << (slot % 64);
            }
            bucket += BUCKET_SECONDS;
        }
        Range {
            slots,
            mask,
            ring_len: self.buckets.len(),
        }
    }

    fn ranges(&self, start: i64, end: i64, interval: i64) -> Vec<Range> {
        if interval <= 0 {
            return vec![self.range(start, end)];
        }
        let interval = (interval + BUCKET_SECONDS - 1) / BUCKET_SECONDS * BUCKET_SECONDS;
        let mut ranges = Vec::new();
        let mut from = start.div_euclid(interval) * interval;
        while from < end {
            let range = self.range(from.max(start), (from + interval).min(end));
            if !range.slots.is_empty() {
                ranges.push(range);
            }
            from += interval;
        }
        ranges
    }

    /// Calls `visit` with each live key id that has a window in `range` and passes `filter`
    /// when `filter` is key-only (other filters are left to the caller).
    fn keys_in<'a>(&'a self, range: &'a Range, filter: &'a Expr) -> impl Iterator<Item = u32> + 'a {
        let key_only = filter.is_key_only();
        self.keys.iter().enumerate().filter_map(move |(id, entry)| {
            let entry = entry.as_ref()?;
            if !range.contains(&entry.slots) {
                return None;
            }
            let id = id as u32;
            if key_only && !filter.matches(&self.key_view(id)) {
                return None;
            }
            Some(id)
        })
    }

    /// Flows matching a query, sorted and paged.
    pub fn list(&self, query: &ListQuery) -> ListResult {
        let ranges = self.ranges(query.start, query.end, query.interval);
        let key_only = query.filter.is_key_only();
        let mut candidates = Vec::new();
        for (interval, range) in ranges.iter().enumerate() {
            for key_id in self.keys_in(range, &query.filter) {
                let entry = self.keys[key_id as usize].as_ref().expect("live key");
                let Some((start, _)) = range.bounds(&entry.slots) else {
                    continue;
                };
                let flow = if key_only {
                    None
                } else {
                    match self.materialize(key_id, &range.slots, &range.mask) {
                        Some(flow) if query.filter.matches(&flow) => Some(flow),
                        _ => continue,
                    }
                };
                candidates.push(Candidate {
                    key_id,
                    interval,
                    start,
                    flow,
                });
            }
        }
        let total_results = candidates.len();
        let requested = if query.page_size == 0 {
            usize::MAX
        } else {
            query.page_size
        };
        let page_size = requested.min(self.config.max_page_size);
        let capped = page_size < requested && (query.page_size != 0 || total_results > page_size);
        let total_pages = total_results.div_ceil(page_size.max(1));
        let skip = query.page.saturating_mul(page_size);
        let needed = skip.saturating_add(page_size).min(total_results);
        let order = |a: &Candidate, b: &Candidate| self.compare(query.sort, a, b);
        if needed > 0 && needed < candidates.len() {
            candidates.select_nth_unstable_by(needed - 1, order);
            candidates.truncate(needed);
        }
        candidates.sort_unstable_by(order);
        let page: Vec<Candidate> = candidates.into_iter().skip(skip).collect();
        let flows = self.materialize_page(page, &ranges);
        ListResult {
            total_results,
            total_pages,
            page_size,
            capped,
            flows,
        }
    }

    /// Flows of a page, in order: per-key lookups for a small page, one sequential pass per
    /// interval for a large one.
    fn materialize_page(&self, page: Vec<Candidate>, ranges: &[Range]) -> Vec<(i64, Flow)> {
        const SEQUENTIAL_FROM: usize = 256;
        let mut flows: Vec<Option<Flow>> = page
            .iter()
            .map(|candidate| candidate.flow.clone())
            .collect();
        if page.len() >= SEQUENTIAL_FROM {
            for (interval, range) in ranges.iter().enumerate() {
                let members: Vec<usize> = (0..page.len())
                    .filter(|&i| page[i].interval == interval && flows[i].is_none())
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let wanted: Vec<u32> = members.iter().map(|&i| page[i].key_id).collect();
                for (member, flow) in members.into_iter().zip(self.materialize_many(
                    &wanted,
                    &range.slots,
                    &range.mask,
                )) {
                    flows[member] = flow;
                }
            }
        }
        page.iter()
            .zip(flows)
            .filter_map(|(candidate, flow)| {
                let range = &ranges[candidate.interval];
                let flow =
                    flow.or_else(|| self.materialize(candidate.key_id, &range.slots, &range.mask))?;
                Some((self.flow_id(candidate.key_id), flow))
            })
            .collect()
    }

    fn compare(&self, sort: SortOrder, a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
        use caracal_flow::filter::TextField;
        let field = match sort {
            SortOrder::Time => return b.start.cmp(&a.start).then(a.key_id.cmp(&b.key_id)),
            SortOrder::DestName => TextField::DestName,
            SortOrder::DestNamespace => TextField::DestNamespace,
            SortOrder::DestType => TextField::DestType,
            SortOrder::SourceName => TextField::SourceName,
            SortOrder::SourceNamespace => TextField::SourceNamespace,
            SortOrder::SourceType => TextField::SourceType,
        };
        let left = self.key_view(a.key_id);
        let right = self.key_view(b.key_id);
        left.text(field)
            .cmp(right.text(field))
            .then(b.start.cmp(&a.start))
            .then(a.key_id.cmp(&b.key_id))
    }

    /// Distinct sorted values of a field among matching flows, and how many there are.
    pub fn hints(
        &self,
        field: HintField,
        start: i64,
        end: i64,
        filter: &Expr,
        page: usize,
        page_size: usize,
    ) -> HintPage {
        let range = self.range(start, end);
        // Dense bitsets by interned id: a hint scan over a million keys sets bits, not hashes.
        let mut symbols = IdSet::default();
        let mut traces_seen = IdSet::default();
        let mut values: BTreeSet<String> = BTreeSet::new();
        let key_only = filter.is_key_only();
        for key_id in self.keys_in(&range, filter) {
            if !key_only {
                match self.materialize(key_id, &range.slots, &range.mask) {
                    Some(flow) if filter.matches(&flow) => {}
                    _ => continue,
                }
            }
            let key = &self.keys[key_id as usize].as_ref().expect("live key").key;
            match field {
                HintField::SourceName => symbols.insert(key.source_name),
                HintField::DestName => symbols.insert(key.dest_name),
                HintField::SourceNamespace => symbols.insert(key.source_namespace),
                HintField::DestNamespace => symbols.insert(key.dest_namespace),
                _ => traces_seen.insert(key.trace),
            }
        }
        for symbol in symbols.iter() {
            values.insert(self.strings.get(symbol).to_string());
        }
        for trace in traces_seen.iter() {
            for hit in self.traces.get(trace).hits() {
                if hit.kind == PolicyKind::Profile {
                    continue;
                }
                let named = hit
                    .trigger
                    .as_deref()
                    .filter(|_| hit.kind == PolicyKind::EndOfTier)
                    .unwrap_or(hit);
                let value = match field {
                    HintField::PolicyTier => named.tier.clone(),
                    HintField::PolicyName => named.name.clone(),
                    HintField::PolicyNamespace => named.namespace.clone(),
                    HintField::PolicyKind => named.kind.long_name().to_string(),
                    _ => continue,
                };
                if !value.is_empty() {
                    values.insert(value);
                }
            }
        }
        let total = values.len();
        let page_size = if page_size == 0 {
            self.config.max_page_size
        } else {
            page_size.min(self.config.max_page_size)
        };
        let values = values
            .into_iter()
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .collect();
        HintPage {
            total,
            pages: total.div_ceil(page_size.max(1)),
            values,
        }
    }

    /// Every flow of one bucket, one per key, with stable ids (for streams).
    pub fn bucket_flows(&self, bucket: i64) -> Vec<(i64, Flow)> {
        let slot = self.slot_of(bucket);
        if self.buckets[slot].start != Some(bucket) {
            return Vec::new();
        }
        let slots = [(bucket, slot)];
        let mut mask = [0u64; MAX_SLOTS / 64];
        mask[slot / 64] |= 1 << (slot % 64);
        self.buckets[slot]
            .windows
            .iter()
            .filter_map(|window| {
                Some((
                    self.flow_id(window.key),
                    self.materialize(window.key, &slots, &mask)?,
                ))
            })
            .collect()
    }

    /// Per-policy counts split by verdict and direction.
    pub fn statistics(&self, query: &StatisticsQuery) -> Vec<StatisticsRow> {
        let range = self.range(query.start, query.end);
        let width = if query.time_series {
            range.slots.len().max(1)
        } else {
            1
        };
        let mut rows: BTreeMap<(PolicyHit, &'static str), StatisticsRow> = BTreeMap::new();
        for key_id in self.keys_in(&range, &Expr::All) {
            let key = &self.keys[key_id as usize].as_ref().expect("live key").key;
            let direction = match key.reporter {
                Reporter::Src => "egress",
                Reporter::Dst => "ingress",
            };
            let trace = self.traces.get(key.trace);
            for hit in &trace.enforced {
                if !query
                    .policy
                    .iter()
                    .all(|comparison| comparison.matches_hit(hit))
                {
                    continue;
                }
                let identity = PolicyHit {
                    policy_index: 0,
                    rule_index: if query.group == StatisticsGroup::PolicyRule {
                        hit.rule_index
                    } else {
                        0
                    },
                    action: HitAction::Allow,
                    ..hit.clone()
                };
                let row = rows
                    .entry((identity.clone(), direction))
                    .or_insert_with(|| StatisticsRow {
                        policy: identity,
                        direction,
                        allowed_in: vec![0; width],
                        allowed_out: vec![0; width],
                        denied_in: vec![0; width],
                        denied_out: vec![0; width],
                        passed_in: vec![0; width],
                        passed_out: vec![0; width],
                        x: if query.time_series {
                            range.slots.iter().map(|(bucket, _)| *bucket).collect()
                        } else {
                            vec![query.start]
                        },
                    });
                for (position, &(_, slot)) in range.slots.iter().enumerate() {
                    let Some(window) = self.window_in(key_id, slot) else {
                        continue;
                    };
                    let (inbound, outbound) = match query.kind {
                        StatisticType::Packets => {
                            (window.counters.packets_in, window.counters.packets_out)
                        }
                        StatisticType::Bytes => {
                            (window.counters.bytes_in, window.counters.bytes_out)
                        }
                        StatisticType::LiveConnections if direction == "ingress" => {
                            (window.counters.connections_live, 0)
                        }
                        StatisticType::LiveConnections => (0, window.counters.connections_live),
                    };
                    let index = if query.time_series { position } else { 0 };
                    let (into, out_of) = match hit.action {
                        HitAction::Allow => (&mut row.allowed_in, &mut row.allowed_out),
                        HitAction::Deny => (&mut row.denied_in, &mut row.denied_out),
                        HitAction::Pass => (&mut row.passed_in, &mut row.passed_out),
                    };
                    into[index] =
                        into[index].saturating_add(i64::try_from(inbound).unwrap_or(i64::MAX));
                    out_of[index] =
                        out_of[index].saturating_add(i64::try_from(outbound).unwrap_or(i64::MAX));
                }
            }
        }
        rows.into_values().collect()
    }

    /// The flow graph of matching flows, nodes grouped as asked, at most `max_edges` edges.
    pub fn graph(
        &self,
        start: i64,
        end: i64,
        filter: &Expr,
        group: GraphGroup,
        max_edges: usize,
    ) -> GraphResult {
        let range = self.range(start, end);
        let key_only = filter.is_key_only();
        let mut nodes: HashMap<String, GraphNode> = HashMap::new();
        // Per edge, totals as reported by each side; the larger is shown so a connection
        // reported by both nodes is not counted twice.
        let mut edges: HashMap<EdgeKey, EdgeTotals> = HashMap::new();
        for key_id in self.keys_in(&range, filter) {
            let counters = if key_only {
                self.counters_over(key_id, &range.slots, &range.mask)
            } else {
                match self.materialize(key_id, &range.slots, &range.mask) {
                    Some(flow) if filter.matches(&flow) => flow.counters,
                    _ => continue,
                }
            };
            let view = self.key_view(key_id);
            let key = view.key;
            let text = |id: u32| &**self.strings.get(id);
            let source = node_for(
                group,
                key.source_type,
                text(key.source_namespace),
                text(key.source_name),
            );
            let dest = node_for(
                group,
                key.dest_type,
                text(key.dest_namespace),
                text(key.dest_name),
            );
            let bytes = counters.bytes_in.saturating_add(counters.bytes_out);
            for node in [&source, &dest] {
                nodes
                    .entry(node.id.clone())
                    .or_insert_with(|| node.clone())
                    .bytes += bytes;
            }
            let edge_key = (
                source.id,
                dest.id,
                key.dest_port,
                text(key.proto).to_string(),
                key.action,
            );
            let (sides, policies) = edges.entry(edge_key).or_default();
            sides[usize::from(key.reporter == Reporter::Dst)].add(&counters);
            for hit in &view.trace().enforced {
                policies.insert(hit.to_string());
            }
        }
        for node in nodes
            .values()
            .filter_map(|node| node.parent.clone())
            .collect::<Vec<_>>()
        {
            nodes.entry(node.clone()).or_insert_with(|| GraphNode {
                id: node.clone(),
                kind: "namespace",
                namespace: node.trim_start_matches("ns:").to_string(),
                name: node.trim_start_matches("ns:").to_string(),
                parent: None,
                bytes: 0,
            });
        }
        let mut edges: Vec<GraphEdge> = edges
            .into_iter()
            .map(
                |((source, target, port, proto, action), (sides, policies))| {
                    let larger = if sides[0].bytes_in + sides[0].bytes_out
                        >= sides[1].bytes_in + sides[1].bytes_out
                    {
                        sides[0]
                    } else {
                        sides[1]
                    };
                    GraphEdge {
                        source,
                        target,
                        port,
                        proto,
                        action,
                        bytes: larger.bytes_in.saturating_add(larger.bytes_out),
                        packets: larger.packets_in.saturating_add(larger.packets_out),
                        connections: sides[0]
                            .connections_started
                            .max(sides[1].connections_started),
                        policies: policies.into_iter().collect(),
                    }
                },
            )
            .collect();
        edges.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| (&a.source, &a.target, a.port).cmp(&(&b.source, &b.target, b.port)))
        });
        let truncated = edges.len() > max_edges;
        edges.truncate(max_edges);
        let mut nodes: Vec<GraphNode> = nodes.into_values().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        GraphResult {
            nodes,
            edges,
            truncated,
        }
    }
}

/// The workload a pod belongs to: names already folded end in `*`; otherwise the last
/// `-suffix` (the replica-set pod hash) is replaced with `*`.
pub fn workload_of(name: &str) -> String {
    if name.ends_with('*') {
        return name.to_string();
    }
    match name.rfind('-') {
        Some(position) if position > 0 => format!("{}*", &name[..=position]),
        _ => name.to_string(),
    }
}

fn node_for(group: GraphGroup, kind: EndpointType, namespace: &str, name: &str) -> GraphNode {
    let node = |id: String, kind: &'static str, name: String, parent: Option<String>| GraphNode {
        id,
        kind,
        namespace: namespace.to_string(),
        name,
        parent,
        bytes: 0,
    };
    match kind {
        EndpointType::Workload => match group {
            GraphGroup::Namespace => node(
                format!("ns:{namespace}"),
                "namespace",
                namespace.to_string(),
                None,
            ),
            GraphGroup::Workload => {
                let workload = workload_of(name);
                node(
                    format!("wl:{namespace}/{workload}"),
                    "workload",
                    workload,
                    Some(format!("ns:{namespace}")),
                )
            }
            GraphGroup::Pod => node(
                format!("pod:{namespace}/{name}"),
                "pod",
                name.to_string(),
                Some(format!("ns:{namespace}")),
            ),
        },
        EndpointType::Host => node(format!("host:{name}"), "host", name.to_string(), None),
        EndpointType::NetworkSet => node(
            format!("netset:{namespace}/{name}"),
            "networkset",
            name.to_string(),
            None,
        ),
        EndpointType::Network => node(format!("net:{name}"), "network", name.to_string(), None),
    }
}
