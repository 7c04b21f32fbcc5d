//! The uploader against a real server: acknowledgements, an outage buffered and replayed
//! without duplicates, and the buffer bound.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use caracal_agent::{UploadConfig, Uploader};
use caracal_flow::time::{Clock, SystemClock};
use caracal_flow::*;
use caracal_server::hub::Hub;
use caracal_server::{Server, ServerConfig};

fn flow(name: &str, bytes: u64) -> Flow {
    let now = SystemClock.now();
    Flow {
        key: FlowKey {
            source: Endpoint {
                kind: EndpointType::Workload,
                namespace: "shop".into(),
                name: name.into(),
            },
            dest: Endpoint {
                kind: EndpointType::Workload,
                namespace: "data".into(),
                name: "postgres-*".into(),
            },
            dest_port: 5432,
            service: ServiceRef::default(),
            proto: "tcp".into(),
            reporter: Reporter::Src,
            action: Action::Allow,
            policies: PolicyTrace::default(),
        },
        start_time: now,
        end_time: now + 15,
        source_labels: Labels::default(),
        dest_labels: Labels::default(),
        counters: Counters {
            bytes_out: bytes,
            connections_started: 1,
            ..Counters::default()
        },
        source_ips: IpSet::default(),
        dest_ips: IpSet::default(),
        dest_domains: DomainSet::default(),
    }
}

/// A running server on `grpc` (port 0 for any), and how to stop it.
struct Running {
    grpc: SocketAddr,
    hub: Arc<Hub>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(grpc: SocketAddr, data: &Path) -> Running {
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc,
        data: data.to_path_buf(),
        ..ServerConfig::default()
    };
    let server = Server::bind(config, Arc::new(SystemClock)).await.unwrap();
    let (grpc, hub) = (server.grpc_address(), server.hub());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        grpc,
        hub,
        stop,
        task,
    }
}

async fn stop(running: Running) {
    let _ = running.stop.send(());
    running.task.await.unwrap();
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

fn bytes_held(hub: &Hub) -> u64 {
    let query = caracal_server::ring::ListQuery {
        start: 0,
        end: SystemClock.now() + 30,
        filter: caracal_flow::filter::Expr::All,
        sort: caracal_server::ring::SortOrder::Time,
        page: 0,
        page_size: 0,
        interval: 0,
    };
    hub.ring()
        .list(&query)
        .flows
        .iter()
        .map(|(_, flow)| flow.counters.bytes_out)
        .sum()
}

#[tokio::test]
async fn batches_survive_an_outage_and_arrive_once() {
    let data = tempfile::tempdir().unwrap();
    let first = start("127.0.0.1:0".parse().unwrap(), data.path()).await;
    let address = first.grpc;
    let config = UploadConfig {
        server: format!("http://{address}"),
        sender: "node-a".into(),
        max_buffered_batches: 100,
        max_backoff: Duration::from_millis(200),
    };
    let (uploader, task) = Uploader::new(config);
    let driver = tokio::spawn(task);
    for round in 0..3 {
        uploader.send(&[flow("cart-*", 100), flow(&format!("api-{round}-*"), 10)]);
    }
    eventually("the first batches to be acknowledged", || {
        uploader.stats.acknowledged.load(Ordering::Relaxed) == 6
    })
    .await;
    assert_eq!(bytes_held(&first.hub), 330);
    stop(first).await;
    // The server is away: batches wait in the buffer.
    uploader.send(&[flow("cart-*", 1000)]);
    uploader.send(&[flow("web-*", 5000)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(uploader.pending(), 2, "buffered while the server is away");
    // The server comes back on the same address with its saved hot window.
    let second = start(address, data.path()).await;
    eventually("the buffered batches to be acknowledged", || {
        uploader.pending() == 0
    })
    .await;
    assert_eq!(
        bytes_held(&second.hub),
        330 + 6000,
        "every update exactly once"
    );
    assert_eq!(uploader.stats.dropped.load(Ordering::Relaxed), 0);
    driver.abort();
    stop(second).await;
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_batches_and_counts_them() {
    let config = UploadConfig {
        server: "http://127.0.0.1:9".into(),
        sender: "node-b".into(),
        max_buffered_batches: 2,
        max_backoff: Duration::from_millis(50),
    };
    let (uploader, task) = Uploader::new(config);
    let driver = tokio::spawn(task);
    for index in 0..5 {
        uploader.send(&[
            flow(&format!("w{index}-*"), 1),
            flow(&format!("x{index}-*"), 1),
        ]);
    }
    assert_eq!(uploader.pending(), 4);
    assert_eq!(uploader.stats.dropped.load(Ordering::Relaxed), 6);
    eventually("failed connection attempts to be counted", || {
        uploader.stats.connect_failures.load(Ordering::Relaxed) >= 2
    })
    .await;
    driver.abort();
}
