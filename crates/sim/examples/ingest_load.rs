//! Load generator for bench/run.sh: drives a running server's gRPC ingest from its own
//! process and prints one JSON line with the rate. Modes: `lockstep` (Goldmane `Connect`, one
//! update then its receipt, as Felix does), `pipelined` (`Connect` with many updates in
//! flight), `batched` (Caracal `Ingest.Push`), and `list` (time `Flows.List` of all keys).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use caracal_proto::caracal::v1 as caracal;
use caracal_proto::goldmane as wire;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// Sends bytes that are already an encoded `FlowBatch`, and decodes `BatchAck`s: the load
/// generator then costs little next to the server it measures.
#[derive(Clone, Copy, Default)]
struct PreEncoded;

struct RawEncoder;
struct AckDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        destination: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(destination, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for AckDecoder {
    type Item = caracal::BatchAck;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        source: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<caracal::BatchAck>, tonic::Status> {
        prost::Message::decode(source)
            .map(Some)
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

impl tonic::codec::Codec for PreEncoded {
    type Encode = Vec<u8>;
    type Decode = caracal::BatchAck;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

struct Options {
    server: String,
    mode: String,
    streams: usize,
    in_flight: usize,
    seconds: u64,
    keys: usize,
    batch: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    Options {
        server: value("--server", "127.0.0.1:7443"),
        mode: value("--mode", "lockstep"),
        streams: value("--streams", "1").parse().expect("--streams N"),
        in_flight: value("--in-flight", "256").parse().expect("--in-flight N"),
        seconds: value("--seconds", "10").parse().expect("--seconds N"),
        keys: value("--keys", "10000").parse().expect("--keys N"),
        batch: value("--batch", "1000").parse().expect("--batch N"),
    }
}

/// Realistic updates (full key, labels, 1–3 policy hits), stamped into the current bucket.
fn updates(keys: usize) -> Arc<Vec<wire::Flow>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Arc::new(
        caracal_sim::keyspace(5, keys)
            .into_iter()
            .map(|mut flow| {
                flow.start_time = now;
                flow.end_time = now + 15;
                wire::Flow::from(&flow)
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() {
    let options = options();
    let flows = updates(options.keys);
    let channel = caracal_sim::connect(&options.server, None)
        .await
        .expect("server reachable");
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    match options.mode.as_str() {
        "list" => {
            // Ingest every key once, then time List of all of them.
            let mut client = caracal::ingest_client::IngestClient::new(channel.clone());
            let batches: Vec<caracal::FlowBatch> = flows
                .chunks(1000)
                .enumerate()
                .map(|(i, chunk)| caracal::FlowBatch {
                    sequence: i as u64 + 1,
                    flows: chunk.to_vec(),
                    sender: String::new(),
                })
                .collect();
            let count = batches.len();
            let mut acks = client
                .push(tokio_stream::iter(batches))
                .await
                .unwrap()
                .into_inner();
            for _ in 0..count {
                acks.next().await.unwrap().unwrap();
            }
            let mut flows_client =
                wire::flows_client::FlowsClient::new(channel).max_decoding_message_size(1 << 30);
            let mut timings = Vec::new();
            for _ in 0..21 {
                let begin = Instant::now();
                let result = flows_client
                    .list(wire::FlowListRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                timings.push(begin.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(result.flows.len(), options.keys);
            }
            timings.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{{\"mode\":\"list\",\"keys\":{},\"p50_ms\":{:.2},\"min_ms\":{:.2}}}",
                options.keys, timings[10], timings[0]
            );
            return;
        }
        "lockstep" | "pipelined" => {
            let window = if options.mode == "lockstep" {
                1
            } else {
                options.in_flight
            };
            for stream_index in 0..options.streams {
                let (flows, sent, channel) = (flows.clone(), sent.clone(), channel.clone());
                tasks.push(tokio::spawn(async move {
                    let mut client = wire::flow_collector_client::FlowCollectorClient::new(channel);
                    let (sender, receiver) = mpsc::channel(window.max(1));
                    let mut receipts = client
                        .connect(ReceiverStream::new(receiver))
                        .await
                        .unwrap()
                        .into_inner();
                    let permits = Arc::new(Semaphore::new(window));
                    let counter = sent.clone();
                    let reader_permits = permits.clone();
                    let reader = tokio::spawn(async move {
                        while let Some(receipt) = receipts.next().await {
                            receipt.unwrap();
                            counter.fetch_add(1, Ordering::Relaxed);
                            reader_permits.add_permits(1);
                        }
                    });
                    let mut index = stream_index * 7919;
                    while Instant::now() < deadline {
                        permits.acquire().await.unwrap().forget();
                        let flow = flows[index % flows.len()].clone();
                        index += 1;
                        if sender
                            .send(wire::FlowUpdate { flow: Some(flow) })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    let _ = permits.acquire_many(window as u32).await;
                    drop(sender);
                    let _ = reader.await;
                }));
            }
        }
        "batched" => {
            for stream_index in 0..options.streams {
                let (sent, channel) = (sent.clone(), channel.clone());
                let window = options.in_flight;
                // A few distinct batches, encoded once and sent in turn.
                let batches: Vec<(u64, Vec<u8>)> = (0..16)
                    .map(|round| {
                        let offset = stream_index * 7919 + round * options.batch;
                        let flows: Vec<wire::Flow> = (0..options.batch)
                            .map(|i| flows[(offset + i) % flows.len()].clone())
                            .collect();
                        let batch = caracal::FlowBatch {
                            sequence: 0,
                            flows,
                            sender: String::new(),
                        };
                        (options.batch as u64, prost::Message::encode_to_vec(&batch))
                    })
                    .collect();
                tasks.push(tokio::spawn(async move {
                    let mut grpc = tonic::client::Grpc::new(channel);
                    grpc.ready().await.unwrap();
                    let (sender, receiver) = mpsc::channel::<Vec<u8>>(window.max(1));
                    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                        "/caracal.v1.Ingest/Push",
                    );
                    let mut acks = grpc
                        .streaming(
                            tonic::Request::new(ReceiverStream::new(receiver)),
                            path,
                            PreEncoded,
                        )
                        .await
                        .unwrap()
                        .into_inner();
                    let permits = Arc::new(Semaphore::new(window));
                    let reader_permits = permits.clone();
                    let counter = sent.clone();
                    let reader = tokio::spawn(async move {
                        while let Some(ack) = acks.next().await {
                            let ack = ack.unwrap();
                            counter.fetch_add(
                                u64::from(ack.accepted + ack.rejected),
                                Ordering::Relaxed,
                            );
                            reader_permits.add_permits(1);
                        }
                    });
                    let mut round = 0;
                    while Instant::now() < deadline {
                        permits.acquire().await.unwrap().forget();
                        let (_, bytes) = &batches[round % batches.len()];
                        round += 1;
                        if sender.send(bytes.clone()).await.is_err() {
                            break;
                        }
                    }
                    let _ = permits.acquire_many(window as u32).await;
                    drop(sender);
                    let _ = reader.await;
                }));
            }
        }
        other => panic!("unknown --mode {other}"),
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let updates = sent.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"streams\":{},\"in_flight\":{},\"updates\":{},\"seconds\":{:.3},\"rate\":{:.0}}}",
        options.mode,
        options.streams,
        options.in_flight,
        updates,
        seconds,
        updates as f64 / seconds
    );
}
