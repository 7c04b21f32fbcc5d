//! The server's shared state: the bucket ring behind a lock, the clock, the broadcast of
//! closed buckets for live streams, per-sender sequence numbers of the batched protocol, and
//! the counters every stage reports. Ingest paths and query APIs meet here and nowhere else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use caracal_flow::time::{bucket_start, Clock, BUCKET_SECONDS};
use caracal_flow::Flow;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::ring::{BucketRing, Ingested, Reject, RingConfig, RingConfigError};

/// The flows of one bucket that just closed, shared by every live stream.
#[derive(Debug)]
pub struct ClosedBucket {
    /// Bucket start, Unix seconds.
    pub start: i64,
    /// (stable id, flow) for every key of the bucket.
    pub flows: Vec<(i64, Flow)>,
}

/// Outcome of one batch from the batched protocol.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    /// Updates merged.
    pub accepted: u32,
    /// (index in batch, reason) of updates refused.
    pub rejections: Vec<(u32, String)>,
    /// The batch had been applied before and was skipped.
    pub duplicate: bool,
}

/// State shared by every server task.
pub struct Hub {
    ring: RwLock<BucketRing>,
    clock: Arc<dyn Clock>,
    closed: broadcast::Sender<Arc<ClosedBucket>>,
    last_emitted: Mutex<i64>,
    sequences: Mutex<HashMap<String, u64>>,
    /// Counters and gauges.
    pub metrics: Metrics,
    started: i64,
    shutdown: tokio::sync::watch::Sender<bool>,
    cluster: Mutex<String>,
}

/// Buckets a slow stream may fall behind before it is dropped.
const STREAM_BACKLOG: usize = 8;

impl Hub {
    /// Names the cluster this server watches.
    pub fn set_cluster(&self, name: &str) {
        *self.cluster.lock() = name.to_string();
    }

    /// The cluster's name.
    pub fn cluster(&self) -> String {
        self.cluster.lock().clone()
    }

    /// A hub with an empty ring at the clock's now.
    pub fn new(config: RingConfig, clock: Arc<dyn Clock>) -> Result<Arc<Hub>, RingConfigError> {
        let now = clock.now();
        let ring = BucketRing::new(config, now)?;
        let (closed, _) = broadcast::channel(STREAM_BACKLOG);
        Ok(Arc::new(Hub {
            ring: RwLock::new(ring),
            clock,
            closed,
            last_emitted: Mutex::new(bucket_start(now) - 2 * BUCKET_SECONDS),
            sequences: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            started: now,
            shutdown: tokio::sync::watch::channel(false).0,
            cluster: Mutex::new("default".into()),
        }))
    }

    /// Tells every long-lived stream (ingest and live) to end: the server is stopping.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once the server is stopping.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.shutdown.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    /// Now, from the hub's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// When the hub started.
    pub fn started(&self) -> i64 {
        self.started
    }

    /// Read access for queries.
    pub fn ring(&self) -> parking_lot::RwLockReadGuard<'_, BucketRing> {
        self.ring.read()
    }

    fn count(&self, result: &Result<Ingested, Reject>) {
        match result {
            Ok(Ingested::Merged) => self.metrics.merged.fetch_add(1, Ordering::Relaxed),
            Ok(Ingested::Duplicate) => self.metrics.duplicates.fetch_add(1, Ordering::Relaxed),
            Err(Reject::TooOld) => self
                .metrics
                .rejected_too_old
                .fetch_add(1, Ordering::Relaxed),
            Err(Reject::TooNew) => self
                .metrics
                .rejected_too_new
                .fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Merges one update from a peer that is de-duplicated by (peer, key, start, end).
    pub fn ingest_one(&self, flow: &Flow, peer: Option<u64>) -> Result<Ingested, Reject> {
        let now = self.clock.now();
        let result = self.ring.write().ingest(flow, peer, now);
        self.count(&result);
        result
    }

    /// Merges updates under one lock; returns the outcome of each.
    pub fn ingest_many(&self, flows: &[Flow], peer: Option<u64>) -> Vec<Result<Ingested, Reject>> {
        let now = self.clock.now();
        let results: Vec<_> = {
            let mut ring = self.ring.write();
            flows
                .iter()
                .map(|flow| ring.ingest(flow, peer, now))
                .collect()
        };
        for result in &results {
            self.count(result);
        }
        results
    }

    /// Applies one batch of the batched protocol unless `sender` already sent `sequence`.
    /// `decoded` holds each wire update converted, or the reason it could not be.
    pub fn ingest_batch(
        &self,
        sender: &str,
        sequence: u64,
        decoded: Vec<Result<Flow, String>>,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        if !sender.is_empty() {
            let mut sequences = self.sequences.lock();
            let last = sequences.entry(sender.to_string()).or_insert(0);
            if sequence != 0 && sequence <= *last {
                outcome.duplicate = true;
                self.metrics
                    .duplicate_batches
                    .fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
            *last = sequence;
        }
        let mut flows = Vec::with_capacity(decoded.len());
        let mut positions = Vec::with_capacity(decoded.len());
        for (index, item) in decoded.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            match item {
                Ok(flow) => {
                    flows.push(flow);
                    positions.push(index);
                }
                Err(reason) => outcome.rejections.push((index, reason)),
            }
        }
        for (position, result) in positions.into_iter().zip(self.ingest_many(&flows, None)) {
            match result {
                Ok(_) => outcome.accepted += 1,
                Err(reject) => outcome
                    .rejections
                    .push((position, reject.reason().to_string())),
            }
        }
        outcome.rejections.sort_by_key(|(index, _)| *index);
        outcome
    }

    /// Counts a record refused before it reached the ring (malformed on the wire).
    pub fn count_invalid(&self, reason: &str) {
        self.metrics.count_invalid(reason);
    }

    /// Copies the ring's size into the gauges (every tick, and on each scrape).
    pub fn refresh_gauges(&self) {
        let ring = self.ring.read();
        self.metrics
            .keys
            .store(ring.key_count() as u64, Ordering::Relaxed);
        self.metrics
            .windows
            .store(ring.window_count() as u64, Ordering::Relaxed);
        self.metrics
            .memory_bytes
            .store(ring.memory_bytes() as u64, Ordering::Relaxed);
    }

    /// Subscribes to closed buckets. Take it before reading the backfill so nothing is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ClosedBucket>> {
        self.closed.subscribe()
    }

    /// The last bucket handed to live streams.
    pub fn last_emitted(&self) -> i64 {
        *self.last_emitted.lock()
    }

    /// Moves time forward: expires old buckets and hands every bucket that closed
    /// (`[now − 30 s, now − 15 s)` and older) to live streams.
    pub fn tick(&self) {
        let now = self.clock.now();
        self.ring.write().advance(now);
        let closable = bucket_start(now) - 2 * BUCKET_SECONDS;
        let mut last_emitted = self.last_emitted.lock();
        while *last_emitted < closable {
            let bucket = *last_emitted + BUCKET_SECONDS;
            if self.closed.receiver_count() > 0 {
                let flows = self.ring.read().bucket_flows(bucket);
                // An error only means every subscriber left meanwhile.
                let _ = self.closed.send(Arc::new(ClosedBucket {
                    start: bucket,
                    flows,
                }));
            }
            *last_emitted = bucket;
        }
        drop(last_emitted);
        self.refresh_gauges();
    }
}

/// A gauge of live streams that decrements when dropped.
pub struct StreamGuard(Arc<Hub>);

impl StreamGuard {
    /// Counts one more live stream.
    pub fn new(hub: Arc<Hub>) -> Self {
        hub.metrics.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(hub)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.metrics.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counter of things that happen, for `AtomicU64` fields.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
