//! Resident memory of the bucket ring (bench/RESULTS.md): growth of VmRSS per distinct key and
//! per (key, bucket) window, for realistic keys (3–8 labels per side, 1–3 policy hits). Inputs
//! are built before the baseline is read, so only what the ring keeps is counted.

use caracal_flow::time::bucket_start;
use caracal_server::ring::{BucketRing, RingConfig};

const NOW: i64 = 1_800_000_007;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("linux /proc");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("VmRSS in kB")
        * 1024
}

/// Growth per distinct key (each with one window), in this process.
fn measure_keys(key_count: usize) {
    let keys = caracal_sim::keyspace(11, key_count);
    let before = resident_bytes();
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    for flow in &keys {
        let mut flow = flow.clone();
        flow.start_time = bucket_start(NOW);
        ring.ingest(&flow, None, NOW).unwrap();
    }
    let grown = resident_bytes() - before;
    println!(
        "{} {}",
        grown as f64 / key_count as f64,
        ring.memory_bytes() as f64 / key_count as f64
    );
}

/// Growth per extra window: keys already held, then 239 more buckets each.
fn measure_windows(key_count: usize) {
    let mut keys = caracal_sim::keyspace(12, key_count);
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    for flow in &mut keys {
        flow.start_time = bucket_start(NOW);
        ring.ingest(flow, None, NOW).unwrap();
    }
    let before = resident_bytes();
    for bucket in 1..240 {
        for flow in &mut keys {
            flow.start_time = bucket_start(NOW) - bucket * 15;
            ring.ingest(flow, None, NOW).unwrap();
        }
    }
    let windows = ring.window_count() - key_count;
    println!(
        "{} {}",
        (resident_bytes() - before) as f64 / windows as f64,
        windows
    );
}

/// Runs one phase in a fresh process, so memory freed by one phase cannot hide another's.
fn phase(name: &str) -> Vec<f64> {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--phase")
        .arg(name)
        .output()
        .expect("re-run self");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .map(|value| value.parse().unwrap())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--list") {
        return;
    }
    let (keys, window_keys) = (200_000, 10_000);
    match args
        .iter()
        .position(|arg| arg == "--phase")
        .map(|i| args[i + 1].as_str())
    {
        Some("keys") => return measure_keys(keys),
        Some("windows") => return measure_windows(window_keys),
        _ => {}
    }
    let key_figures = phase("keys");
    let window_figures = phase("windows");
    let (per_key_with_window, estimate) = (key_figures[0], key_figures[1]);
    let per_window = window_figures[0];
    let per_key = per_key_with_window - per_window;
    println!("memory/per_distinct_key_with_one_window  {per_key_with_window:.0} bytes  (ring's own estimate {estimate:.0}; {keys} keys)");
    println!("memory/per_distinct_key                  {per_key:.0} bytes  (target <= 1024; Goldmane ~10 KB: {:.1}x less)", 10_240.0 / per_key);
    println!(
        "memory/per_key_bucket_window             {per_window:.0} bytes  (target <= 150; Goldmane ~1 KB: {:.1}x less; {} windows of {window_keys} keys)",
        1024.0 / per_window,
        window_figures[1]
    );
}
