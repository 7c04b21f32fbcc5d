//! In-process figures of the bucket ring (bench/RESULTS.md): ingest updates/s on one core at
//! 50 k distinct realistic keys; `List` of all keys at 10 k keys; newest-first page of 100
//! with a namespace filter over a hot hour of 1 M distinct keys; `FilterHints`.

use std::hint::black_box;

use caracal_flow::filter::{parse, Expr};
use caracal_flow::time::bucket_start;
use caracal_flow::Flow;
use caracal_server::ring::{BucketRing, HintField, ListQuery, RingConfig, SortOrder};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_800_000_007;

/// `count` updates drawn from `keys` (Zipf-like: a few keys are hot), all in the current bucket.
fn updates(keys: &[Flow], count: usize, seed: u64) -> Vec<Flow> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let skewed = (rng.gen::<f64>().powi(2) * keys.len() as f64) as usize;
            let mut flow = keys[skewed.min(keys.len() - 1)].clone();
            flow.start_time = bucket_start(NOW) + rng.gen_range(0..15);
            flow.end_time = flow.start_time + 15;
            flow
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let keys = caracal_sim::keyspace(1, 50_000);
    let batch = updates(&keys, 200_000, 2);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.sample_size(10);
    // A warm ring: every key already known, as in steady state.
    let warm_ring = || {
        let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
        for flow in &keys {
            let mut flow = flow.clone();
            flow.start_time = bucket_start(NOW);
            ring.ingest(&flow, None, NOW).unwrap();
        }
        ring
    };
    group.bench_function("50k_keys_warm", |b| {
        b.iter_batched_ref(
            warm_ring,
            |ring| {
                for flow in &batch {
                    black_box(ring.ingest(flow, None, NOW).unwrap());
                }
            },
            BatchSize::LargeInput,
        )
    });
    // As the server does it: decode each update from protobuf, then ingest it while it is hot.
    // `decode_only` is the same loop without the ring; the difference is the ring's cost.
    let encoded: Vec<Vec<u8>> = batch
        .iter()
        .map(|flow| prost::Message::encode_to_vec(&caracal_proto::goldmane::Flow::from(flow)))
        .collect();
    group.bench_function("decode_and_ingest_50k_keys_warm", |b| {
        b.iter_batched_ref(
            warm_ring,
            |ring| {
                for bytes in &encoded {
                    let wire: caracal_proto::goldmane::Flow =
                        prost::Message::decode(bytes.as_slice()).unwrap();
                    let flow = Flow::try_from(wire).unwrap();
                    black_box(ring.ingest(&flow, None, NOW).unwrap());
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            for bytes in &encoded {
                let wire: caracal_proto::goldmane::Flow =
                    prost::Message::decode(bytes.as_slice()).unwrap();
                black_box(Flow::try_from(wire).unwrap());
            }
        })
    });
    group.bench_function("50k_keys_cold", |b| {
        b.iter_batched_ref(
            || BucketRing::new(RingConfig::default(), NOW).unwrap(),
            |ring| {
                for flow in &batch {
                    black_box(ring.ingest(flow, None, NOW).unwrap());
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A ring holding `distinct` keys, each in `buckets_per_key` buckets spread over the hour.
fn filled_ring(distinct: usize, buckets_per_key: usize, max_page_size: usize) -> BucketRing {
    let keys = caracal_sim::keyspace(3, distinct);
    let mut ring = BucketRing::new(
        RingConfig {
            hot_buckets: 240,
            max_page_size,
        },
        NOW,
    )
    .unwrap();
    let mut rng = SmallRng::seed_from_u64(4);
    for flow in &keys {
        for _ in 0..buckets_per_key {
            let mut update = flow.clone();
            update.start_time = bucket_start(NOW) - rng.gen_range(0..240) * 15;
            ring.ingest(&update, None, NOW).unwrap();
        }
    }
    ring
}

fn queries(c: &mut Criterion) {
    let mut group = c.benchmark_group("query");
    group.sample_size(10);
    let small = filled_ring(10_000, 20, 10_000);
    let all = ListQuery {
        start: 0,
        end: NOW + 30,
        filter: Expr::All,
        sort: SortOrder::Time,
        page: 0,
        page_size: 0,
        interval: 0,
    };
    group.bench_function("list_all_10k_keys", |b| {
        b.iter(|| black_box(small.list(&all).flows.len()))
    });
    group.bench_function("hints_dest_name_10k_keys", |b| {
        b.iter(|| black_box(small.hints(HintField::DestName, 0, NOW + 30, &Expr::All, 0, 100)))
    });
    drop(small);
    let large = filled_ring(1_000_000, 2, 10_000);
    let page = ListQuery {
        filter: parse("source_namespace = team-07").unwrap(),
        page_size: 100,
        ..all.clone()
    };
    group.bench_function("list_page_100_ns_filter_1m_keys", |b| {
        b.iter(|| black_box(large.list(&page).flows.len()))
    });
    let page_unfiltered = ListQuery {
        page_size: 100,
        ..all
    };
    group.bench_function("list_page_100_1m_keys", |b| {
        b.iter(|| black_box(large.list(&page_unfiltered).flows.len()))
    });
    let namespace = parse("source_namespace = team-07").unwrap();
    group.bench_function("hints_dest_name_ns_filter_1m_keys", |b| {
        b.iter(|| black_box(large.hints(HintField::DestName, 0, NOW + 30, &namespace, 0, 100)))
    });
    group.bench_function("hints_policy_name_1m_keys", |b| {
        b.iter(|| black_box(large.hints(HintField::PolicyName, 0, NOW + 30, &Expr::All, 0, 100)))
    });
    group.finish();
}

criterion_group!(benches, ingest, queries);
criterion_main!(benches);
