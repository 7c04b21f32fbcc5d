//! The hot store: 15 s buckets for the last hour plus the current bucket and one ahead.
//! Each (key, bucket) pair is a `Window` of counters and ids of interned labels and address
//! sets; each distinct key is a compact row of interned ids. Logic only: time comes in as
//! arguments, and the server wraps this in a lock and a clock.

mod encode;
mod intern;
mod query;
mod view;

use std::hash::BuildHasher;
use std::net::IpAddr;

use caracal_flow::time::{bucket_start, BUCKET_SECONDS};
use caracal_flow::{
    Action, Counters, DomainSet, EndpointType, Flow, FlowKey, IpSet, Labels, PolicyTrace, Reporter,
};
use foldhash::fast::FixedState;
use hashbrown::{HashSet, HashTable};

pub use query::{
    GraphEdge, GraphGroup, GraphNode, GraphResult, HintField, HintPage, ListQuery, ListResult,
    SortOrder, StatisticType, StatisticsGroup, StatisticsQuery, StatisticsRow,
};

use intern::{HeapSize, Interner};

/// Most buckets the per-key slot bitmap can name (four words).
const MAX_SLOTS: usize = 256;

/// Size of the hot window.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    /// Closed buckets kept hot (default 240 = one hour).
    pub hot_buckets: usize,
    /// Largest page a query returns, also when asked for "all" (`page_size = 0`).
    pub max_page_size: usize,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            hot_buckets: 240,
            max_page_size: 10_000,
        }
    }
}

/// Why an update was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Its bucket has already left the hot window.
    TooOld,
    /// Its bucket is more than one bucket ahead of now.
    TooNew,
}

impl Reject {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::TooOld => "too_old",
            Reject::TooNew => "too_new",
        }
    }
}

/// What happened to an accepted update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Merged into a window (new or existing).
    Merged,
    /// A replay of an update already merged from the same peer: not counted twice.
    Duplicate,
}

impl HeapSize for PolicyTrace {
    fn heap_size(&self) -> usize {
        self.hits()
            .map(|hit| 96 + hit.name.len() + hit.namespace.len() + hit.tier.len())
            .sum()
    }
}

impl HeapSize for Labels {
    fn heap_size(&self) -> usize {
        self.as_slice().iter().map(|label| 24 + label.len()).sum()
    }
}

impl HeapSize for IpSet {
    fn heap_size(&self) -> usize {
        self.len() * std::mem::size_of::<IpAddr>()
    }
}

impl HeapSize for DomainSet {
    fn heap_size(&self) -> usize {
        self.members().iter().map(|domain| 24 + domain.len()).sum()
    }
}

/// A flow key as interned ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CompactKey {
    source_type: EndpointType,
    dest_type: EndpointType,
    reporter: Reporter,
    action: Action,
    dest_port: u16,
    service_port: u16,
    source_namespace: u32,
    source_name: u32,
    dest_namespace: u32,
    dest_name: u32,
    service_name: u32,
    service_namespace: u32,
    service_port_name: u32,
    proto: u32,
    trace: u32,
}

impl CompactKey {
    fn symbols(&self) -> [u32; 8] {
        [
            self.source_namespace,
            self.source_name,
            self.dest_namespace,
            self.dest_name,
            self.service_name,
            self.service_namespace,
            self.service_port_name,
            self.proto,
        ]
    }
}

/// Which ring slots hold a window of a key.
type SlotBits = [u64; MAX_SLOTS / 64];

/// Laid out so that what a query scan reads (the compact key and the slot bitmap) comes
/// first and shares the entry's first cache lines.
#[repr(C)]
struct KeyEntry {
    key: CompactKey,
    slots: SlotBits,
    hash: u64,
    /// The canonical encoding, compared on lookup.
    encoded: Box<[u8]>,
    /// Seeded hash of the labels, addresses and domains last merged, and their interned ids:
    /// when an update carries the same and the window holds those ids, nothing is interned.
    extras_hash: u64,
    extras: [u32; 5],
    windows: u32,
    /// The last (bucket, window) this key merged into: the common case skips the bucket index.
    recent_bucket: i64,
    recent_window: u32,
}

/// One key's counters within one bucket.
struct Window {
    key: u32,
    source_labels: u32,
    dest_labels: u32,
    source_ips: u32,
    dest_ips: u32,
    domains: u32,
    counters: Counters,
}

struct Bucket {
    /// Start time, `None` when the slot holds no bucket.
    start: Option<i64>,
    windows: Vec<Window>,
    /// Window position by key id.
    index: HashTable<u32>,
    /// Digests of (peer, key, start, end) merged here, to recognise replays.
    replays: HashSet<u64, FixedState>,
}

/// Counts kept by the ring, exported as metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingStats {
    /// Updates merged.
    pub merged: u64,
    /// Replays recognised and skipped.
    pub duplicates: u64,
    /// Updates older than the hot window.
    pub rejected_too_old: u64,
    /// Updates too far in the future.
    pub rejected_too_new: u64,
    /// Buckets expired out of the hot window.
    pub buckets_expired: u64,
}

/// The ring of hot buckets.
pub struct BucketRing {
    config: RingConfig,
    strings: Interner<Box<str>>,
    traces: Interner<PolicyTrace>,
    label_sets: Interner<Labels>,
    ip_sets: Interner<IpSet>,
    domain_sets: Interner<DomainSet>,
    keys: Vec<Option<KeyEntry>>,
    generations: Vec<u32>,
    free_keys: Vec<u32>,
    key_table: HashTable<u32>,
    buckets: Vec<Bucket>,
    /// Start of the bucket containing "now".
    current: i64,
    hasher: FixedState,
    /// Seeded per process so a peer cannot aim updates at hash collisions.
    extras_hasher: foldhash::fast::RandomState,
    scratch: Vec<u8>,
    stats: RingStats,
}

/// A bad ring configuration.
#[derive(Debug, thiserror::Error)]
#[error("hot_buckets must be between 1 and {max}, got {got}")]
pub struct RingConfigError {
    got: usize,
    max: usize,
}

fn hash_index(key_id: u32) -> u64 {
    // Key ids are dense small integers: a multiplicative spread is enough for the index table.
    u64::from(key_id).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl BucketRing {
    /// An empty ring whose current bucket contains `now`.
    pub fn new(config: RingConfig, now: i64) -> Result<Self, RingConfigError> {
        if config.hot_buckets == 0 || config.hot_buckets + 2 > MAX_SLOTS {
            return Err(RingConfigError {
                got: config.hot_buckets,
                max: MAX_SLOTS - 2,
            });
        }
        let buckets = (0..config.hot_buckets + 2)
            .map(|_| Bucket {
                start: None,
                windows: Vec::new(),
                index: HashTable::new(),
                replays: HashSet::with_hasher(FixedState::default()),
            })
            .collect();
        Ok(Self {
            config,
            strings: Interner::new(),
            traces: Interner::new(),
            label_sets: Interner::new(),
            ip_sets: Interner::new(),
            domain_sets: Interner::new(),
            keys: Vec::new(),
            generations: Vec::new(),
            free_keys: Vec::new(),
            key_table: HashTable::new(),
            buckets,
            current: bucket_start(now),
            hasher: FixedState::with_seed(0xca4ac41),
            extras_hasher: foldhash::fast::RandomState::default(),
            scratch: Vec::with_capacity(512),
            stats: RingStats::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> RingConfig {
        self.config
    }

    /// Start of the oldest bucket held.
    pub fn oldest_bucket(&self) -> i64 {
        self.current - self.config.hot_buckets as i64 * BUCKET_SECONDS
    }

    /// Start of the bucket containing "now", as of the last `advance`.
    pub fn current_bucket(&self) -> i64 {
        self.current
    }

    fn slot_of(&self, bucket: i64) -> usize {
        (bucket / BUCKET_SECONDS).rem_euclid(self.buckets.len() as i64) as usize
    }

    /// Moves "now" forward and expires buckets that left the hot window.
    pub fn advance(&mut self, now: i64) {
        let current = bucket_start(now);
        if current <= self.current {
            return;
        }
        self.current = current;
        let oldest = self.oldest_bucket();
        for slot in 0..self.buckets.len() {
            if self.buckets[slot].start.is_some_and(|start| start < oldest) {
                self.expire_slot(slot);
            }
        }
    }

    /// Merges one update. `peer` identifies the sender for replay de-duplication (Goldmane's
    /// `Connect`), `None` for senders that de-duplicate by sequence number instead.
    pub fn ingest(&mut self, flow: &Flow, peer: Option<u64>, now: i64) -> Result<Ingested, Reject> {
        self.advance(now);
        let bucket = bucket_start(flow.start_time);
        if bucket < self.oldest_bucket() {
            self.stats.rejected_too_old += 1;
            return Err(Reject::TooOld);
        }
        if bucket > self.current + BUCKET_SECONDS {
            self.stats.rejected_too_new += 1;
            return Err(Reject::TooNew);
        }
        let slot = self.slot_of(bucket);
        if self.buckets[slot].start != Some(bucket) {
            self.expire_slot(slot);
            self.buckets[slot].start = Some(bucket);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        encode::encode_key(&flow.key, &mut scratch);
        let key_hash = self.hasher.hash_one(scratch.as_slice());
        if let Some(peer) = peer {
            let digest = self
                .hasher
                .hash_one((peer, key_hash, flow.start_time, flow.end_time));
            if !self.buckets[slot].replays.insert(digest) {
                self.stats.duplicates += 1;
                self.scratch = scratch;
                return Ok(Ingested::Duplicate);
            }
        }
        let key_id = self.key_id(&flow.key, key_hash, &scratch);
        self.scratch = scratch;
        let extras_hash = self.extras_hash(flow);
        let window_index = self.window_index(key_id, bucket, slot, flow, extras_hash);
        self.merge_into(key_id, slot, window_index, flow, extras_hash);
        self.stats.merged += 1;
        Ok(Ingested::Merged)
    }

    fn key_id(&mut self, key: &FlowKey, hash: u64, encoded: &[u8]) -> u32 {
        let keys = &self.keys;
        let found = self.key_table.find(hash, |&id| {
            keys[id as usize]
                .as_ref()
                .is_some_and(|entry| entry.hash == hash && &*entry.encoded == encoded)
        });
        if let Some(&id) = found {
            return id;
        }
        let mut intern = |text: &str| self.strings.intern(text, |text: &str| Box::from(text));
        let compact = CompactKey {
            source_type: key.source.kind,
            dest_type: key.dest.kind,
            reporter: key.reporter,
            action: key.action,
            dest_port: key.dest_port,
            service_port: key.service.port,
            source_namespace: intern(&key.source.namespace),
            source_name: intern(&key.source.name),
            dest_namespace: intern(&key.dest.namespace),
            dest_name: intern(&key.dest.name),
            service_name: intern(&key.service.name),
            service_namespace: intern(&key.service.namespace),
            service_port_name: intern(&key.service.port_name),
            proto: intern(&key.proto),
            trace: self.traces.intern(&key.policies, Clone::clone),
        };
        let entry = KeyEntry {
            key: compact,
            hash,
            encoded: Box::from(encoded),
            extras_hash: 0,
            extras: [u32::MAX; 5],
            slots: [0; MAX_SLOTS / 64],
            windows: 0,
            recent_bucket: i64::MIN,
            recent_window: 0,
        };
        let id = match self.free_keys.pop() {
            Some(id) => {
                self.keys[id as usize] = Some(entry);
                self.generations[id as usize] += 1;
                id
            }
            None => {
                self.keys.push(Some(entry));
                self.generations.push(0);
                u32::try_from(self.keys.len() - 1).expect("fewer than 2^32 keys")
            }
        };
        let keys = &self.keys;
        self.key_table.insert_unique(hash, id, |&other| {
            keys[other as usize].as_ref().map_or(0, |entry| entry.hash)
        });
        id
    }

    fn window_index(
        &mut self,
        key_id: u32,
        bucket: i64,
        slot: usize,
        flow: &Flow,
        extras_hash: u64,
    ) -> u32 {
        let entry = self.keys[key_id as usize].as_mut().expect("live key");
        if entry.recent_bucket == bucket {
            return entry.recent_window;
        }
        let windows = &self.buckets[slot].windows;
        if let Some(&index) = self.buckets[slot].index.find(hash_index(key_id), |&index| {
            windows[index as usize].key == key_id
        }) {
            entry.recent_bucket = bucket;
            entry.recent_window = index;
            return index;
        }
        entry.slots[slot / 64] |= 1 << (slot % 64);
        entry.windows += 1;
        entry.recent_bucket = bucket;
        let cached = (entry.extras_hash == extras_hash && entry.extras[0] != u32::MAX)
            .then_some(entry.extras);
        let window = match cached {
            // The same labels, addresses and domains as this key's last update: share its sets.
            Some(ids) => {
                self.label_sets.retain(ids[0]);
                self.label_sets.retain(ids[1]);
                self.ip_sets.retain(ids[2]);
                self.ip_sets.retain(ids[3]);
                self.domain_sets.retain(ids[4]);
                Window {
                    key: key_id,
                    source_labels: ids[0],
                    dest_labels: ids[1],
                    source_ips: ids[2],
                    dest_ips: ids[3],
                    domains: ids[4],
                    counters: Counters::default(),
                }
            }
            None => Window {
                key: key_id,
                source_labels: self.label_sets.intern(&flow.source_labels, Clone::clone),
                dest_labels: self.label_sets.intern(&flow.dest_labels, Clone::clone),
                source_ips: self.ip_sets.intern(&flow.source_ips, Clone::clone),
                dest_ips: self.ip_sets.intern(&flow.dest_ips, Clone::clone),
                domains: self.domain_sets.intern(&flow.dest_domains, Clone::clone),
                counters: Counters::default(),
            },
        };
        let bucket_ref = &mut self.buckets[slot];
        let index = u32::try_from(bucket_ref.windows.len()).expect("fewer than 2^32 windows");
        bucket_ref.windows.push(window);
        let windows = &bucket_ref.windows;
        bucket_ref
            .index
            .insert_unique(hash_index(key_id), index, |&other| {
                hash_index(windows[other as usize].key)
            });
        self.keys[key_id as usize]
            .as_mut()
            .expect("live key")
            .recent_window = index;
        index
    }

    fn extras_hash(&self, flow: &Flow) -> u64 {
        self.extras_hasher.hash_one((
            &flow.source_labels,
            &flow.dest_labels,
            &flow.source_ips,
            &flow.dest_ips,
            &flow.dest_domains,
        ))
    }

    fn merge_into(
        &mut self,
        key_id: u32,
        slot: usize,
        window_index: u32,
        flow: &Flow,
        extras_hash: u64,
    ) {
        let entry = self.keys[key_id as usize].as_mut().expect("live key");
        let window = &mut self.buckets[slot].windows[window_index as usize];
        window.counters.add(&flow.counters);
        let held = [
            window.source_labels,
            window.dest_labels,
            window.source_ips,
            window.dest_ips,
            window.domains,
        ];
        // The steady state: the same labels, addresses and domains as the last update of this
        // key, already merged into this window. A 64-bit seeded hash stands for equality here.
        if entry.extras_hash == extras_hash && entry.extras == held {
            return;
        }
        for (held, incoming) in [
            (&mut window.source_labels, &flow.source_labels),
            (&mut window.dest_labels, &flow.dest_labels),
        ] {
            let current = self.label_sets.get(*held);
            if current != incoming {
                let merged = current.intersect(incoming);
                let id = self.label_sets.intern(&merged, Clone::clone);
                self.label_sets.release(*held);
                *held = id;
            }
        }
        for (held, incoming) in [
            (&mut window.source_ips, &flow.source_ips),
            (&mut window.dest_ips, &flow.dest_ips),
        ] {
            let current = self.ip_sets.get(*held);
            if !current.contains_all(incoming) {
                let mut merged = current.clone();
                merged.union_with(incoming);
                let id = self.ip_sets.intern(&merged, Clone::clone);
                self.ip_sets.release(*held);
                *held = id;
            }
        }
        let current = self.domain_sets.get(window.domains);
        if !current.contains_all(&flow.dest_domains) {
            let mut merged = current.clone();
            merged.union_with(&flow.dest_domains);
            let id = self.domain_sets.intern(&merged, Clone::clone);
            self.domain_sets.release(window.domains);
            window.domains = id;
        }
        // Remember the incoming extras only when the window now holds exactly them, so a hit
        // on the cache above always means "merging this update changes nothing".
        let now_held = [
            window.source_labels,
            window.dest_labels,
            window.source_ips,
            window.dest_ips,
            window.domains,
        ];
        let matches_incoming = self.label_sets.get(now_held[0]) == &flow.source_labels
            && self.label_sets.get(now_held[1]) == &flow.dest_labels
            && self.ip_sets.get(now_held[2]) == &flow.source_ips
            && self.ip_sets.get(now_held[3]) == &flow.dest_ips
            && self.domain_sets.get(now_held[4]) == &flow.dest_domains;
        if matches_incoming {
            entry.extras_hash = extras_hash;
            entry.extras = now_held;
        } else {
            entry.extras = [u32::MAX; 5];
        }
    }

    fn expire_slot(&mut self, slot: usize) {
        let bucket = &mut self.buckets[slot];
        if bucket.start.take().is_none() {
            return;
        }
        self.stats.buckets_expired += 1;
        let windows = std::mem::take(&mut bucket.windows);
        bucket.index.clear();
        bucket.replays.clear();
        for window in &windows {
            self.label_sets.release(window.source_labels);
            self.label_sets.release(window.dest_labels);
            self.ip_sets.release(window.source_ips);
            self.ip_sets.release(window.dest_ips);
            self.domain_sets.release(window.domains);
            let entry = self.keys[window.key as usize]
                .as_mut()
                .expect("window of a live key");
            entry.slots[slot / 64] &= !(1 << (slot % 64));
            entry.windows -= 1;
            // The sets this window held may be freed now: the key's cache must not name them.
            let held = [
                window.source_labels,
                window.dest_labels,
                window.source_ips,
                window.dest_ips,
                window.domains,
            ];
            if entry.extras == held {
                entry.extras = [u32::MAX; 5];
            }
            entry.recent_bucket = i64::MIN;
            if entry.windows == 0 {
                self.remove_key(window.key);
            }
        }
        // Keep the allocation for the next bucket that takes this slot, at its size.
        let mut windows = windows;
        windows.clear();
        self.buckets[slot].windows = windows;
    }

    fn remove_key(&mut self, key_id: u32) {
        let entry = self.keys[key_id as usize].take().expect("live key");
        for symbol in entry.key.symbols() {
            self.strings.release(symbol);
        }
        self.traces.release(entry.key.trace);
        if let Ok(found) = self.key_table.find_entry(entry.hash, |&id| id == key_id) {
            found.remove();
        }
        self.free_keys.push(key_id);
    }

    /// Counts since start.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Distinct keys held.
    pub fn key_count(&self) -> usize {
        self.keys.len() - self.free_keys.len()
    }

    /// (key, bucket) windows held.
    pub fn window_count(&self) -> usize {
        self.buckets.iter().map(|bucket| bucket.windows.len()).sum()
    }

    /// Approximate bytes held by the ring: keys, windows, indexes and interned values.
    pub fn memory_bytes(&self) -> usize {
        let keys = self.keys.capacity() * std::mem::size_of::<Option<KeyEntry>>()
            + self.generations.capacity() * 4
            + self.free_keys.capacity() * 4
            + self.key_table.capacity() * 5;
        let buckets: usize = self
            .buckets
            .iter()
            .map(|bucket| {
                bucket.windows.capacity() * std::mem::size_of::<Window>()
                    + bucket.index.capacity() * 5
                    + bucket.replays.capacity() * 9
            })
            .sum();
        keys + buckets
            + self.strings.memory_bytes()
            + self.traces.memory_bytes()
            + self.label_sets.memory_bytes()
            + self.ip_sets.memory_bytes()
            + self.domain_sets.memory_bytes()
    }

    /// The stable id of a held key: slot and generation, so a reused slot gets a new id.
    fn flow_id(&self, key_id: u32) -> i64 {
        (i64::from(self.generations[key_id as usize]) << 32) | i64::from(key_id)
    }
}

#[cfg(test)]
mod tests;
