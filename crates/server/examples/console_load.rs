//! Load for the console's figures: a server on the wall clock holding a graph of about 2,000
//! workloads in 40 namespaces (4,000 edges), 1,000 new flow keys a second, and the simulator
//! sending 1,000 flow updates/s.
//! Prints the HTTP address, then serves until killed. Used by `bench/run.sh console`.

use std::sync::Arc;
use std::time::Duration;

use caracal_flow::time::{Clock, SystemClock};
use caracal_flow::*;
use caracal_server::{Server, ServerConfig};
use caracal_sim::{Protocol, SimulateConfig};

fn workload(index: usize) -> (String, String) {
    (
        format!("team-{:02}", index % 40),
        format!("svc-{index:04}-7d9f8c6b5d-x2x4z"),
    )
}

fn flow(from: usize, to: usize, start: i64, allow: bool) -> Flow {
    let (source_ns, source) = workload(from);
    let (dest_ns, dest) = workload(to);
    let hit: PolicyHit = if allow {
        "0|default|knp:team/allow|allow|0"
            .parse()
            .expect("valid hit")
    } else {
        "0|default|eot:|deny|-1".parse().expect("valid hit")
    };
    Flow {
        key: FlowKey {
            source: Endpoint {
                kind: EndpointType::Workload,
                namespace: source_ns,
                name: source,
            },
            dest: Endpoint {
                kind: EndpointType::Workload,
                namespace: dest_ns,
                name: dest,
            },
            dest_port: 8080,
            service: ServiceRef {
                name: "-".into(),
                namespace: "-".into(),
                port_name: "-".into(),
                port: 0,
            },
            proto: "tcp".into(),
            reporter: Reporter::Src,
            action: if allow { Action::Allow } else { Action::Deny },
            policies: PolicyTrace {
                enforced: vec![hit],
                pending: vec![],
            },
        },
        start_time: start,
        end_time: start + 15,
        source_labels: Labels::new(vec![format!("app=svc-{from}")]),
        dest_labels: Labels::new(vec![format!("app=svc-{to}")]),
        counters: Counters {
            bytes_in: 1000 + (from * 7 % 5000) as u64,
            bytes_out: 2000,
            packets_in: 10,
            packets_out: 10,
            connections_started: 1,
            connections_completed: 1,
            connections_live: 0,
        },
        source_ips: IpSet::default(),
        dest_ips: IpSet::default(),
        dest_domains: DomainSet::default(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let config = ServerConfig {
        http: "127.0.0.1:0".parse()?,
        grpc: "127.0.0.1:0".parse()?,
        data: data.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let server = Server::bind(config, Arc::new(SystemClock)).await?;
    let (http, grpc, hub) = (server.http_address(), server.grpc_address(), server.hub());
    let now = SystemClock.now();
    let start = now - now.rem_euclid(15) - 60;
    let flows: Vec<Flow> = (0..4000)
        .map(|edge| {
            flow(
                edge % 2000,
                (edge * 7 + 13) % 2000,
                start,
                !edge.is_multiple_of(9),
            )
        })
        .collect();
    for result in hub.ingest_many(&flows, None) {
        result.map_err(|reject| anyhow::anyhow!("{reject:?}"))?;
    }
    tokio::spawn(caracal_sim::send(
        SimulateConfig {
            server: grpc.to_string(),
            rate: 1000,
            duration: Some(Duration::from_secs(3600)),
            seed: 11,
            nodes: 5,
            protocol: Protocol::Batched,
            sender: "console-load".into(),
            tls: None,
        },
        std::future::pending::<()>(),
    ));
    // 1,000 distinct flow keys a second (pods of one workload), so the live table receives
    // 1,000 new rows per second of traffic, 15,000 each time a bucket closes.
    let streaming = hub.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut serial = 0usize;
        loop {
            ticker.tick().await;
            let now = SystemClock.now();
            let start = now - now.rem_euclid(15);
            let batch: Vec<Flow> = (0..1000)
                .map(|_| {
                    serial += 1;
                    let mut update = flow(0, 1, start, !serial.is_multiple_of(5));
                    update.key.source.namespace = "stream".into();
                    update.key.source.name = format!("streamer-7d9f8c6b5d-{serial:06}");
                    update
                })
                .collect();
            let _ = streaming.ingest_many(&batch, None);
        }
    });
    println!("http://{http}");
    server.run(std::future::pending::<()>()).await?;
    Ok(())
}
