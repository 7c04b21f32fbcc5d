//! One side of the aggregation peer comparison (bench/run.sh aggregation): generates 1 M
//! realistic updates over 50 k distinct keys and 20 buckets, writes them as CSV for DuckDB,
//! and times Caracal's ring aggregating the same rows on one core.

use std::io::Write;
use std::time::Instant;

use caracal_flow::time::bucket_start;
use caracal_server::ring::{BucketRing, RingConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_800_000_007;

fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: aggregation_peer OUT.csv");
    let keys = caracal_sim::keyspace(21, 50_000);
    let mut rng = SmallRng::seed_from_u64(22);
    let updates: Vec<_> = (0..1_000_000)
        .map(|_| {
            let skewed = (rng.gen::<f64>().powi(2) * keys.len() as f64) as usize;
            let mut flow = keys[skewed.min(keys.len() - 1)].clone();
            flow.start_time = bucket_start(NOW) - rng.gen_range(0..20) * 15 + rng.gen_range(0..15);
            flow.end_time = flow.start_time + 15;
            flow
        })
        .collect();
    if !std::path::Path::new(&path).exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "bucket,source_type,source_namespace,source_name,dest_type,dest_namespace,dest_name,dest_port,dest_service_name,dest_service_namespace,dest_service_port_name,dest_service_port,proto,reporter,action,policies,source_labels,dest_labels,bytes_in,bytes_out,packets_in,packets_out,connections_started,connections_completed,connections_live")?;
        for flow in &updates {
            let key = &flow.key;
            let policies: Vec<String> = key.policies.hits().map(ToString::to_string).collect();
            let counters = &flow.counters;
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                bucket_start(flow.start_time),
                key.source.kind,
                csv_field(&key.source.namespace),
                csv_field(&key.source.name),
                key.dest.kind,
                csv_field(&key.dest.namespace),
                csv_field(&key.dest.name),
                key.dest_port,
                csv_field(&key.service.name),
                csv_field(&key.service.namespace),
                csv_field(&key.service.port_name),
                key.service.port,
                key.proto,
                key.reporter,
                key.action,
                csv_field(&policies.join(";")),
                csv_field(&flow.source_labels.as_slice().join(",")),
                csv_field(&flow.dest_labels.as_slice().join(",")),
                counters.bytes_in,
                counters.bytes_out,
                counters.packets_in,
                counters.packets_out,
                counters.connections_started,
                counters.connections_completed,
                counters.connections_live
            )?;
        }
    }
    let started = Instant::now();
    let mut ring = BucketRing::new(RingConfig::default(), NOW).expect("default ring");
    for flow in &updates {
        ring.ingest(flow, None, NOW).expect("inside the window");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"engine\":\"caracal ring, 1 core\",\"rows\":{},\"groups\":{},\"seconds\":{:.3},\"rows_per_second\":{:.0}}}",
        updates.len(),
        ring.window_count(),
        seconds,
        updates.len() as f64 / seconds
    );
    Ok(())
}
