//! The agent in a real lab (bench/run.sh agent, as root): the shop lab makes about 1,000 new
//! TCP connections per second between pods for 20 s while one agent per node watches; the
//! CPU time of each agent's thread over that window is read from /proc. Meanwhile probe
//! connections on fresh ports measure freshness: from the connection to its flow in the
//! server's API, with the default 15 s flush interval.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caracal_flow::filter::parse;
use caracal_flow::time::{Clock, SystemClock};
use caracal_lab::{tcp_send, Lab, LabSpec, Prefix, TcpListeners, TrafficRunner, TrafficSpec};
use caracal_server::ring::{ListQuery, SortOrder};
use caracal_server::{Server, ServerConfig};

fn thread_cpu_seconds(thread: u64) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/self/task/{thread}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let data = tempfile_dir();
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: "127.0.0.1:0".parse().unwrap(),
        data: data.clone(),
        ..ServerConfig::default()
    };
    let server = Server::bind(config, Arc::new(SystemClock)).await.unwrap();
    let (grpc, hub) = (server.grpc_address(), server.hub());
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let spec_path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab/shop.yaml"
    ));
    let spec = LabSpec::load(&spec_path).unwrap();
    let lab = Lab::up(&spec, &spec_path, Prefix::unique()).unwrap();
    let agents = caracal::lab_agents::start(&lab, &format!("http://{grpc}"), 15).unwrap();
    let load: Vec<TrafficSpec> = [
        "shop/cart",
        "shop/checkout",
        "shop/catalog",
        "shop/cart",
        "shop/checkout",
    ]
    .iter()
    .map(|to| TrafficSpec {
        from: "shop/frontend".into(),
        to: format!("workload:{to}"),
        protocol: Default::default(),
        port: 8080,
        rate: 200.0,
        bytes: 200,
        duration: Some(20),
    })
    .collect();
    let cpu_before: Vec<f64> = agents
        .agents
        .iter()
        .map(|agent| thread_cpu_seconds(agent.stats.thread_id.load(Ordering::Relaxed)))
        .collect();
    let started = Instant::now();
    let traffic = TrafficRunner::start(&lab, &spec, &load).unwrap();
    // Freshness probes: a new destination port each time, so each is a new flow key.
    let source = lab
        .pods
        .iter()
        .find(|pod| pod.workload == "frontend")
        .unwrap()
        .netns
        .clone();
    let target_pod = lab
        .pods
        .iter()
        .find(|pod| pod.workload == "catalog")
        .unwrap();
    let probe_ports: Vec<u16> = (0..15).map(|index| 21_000 + index).collect();
    let _probe_listeners = TcpListeners::start_in(&target_pod.netns, &probe_ports).unwrap();
    // Polls the API every 100 ms while probes go out, noting when each probe's flow appears.
    let seen: Arc<std::sync::Mutex<std::collections::BTreeMap<u16, Instant>>> = Arc::default();
    let poller = {
        let (hub, seen, ports) = (hub.clone(), seen.clone(), probe_ports.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(80);
            while Instant::now() < deadline && seen.lock().unwrap().len() < ports.len() {
                let now = SystemClock.now();
                for port in &ports {
                    if seen.lock().unwrap().contains_key(port) {
                        continue;
                    }
                    let query = ListQuery {
                        start: now - 300,
                        end: now + 30,
                        filter: parse(&format!("dest_port = {port}")).unwrap(),
                        sort: SortOrder::Time,
                        page: 0,
                        page_size: 1,
                        interval: 0,
                    };
                    if hub.ring().list(&query).total_results > 0 {
                        seen.lock().unwrap().insert(*port, Instant::now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut sent_at = Vec::new();
    for port in &probe_ports {
        let target = SocketAddr::new(IpAddr::V4(target_pod.address), *port);
        assert!(tcp_send(&source, target, 100, Duration::from_secs(1)).unwrap());
        sent_at.push((*port, Instant::now()));
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    let traffic_seconds = started.elapsed().as_secs_f64().min(20.0);
    tokio::time::sleep(Duration::from_secs(
        20u64.saturating_sub(started.elapsed().as_secs()),
    ))
    .await;
    let connected = traffic.stats.connected.load(Ordering::Relaxed);
    let cpu_after: Vec<f64> = agents
        .agents
        .iter()
        .map(|agent| thread_cpu_seconds(agent.stats.thread_id.load(Ordering::Relaxed)))
        .collect();
    drop(traffic);
    let window = started.elapsed().as_secs_f64();
    let _ = poller.await;
    let seen = seen.lock().unwrap().clone();
    let mut freshness: Vec<f64> = sent_at
        .iter()
        .filter_map(|(port, at)| {
            seen.get(port)
                .map(|when| when.duration_since(*at).as_secs_f64())
        })
        .collect();
    freshness.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let percentile = |p: f64| {
        freshness
            .get(((freshness.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("agent/connections_per_second      {:.0}  ({connected} connections in {traffic_seconds:.1} s of traffic)", connected as f64 / 20.0);
    for (index, (before, after)) in cpu_before.iter().zip(&cpu_after).enumerate() {
        println!(
            "agent/node{index}_cpu_share            {:.2} % of one core over {window:.1} s",
            (after - before) / window * 100.0
        );
    }
    println!(
        "agent/freshness_seconds           p50 {:.1}  p95 {:.1}  max {:.1}  ({} of {} probes seen; flush interval 15 s, target p95 <= 18)",
        percentile(0.5),
        percentile(0.95),
        freshness.last().copied().unwrap_or(f64::NAN),
        freshness.len(),
        sent_at.len()
    );
    for agent in agents.agents {
        agent.stop();
    }
    drop(lab);
    let _ = stop_server.send(());
    let _ = serving.await;
    let _ = std::fs::remove_dir_all(&data);
}

fn tempfile_dir() -> PathBuf {
    let path = std::env::temp_dir().join(format!("caracal-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&path).unwrap();
    path
}
