//! The uploader: flow updates go to the server in batches over Caracal's batched protocol,
//! each with a sequence number. Batches wait in a bounded buffer until acknowledged; after a
//! disconnect the unacknowledged ones are sent again (the server applies a sequence once) with
//! exponential backoff between attempts. When the buffer is full the oldest batch is dropped
//! and counted, so a long outage costs the oldest data, never the agent's memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caracal_flow::Flow;
use caracal_proto::caracal::v1 as caracal;
use caracal_proto::goldmane as wire;
use tokio::sync::{mpsc, Notify};
use tokio_stream::StreamExt;

/// Counts of the uploader, for metrics.
#[derive(Debug, Default)]
pub struct UploadStats {
    /// Flow updates acknowledged by the server.
    pub acknowledged: AtomicU64,
    /// Updates the server rejected (counted by it too).
    pub rejected: AtomicU64,
    /// Updates dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
}

/// Where and how to upload.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// Server gRPC endpoint, `http://host:port`.
    pub server: String,
    /// Identity of this agent (its node name); with the sequence, what the server de-duplicates by.
    pub sender: String,
    /// Batches kept until acknowledged (the bound of what an outage can buffer).
    pub max_buffered_batches: usize,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

struct Buffer {
    /// (sequence, batch) not yet acknowledged, oldest first.
    unacknowledged: VecDeque<(u64, caracal::FlowBatch)>,
    next_sequence: u64,
}

/// A handle to give flow updates to the upload task.
#[derive(Clone)]
pub struct Uploader {
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    config: Arc<UploadConfig>,
    /// Counts.
    pub stats: Arc<UploadStats>,
}

impl Uploader {
    /// An uploader and the task that drives it; spawn the task on a runtime.
    pub fn new(config: UploadConfig) -> (Uploader, impl std::future::Future<Output = ()>) {
        // Sequences start from the wall clock so a restarted agent never reuses acknowledged ones.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let uploader = Uploader {
            buffer: Arc::new(Mutex::new(Buffer {
                unacknowledged: VecDeque::new(),
                next_sequence: start,
            })),
            wake: Arc::new(Notify::new()),
            config: Arc::new(config),
            stats: Arc::new(UploadStats::default()),
        };
        let task = uploader.clone().run();
        (uploader, task)
    }

    /// Queues flow updates as one batch.
    pub fn send(&self, flows: &[Flow]) {
        if flows.is_empty() {
            return;
        }
        let mut buffer = self.buffer.lock().expect("upload buffer");
        let sequence = buffer.next_sequence;
        buffer.next_sequence += 1;
        let batch = caracal::FlowBatch {
            sequence,
            flows: flows.iter().map(wire::Flow::from).collect(),
            sender: self.config.sender.clone(),
        };
        buffer.unacknowledged.push_back((sequence, batch));
        while buffer.unacknowledged.len() > self.config.max_buffered_batches {
            if let Some((_, dropped)) = buffer.unacknowledged.pop_front() {
                self.stats
                    .dropped
                    .fetch_add(dropped.flows.len() as u64, Ordering::Relaxed);
            }
        }
        drop(buffer);
        self.wake.notify_one();
    }

    /// Updates waiting for an acknowledgement.
    pub fn pending(&self) -> usize {
        self.buffer
            .lock()
            .expect("upload buffer")
            .unacknowledged
            .iter()
            .map(|(_, batch)| batch.flows.len())
            .sum()
    }

    async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, "upload session ended; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// One connection: sends every unacknowledged batch, then new ones as they come, and
    /// drops batches from the buffer as their acknowledgements arrive.
    async fn session(&self) -> Result<(), String> {
        let channel = tonic::transport::Endpoint::from_shared(self.config.server.clone())
            .map_err(|error| error.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|error| error.to_string())?;
        let mut client = caracal::ingest_client::IngestClient::new(channel);
        let (batches, receiver) = mpsc::channel::<caracal::FlowBatch>(64);
        let mut acks = client
            .push(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        let mut sent_up_to = 0u64;
        loop {
            let to_send: Vec<caracal::FlowBatch> = {
                let buffer = self.buffer.lock().expect("upload buffer");
                buffer
                    .unacknowledged
                    .iter()
                    .filter(|(sequence, _)| *sequence > sent_up_to)
                    .map(|(_, batch)| batch.clone())
                    .collect()
            };
            for batch in to_send {
                sent_up_to = batch.sequence;
                batches
                    .send(batch)
                    .await
                    .map_err(|_| "stream closed".to_string())?;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                ack = acks.next() => {
                    let ack = ack.ok_or("server closed the stream")?.map_err(|status| status.to_string())?;
                    self.stats.acknowledged.fetch_add(u64::from(ack.accepted), Ordering::Relaxed);
                    self.stats.rejected.fetch_add(u64::from(ack.rejected), Ordering::Relaxed);
                    self.buffer.lock().expect("upload buffer").unacknowledged.retain(|(sequence, _)| *sequence != ack.sequence);
                }
            }
        }
    }
}
