//! Lab traffic through agents to a server: the flows a user sees carry the right names,
//! reporters, services, verdicts and traces.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use caracal_agent::{
    Assembler, AssemblyConfig, NodeAgent, NodeSockets, ServiceAddress, UploadConfig, Uploader,
};
use caracal_flow::filter::parse;
use caracal_flow::time::{Clock, SystemClock};
use caracal_flow::{Action, PolicyKind, Reporter, ServiceRef};
use caracal_lab::{in_namespace, Lab, LabSpec, Prefix, TrafficRunner, NFLOG_GROUP};
use caracal_policy::{Evaluator, Inventory};
use caracal_server::ring::{ListQuery, SortOrder};
use caracal_server::{Server, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_traffic_reaches_the_api_as_correct_flow_logs() {
    if !crate::can_build_labs("lab_traffic_reaches_the_api_as_correct_flow_logs") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: "127.0.0.1:0".parse().unwrap(),
        data: data.path().to_path_buf(),
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
    let mut spec = LabSpec::load(&spec_path).unwrap();
    for pattern in &mut spec.traffic {
        pattern.duration = Some(3);
    }
    let lab = Lab::up(&spec, &spec_path, Prefix::unique()).unwrap();
    let services: Vec<ServiceAddress> = lab
        .services
        .iter()
        .flat_map(|service| {
            service.ports.iter().map(move |port| ServiceAddress {
                address: IpAddr::V4(service.cluster_ip),
                port: port.port,
                protocol: if port.protocol == "UDP" { 17 } else { 6 },
                service: ServiceRef {
                    name: service.name.clone(),
                    namespace: service.namespace.clone(),
                    port_name: port.name.clone(),
                    port: port.port,
                },
            })
        })
        .collect();
    let mut agents = Vec::new();
    let mut uploaders = Vec::new();
    for (name, node) in &lab.nodes {
        let netns = node.namespace.name().to_string();
        let sockets = in_namespace(&netns, move || NodeSockets::open(NFLOG_GROUP))
            .unwrap()
            .unwrap();
        let local = lab
            .pods
            .iter()
            .filter(|pod| &pod.node == name)
            .map(|pod| IpAddr::V4(pod.address))
            .collect();
        let mut assembler = Assembler::new(
            AssemblyConfig::default(),
            Inventory::new(lab.manifests()),
            Evaluator::new(&lab.manifests().policies),
            local,
            services.clone(),
        );
        assembler.set_ruleset(1, lab.rulesets[name].tags.clone());
        let (uploader, task) = Uploader::new(UploadConfig {
            server: format!("http://{grpc}"),
            sender: name.clone(),
            max_buffered_batches: 1000,
            max_backoff: Duration::from_millis(200),
        });
        tokio::spawn(task);
        agents.push(NodeAgent::start(sockets, assembler, uploader.clone(), 1));
        uploaders.push(uploader);
    }
    let traffic = TrafficRunner::start(&lab, &spec, &spec.traffic).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (connected, failed) = (
        traffic.stats.connected.load(Ordering::Relaxed),
        traffic.stats.failed.load(Ordering::Relaxed),
    );
    drop(traffic);
    for agent in agents {
        agent.stop();
    }
    let delivered = tokio::time::timeout(Duration::from_secs(10), async {
        while uploaders.iter().any(|uploader| uploader.pending() > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "every flow update was acknowledged");
    assert!(
        connected > 50 && failed > 5,
        "traffic ran: {connected} connected, {failed} failed"
    );

    let now = SystemClock.now();
    let query = |filter: &str| {
        let query = ListQuery {
            start: now - 600,
            end: now + 30,
            filter: parse(filter).unwrap(),
            sort: SortOrder::Time,
            page: 0,
            page_size: 0,
            interval: 0,
        };
        hub.ring()
            .list(&query)
            .flows
            .into_iter()
            .map(|(_, flow)| flow)
            .collect::<Vec<_>>()
    };
    // frontend -> cart through its service, reported by both sides, allowed by the profile
    // (egress) and no ingress policy (profile too).
    let to_cart = query("source_name ~ frontend AND dest_name ~ cart AND dest_service_name = cart");
    assert!(
        to_cart.iter().any(|f| f.key.reporter == Reporter::Src)
            && to_cart.iter().any(|f| f.key.reporter == Reporter::Dst),
        "{to_cart:#?}"
    );
    let source_side = to_cart
        .iter()
        .find(|f| f.key.reporter == Reporter::Src)
        .unwrap();
    assert_eq!(
        source_side.key.service,
        ServiceRef {
            name: "cart".into(),
            namespace: "shop".into(),
            port_name: "http".into(),
            port: 80
        }
    );
    assert_eq!(source_side.key.dest_port, 8080);
    assert!(
        source_side.counters.connections_started >= 20,
        "{:?}",
        source_side.counters
    );
    assert!(
        source_side.counters.bytes_out >= 1500 * source_side.counters.connections_started,
        "{:?}",
        source_side.counters
    );
    // frontend -> redis is denied at redis's node, by the end of the default tier.
    let denied = query("source_name ~ frontend AND dest_name ~ redis AND action = deny");
    assert!(!denied.is_empty());
    assert!(denied.iter().all(|f| f.key.reporter == Reporter::Dst
        && f.key.policies.enforced.last().unwrap().kind == PolicyKind::EndOfTier));
    // frontend -> crawler is denied at frontend's node by the security tier.
    let crawler = query("source_name ~ frontend AND dest_name = pub AND dest_ip = 198.51.100.7");
    assert!(!crawler.is_empty());
    assert!(crawler
        .iter()
        .all(|f| f.key.action == Action::Deny && f.key.reporter == Reporter::Src));
    assert_eq!(
        crawler[0].key.policies.enforced[0].to_string(),
        "0|security|gnp:security.deny-crawlers|deny|0"
    );
    // checkout -> payments API: pub, allowed, with the address in the set.
    // It was reached by name over HTTP: the name the pod resolved is the flow's domain, and
    // the answer came back.
    let payments = query("source_name ~ checkout AND dest_ip = 203.0.113.10 AND action = allow");
    assert!(!payments.is_empty());
    assert!(payments.iter().all(|f| f.key.dest.name == "pub"
        && f.dest_domains
            .members()
            .contains(&"api.payments.example".to_string())
        && f.counters.bytes_in > 0));
    // The lookups themselves: UDP to the cluster DNS service, from both reporters.
    let lookups = query("dest_service_name = kube-dns AND proto = udp AND dest_port = 53");
    assert!(lookups.iter().any(|f| f.key.reporter == Reporter::Src));
    assert!(lookups.iter().any(|f| f.key.reporter == Reporter::Dst));
    // cart -> redis by its service name: the service and the cluster name on one flow.
    let by_name = query("source_name ~ cart AND dest_service_name = redis AND reporter = src");
    assert!(by_name.iter().any(|f| f
        .dest_domains
        .members()
        .contains(&"redis.data.svc.cluster.local".to_string())));
    // Datagrams to a UDP port are flows too.
    let statsd = query("source_name ~ frontend AND dest_port = 8125 AND proto = udp");
    assert!(statsd.iter().any(|f| f.counters.bytes_out >= 120));
    // checkout -> postgres: the staged policy would still allow it; frontend is not in traffic here.
    let postgres =
        query("source_name ~ checkout AND dest_service_name = postgres AND reporter = dst");
    assert!(postgres.iter().all(|f| f
        .key
        .policies
        .pending
        .iter()
        .any(|hit| hit.kind == PolicyKind::StagedKubernetesNetworkPolicy
            && hit.name == "postgres-from-shop")));
    assert!(!postgres.is_empty());
    let _ = stop_server.send(());
    serving.await.unwrap().unwrap();
}
