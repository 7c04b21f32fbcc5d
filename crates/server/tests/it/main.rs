//! Integration tests of the server over its real listeners (port 0), one binary for all.

mod console;
mod goldmane;
mod http_api;
mod security;

use std::sync::Arc;

use caracal_flow::time::ManualClock;
use caracal_flow::*;
use caracal_server::hub::Hub;
use caracal_server::{Server, ServerConfig};

/// A time in the middle of a bucket.
pub const NOW: i64 = 1_800_000_007;

pub struct TestServer {
    pub http: String,
    pub grpc: String,
    pub hub: Arc<Hub>,
    pub clock: Arc<ManualClock>,
    pub data: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(data).await
    }

    pub async fn start_in(data: tempfile::TempDir) -> TestServer {
        Self::start_configured(data, |_| {}).await
    }

    pub async fn start_configured(
        data: tempfile::TempDir,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let clock = Arc::new(ManualClock::new(NOW));
        let mut config = ServerConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            grpc: "127.0.0.1:0".parse().unwrap(),
            data: data.path().to_path_buf(),
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let config_uses_tls = config.tls_cert.is_some();
        let server = Server::bind(config, clock.clone()).await.unwrap();
        let http = format!("http://{}", server.http_address());
        let grpc = format!(
            "{}://{}",
            if config_uses_tls { "https" } else { "http" },
            server.grpc_address()
        );
        let hub = server.hub();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            http,
            grpc,
            hub,
            clock,
            data,
            stop,
            task,
        }
    }

    /// Stops the server (saving the hot window) and hands back its data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        let TestServer {
            data, stop, task, ..
        } = self;
        let _ = stop.send(());
        task.await.unwrap();
        data
    }

    /// GET a path, returning status and body (blocking client on a blocking thread).
    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        let url = format!("{}{}", self.http, path_and_query);
        tokio::task::spawn_blocking(move || match ureq::get(&url).call() {
            Ok(response) => (response.status(), response.into_string().unwrap()),
            Err(ureq::Error::Status(status, response)) => (status, response.into_string().unwrap()),
            Err(error) => panic!("{url}: {error}"),
        })
        .await
        .unwrap()
    }

    pub async fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = self.get(path_and_query).await;
        assert_eq!(status, 200, "{path_and_query}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A realistic update at `start` with names and a trace chosen by the caller.
pub fn update(source: &str, dest: &str, port: u16, action: Action, start: i64, bytes: u64) -> Flow {
    let trace = match action {
        Action::Allow => PolicyTrace {
            enforced: vec![
                "0|security|gnp:security.pass-internal|pass|0"
                    .parse()
                    .unwrap(),
                "1|default|knp:shop/allow-web|allow|2".parse().unwrap(),
            ],
            pending: vec!["0|security|sgnp:security.staged-lockdown|deny|0"
                .parse()
                .unwrap()],
        },
        Action::Deny => {
            let mut end_of_tier: PolicyHit = "0|default|eot:|deny|-1".parse().unwrap();
            end_of_tier.trigger = Some(Box::new(
                "0|default|knp:shop/payment-ingress|deny|-1"
                    .parse()
                    .unwrap(),
            ));
            PolicyTrace {
                enforced: vec![end_of_tier],
                pending: vec![],
            }
        }
    };
    Flow {
        key: FlowKey {
            source: Endpoint {
                kind: EndpointType::Workload,
                namespace: "shop".into(),
                name: source.into(),
            },
            dest: Endpoint {
                kind: EndpointType::Workload,
                namespace: "shop".into(),
                name: dest.into(),
            },
            dest_port: port,
            service: ServiceRef {
                name: dest.trim_end_matches("-*").into(),
                namespace: "shop".into(),
                port_name: "http".into(),
                port,
            },
            proto: "tcp".into(),
            reporter: Reporter::Dst,
            action,
            policies: trace,
        },
        start_time: start,
        end_time: start + 15,
        source_labels: Labels::new(vec![format!("app={source}"), "team=web".into()]),
        dest_labels: Labels::new(vec![format!("app={dest}")]),
        counters: Counters {
            bytes_in: bytes,
            packets_in: 1 + bytes / 1000,
            connections_started: 1,
            ..Counters::default()
        },
        source_ips: IpSet::from_members(["10.244.0.5".parse().unwrap()]),
        dest_ips: IpSet::from_members(["10.244.1.9".parse().unwrap()]),
        dest_domains: DomainSet::default(),
    }
}
