//! Sends generated traffic to a server through the real gRPC ingest: Caracal's batched
//! protocol (default) or Goldmane's `Connect`, one receipt per update, as Felix does.

use std::time::{Duration, Instant};

use caracal_flow::time::{Clock, SystemClock};
use caracal_proto::caracal::v1 as caracal;
use caracal_proto::goldmane as wire;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::Cluster;
use crate::generator::{daily_rhythm, Generator};

/// Which wire protocol to send with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Caracal's batched `Ingest.Push`.
    Batched,
    /// Goldmane's `FlowCollector.Connect`.
    Goldmane,
}

/// What to send, where and for how long.
#[derive(Clone, Debug)]
pub struct SimulateConfig {
    /// gRPC address, e.g. `127.0.0.1:7443` or `http://127.0.0.1:7443`.
    pub server: String,
    /// Updates per second at the daily peak.
    pub rate: u64,
    /// How long to send; `None` runs until cancelled.
    pub duration: Option<Duration>,
    /// Seed of the cluster and of the traffic.
    pub seed: u64,
    /// Nodes of the simulated cluster.
    pub nodes: usize,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Identity of this sender for batch de-duplication.
    pub sender: String,
    /// TLS with a client certificate, for servers outside the demo.
    pub tls: Option<ClientTls>,
}

/// PEM files for a TLS connection with a client certificate.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// Authority the server's certificate must chain to.
    pub ca: std::path::PathBuf,
    /// This client's certificate.
    pub cert: std::path::PathBuf,
    /// This client's key.
    pub key: std::path::PathBuf,
    /// Name the server's certificate must carry.
    pub domain: String,
}

/// What was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Updates sent.
    pub sent: u64,
    /// Updates the server accepted.
    pub accepted: u64,
    /// Updates the server rejected.
    pub rejected: u64,
}

/// Why sending stopped.
#[derive(Debug, Error)]
pub enum SendError {
    /// The address is not a valid endpoint.
    #[error("invalid server address `{0}`: expected HOST:PORT or http://HOST:PORT")]
    Address(String),
    /// A TLS file is unreadable.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server could not be reached.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The server ended the stream.
    #[error("the server ended the stream: {0}")]
    Stream(#[from] tonic::Status),
}

fn unix_now() -> i64 {
    SystemClock.now()
}

/// How many updates each 100 ms tick owes: the rate shaped by the daily rhythm, carrying
/// fractions over so low rates still send.
struct Pacer {
    rate: u64,
    duration: Option<Duration>,
    owed: f64,
}

impl Pacer {
    /// (now, updates due), or `None` once the duration is over.
    fn tick(&mut self, elapsed: Duration) -> Option<(i64, usize)> {
        if self.duration.is_some_and(|duration| elapsed >= duration) {
            return None;
        }
        let now = unix_now();
        self.owed += self.rate as f64 * daily_rhythm(now) / 10.0;
        let count = self.owed as usize;
        self.owed -= count as f64;
        Some((now, count))
    }
}

/// Connects to a gRPC endpoint given as `HOST:PORT` or a URL, over TLS when `tls` is given.
pub async fn connect(server: &str, tls: Option<&ClientTls>) -> Result<Channel, SendError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("{scheme}://{server}")
    };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|_| SendError::Address(server.to_string()))?
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| SendError::TlsFile {
                path: path.to_path_buf(),
                source,
            })
        };
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&tls.ca)?))
            .identity(tonic::transport::Identity::from_pem(
                read(&tls.cert)?,
                read(&tls.key)?,
            ))
            .domain_name(tls.domain.clone());
        endpoint = endpoint
            .tls_config(config)
            .map_err(|source| SendError::Connect {
                address: server.to_string(),
                source,
            })?;
    }
    endpoint
        .connect()
        .await
        .map_err(|source| SendError::Connect {
            address: server.to_string(),
            source,
        })
}

/// Sends generated traffic at `rate` (shaped by the daily rhythm) until the duration ends or
/// `cancel` resolves. Ticks every 100 ms; each tick's updates go out as one batch.
pub async fn send(
    config: SimulateConfig,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<SendReport, SendError> {
    let channel = connect(&config.server, config.tls.as_ref()).await?;
    let mut generator = Generator::new(Cluster::generate(config.seed, config.nodes), config.seed);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = SendReport::default();
    let mut pacer = Pacer {
        rate: config.rate,
        duration: config.duration,
        owed: 0.0,
    };
    tokio::pin!(cancel);
    match config.protocol {
        Protocol::Batched => {
            let (batches, receiver) = mpsc::channel::<caracal::FlowBatch>(64);
            let mut client = caracal::ingest_client::IngestClient::new(channel);
            let mut acks = client
                .push(ReceiverStream::new(receiver))
                .await?
                .into_inner();
            let mut sequence = 0u64;
            let mut in_flight = 0u64;
            loop {
                tokio::select! {
                    _ = &mut cancel => break,
                    _ = ticker.tick() => {}
                    ack = acks.next() => {
                        let ack = ack.ok_or_else(|| tonic::Status::unavailable("ingest stream closed"))??;
                        in_flight -= 1;
                        report.accepted += u64::from(ack.accepted);
                        report.rejected += u64::from(ack.rejected);
                        continue;
                    }
                }
                let Some((now, count)) = pacer.tick(started.elapsed()) else {
                    break;
                };
                if count == 0 {
                    continue;
                }
                let flows: Vec<wire::Flow> = generator
                    .updates(now, count)
                    .iter()
                    .map(wire::Flow::from)
                    .collect();
                report.sent += flows.len() as u64;
                sequence += 1;
                in_flight += 1;
                if batches
                    .send(caracal::FlowBatch {
                        sequence,
                        flows,
                        sender: config.sender.clone(),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            drop(batches);
            while in_flight > 0 {
                let Some(ack) = acks.next().await else { break };
                let ack = ack?;
                in_flight -= 1;
                report.accepted += u64::from(ack.accepted);
                report.rejected += u64::from(ack.rejected);
            }
        }
        Protocol::Goldmane => {
            let (updates, receiver) = mpsc::channel::<wire::FlowUpdate>(1);
            let mut client = wire::flow_collector_client::FlowCollectorClient::new(channel);
            let mut receipts = client
                .connect(ReceiverStream::new(receiver))
                .await?
                .into_inner();
            'outer: loop {
                tokio::select! {
                    _ = &mut cancel => break,
                    _ = ticker.tick() => {}
                }
                let Some((now, count)) = pacer.tick(started.elapsed()) else {
                    break;
                };
                for flow in generator.updates(now, count) {
                    if updates
                        .send(wire::FlowUpdate {
                            flow: Some(wire::Flow::from(&flow)),
                        })
                        .await
                        .is_err()
                    {
                        break 'outer;
                    }
                    report.sent += 1;
                    // Lock-step like Felix: the next update waits for this one's receipt.
                    match receipts.next().await {
                        Some(Ok(_)) => report.accepted += 1,
                        Some(Err(status)) => return Err(status.into()),
                        None => break 'outer,
                    }
                }
            }
        }
    }
    Ok(report)
}
