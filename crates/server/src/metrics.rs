//! Prometheus metrics of the server. The text exposition format is a few lines per metric and
//! every value here is an atomic or read at scrape time, so it is written by hand rather than
//! through a registry crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Counters and gauges of ingest, the ring and the APIs.
#[derive(Default)]
pub struct Metrics {
    /// Updates received over Goldmane `Connect`.
    pub received_goldmane: AtomicU64,
    /// Updates received over Caracal's batched protocol.
    pub received_batched: AtomicU64,
    /// Batches received.
    pub batches: AtomicU64,
    /// Batches replayed and skipped.
    pub duplicate_batches: AtomicU64,
    /// Updates merged into the ring.
    pub merged: AtomicU64,
    /// Updates recognised as replays.
    pub duplicates: AtomicU64,
    /// Updates older than the hot window.
    pub rejected_too_old: AtomicU64,
    /// Updates too far ahead.
    pub rejected_too_new: AtomicU64,
    invalid: Mutex<BTreeMap<String, u64>>,
    /// Keys held.
    pub keys: AtomicU64,
    /// Windows held.
    pub windows: AtomicU64,
    /// Bytes held by the ring.
    pub memory_bytes: AtomicU64,
    /// Live streams open (gRPC and SSE).
    pub streams: AtomicU64,
    /// Streams dropped because the client was too slow.
    pub streams_dropped: AtomicU64,
    /// Flows sent to live streams.
    pub streamed: AtomicU64,
    /// HTTP requests refused as bad input.
    pub http_bad_requests: AtomicU64,
    /// gRPC requests refused as bad input.
    pub grpc_bad_requests: AtomicU64,
    sources: Mutex<Vec<MetricSource>>,
}

/// Exposition text of something running in the server's process (the demo's lab agents).
pub type MetricSource = Box<dyn Fn() -> String + Send + Sync>;

impl Metrics {
    /// Adds the metrics of something else in this process to every scrape.
    pub fn add_source(&self, source: MetricSource) {
        self.sources.lock().push(source);
    }

    /// Counts a record refused as malformed, by reason.
    pub fn count_invalid(&self, reason: &str) {
        *self.invalid.lock().entry(reason.to_string()).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let value = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, sample) in samples {
                let _ = writeln!(out, "{name}{labels} {sample}");
            }
        };
        metric(
            "caracal_ingest_received_total",
            "counter",
            "Flow updates received, by protocol.",
            &[
                ("{protocol=\"goldmane\"}", value(&self.received_goldmane)),
                ("{protocol=\"batched\"}", value(&self.received_batched)),
            ],
        );
        metric(
            "caracal_ingest_batches_total",
            "counter",
            "Batches received over the batched protocol.",
            &[("", value(&self.batches))],
        );
        metric(
            "caracal_ingest_merged_total",
            "counter",
            "Flow updates merged into the bucket ring.",
            &[("", value(&self.merged))],
        );
        metric(
            "caracal_ingest_duplicates_total",
            "counter",
            "Replayed updates and batches recognised and not counted twice.",
            &[
                ("{unit=\"update\"}", value(&self.duplicates)),
                ("{unit=\"batch\"}", value(&self.duplicate_batches)),
            ],
        );
        let invalid = self.invalid.lock().clone();
        let mut rejected: Vec<(String, u64)> = vec![
            ("{reason=\"too_old\"}".into(), value(&self.rejected_too_old)),
            ("{reason=\"too_new\"}".into(), value(&self.rejected_too_new)),
        ];
        rejected.extend(
            invalid
                .into_iter()
                .map(|(reason, count)| (format!("{{reason=\"{reason}\"}}"), count)),
        );
        let rejected: Vec<(&str, u64)> = rejected
            .iter()
            .map(|(labels, count)| (labels.as_str(), *count))
            .collect();
        metric(
            "caracal_ingest_rejected_total",
            "counter",
            "Flow updates rejected, by reason.",
            &rejected,
        );
        metric(
            "caracal_ring_keys",
            "gauge",
            "Distinct flow keys held in the hot window.",
            &[("", value(&self.keys))],
        );
        metric(
            "caracal_ring_windows",
            "gauge",
            "(key, bucket) windows held in the hot window.",
            &[("", value(&self.windows))],
        );
        metric(
            "caracal_ring_memory_bytes",
            "gauge",
            "Bytes held by the bucket ring.",
            &[("", value(&self.memory_bytes))],
        );
        metric(
            "caracal_streams_open",
            "gauge",
            "Live flow streams open.",
            &[("", value(&self.streams))],
        );
        metric(
            "caracal_streams_dropped_total",
            "counter",
            "Live streams dropped because the client fell behind.",
            &[("", value(&self.streams_dropped))],
        );
        metric(
            "caracal_streamed_flows_total",
            "counter",
            "Flows sent to live streams.",
            &[("", value(&self.streamed))],
        );
        metric(
            "caracal_bad_requests_total",
            "counter",
            "API requests refused as bad input.",
            &[
                ("{api=\"http\"}", value(&self.http_bad_requests)),
                ("{api=\"grpc\"}", value(&self.grpc_bad_requests)),
            ],
        );
        for source in self.sources.lock().iter() {
            out.push_str(&source());
        }
        out
    }
}
