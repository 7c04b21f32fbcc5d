//! The shop example on real namespaces: cross-node pod traffic, externals, tiers, Kubernetes
//! policies; every connection agrees with the evaluator; down leaves nothing behind.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use caracal_flow::Action;
use caracal_lab::{down, tcp_connects, Lab, LabSpec, Prefix, TcpListeners};
use caracal_policy::{Connection, Evaluator, Inventory};

fn spec_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab/shop.yaml"
    ))
}

fn namespaces_with(prefix: &str) -> usize {
    let listing = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| line.starts_with(&format!("{prefix}-")))
        .count()
}

#[test]
fn the_shop_lab_routes_across_nodes_and_enforces_its_policies() {
    if !crate::can_build_labs("the_shop_lab_routes_across_nodes_and_enforces_its_policies") {
        return;
    }
    let spec = LabSpec::load(&spec_path()).unwrap();
    let prefix = Prefix::unique();
    let lab = Lab::up(&spec, &spec_path(), prefix.clone()).unwrap();
    assert_eq!(lab.pods.len(), 13);
    assert_eq!(
        namespaces_with(prefix.as_str()),
        1 + 2 + 13 + 2,
        "fabric, nodes, pods, externals"
    );
    assert!(lab
        .pods
        .iter()
        .all(|pod| pod.name.starts_with(&format!("{}-", pod.workload))
            && pod.name.len() == pod.workload.len() + 17));
    let mut listeners = Vec::new();
    for pod in &lab.pods {
        let ports: Vec<u16> = match pod.workload.as_str() {
            "postgres" => vec![5432],
            "redis" => vec![6379],
            "prometheus" => vec![9090],
            _ => vec![8080],
        };
        listeners.push(TcpListeners::start_in(&pod.netns, &ports).unwrap());
    }
    for (_, namespace, _) in &lab.externals {
        listeners.push(TcpListeners::start_in(namespace.name(), &[443]).unwrap());
    }
    let inventory = Inventory::new(lab.manifests());
    let evaluator = Evaluator::new(&lab.manifests().policies);
    let pod = |namespace: &str, workload: &str| {
        lab.pods
            .iter()
            .find(|pod| pod.namespace == namespace && pod.workload == workload)
            .unwrap()
    };
    let cases: [(&str, &str, IpAddr, u16, bool); 8] = [
        (
            "shop",
            "cart",
            pod("data", "redis").address.into(),
            6379,
            true,
        ),
        (
            "shop",
            "frontend",
            pod("data", "redis").address.into(),
            6379,
            false,
        ),
        (
            "shop",
            "frontend",
            pod("data", "postgres").address.into(),
            5432,
            true,
        ),
        (
            "monitoring",
            "prometheus",
            pod("data", "postgres").address.into(),
            5432,
            false,
        ),
        (
            "monitoring",
            "prometheus",
            pod("shop", "cart").address.into(),
            8080,
            true,
        ),
        (
            "shop",
            "checkout",
            "203.0.113.10".parse().unwrap(),
            443,
            true,
        ),
        (
            "shop",
            "frontend",
            "198.51.100.7".parse().unwrap(),
            443,
            false,
        ),
        (
            "shop",
            "frontend",
            pod("shop", "checkout").address.into(),
            8080,
            true,
        ),
    ];
    let mut crossed_nodes = false;
    for (namespace, workload, target, port, expected) in cases {
        let source = pod(namespace, workload);
        crossed_nodes |= lab
            .pods
            .iter()
            .any(|other| IpAddr::V4(other.address) == target && other.node != source.node);
        let connection = Connection {
            source: inventory.endpoint(source.address.into()),
            destination: inventory.endpoint(target),
            protocol: "tcp".into(),
            port,
            icmp: None,
        };
        let verdict = evaluator.evaluate(&connection);
        assert_eq!(
            verdict.action == Action::Allow,
            expected,
            "{workload} -> {target}:{port}: evaluator"
        );
        let connected = tcp_connects(
            &source.netns,
            SocketAddr::new(target, port),
            Duration::from_millis(if expected { 2000 } else { 300 }),
        )
        .unwrap();
        assert_eq!(connected, expected, "{workload} -> {target}:{port}: kernel");
        if workload == "frontend" && port == 5432 {
            assert_eq!(
                verdict.pending_action,
                Action::Deny,
                "the staged policy would deny the frontend"
            );
        }
    }
    assert!(crossed_nodes, "some connection crossed nodes");
    // Through ClusterIP services: DNAT in the source's node, then the backend's policy.
    let service = |name: &str| {
        lab.services
            .iter()
            .find(|service| service.name == name)
            .unwrap()
    };
    assert_eq!(
        service("postgres").ports[0].backends.len(),
        2,
        "both postgres replicas are backends"
    );
    for (workload, name, port, expected) in [
        ("checkout", "postgres", 5432, true),
        ("cart", "redis", 6379, true),
        ("frontend", "redis", 6379, false),
        ("frontend", "cart", 80, true),
    ] {
        let source = pod("shop", workload);
        let target = SocketAddr::new(service(name).cluster_ip.into(), port);
        for _ in 0..3 {
            let connected = tcp_connects(
                &source.netns,
                target,
                Duration::from_millis(if expected { 2000 } else { 300 }),
            )
            .unwrap();
            assert_eq!(connected, expected, "{workload} -> service {name}:{port}");
        }
    }
    drop(listeners);
    drop(lab);
    assert_eq!(
        namespaces_with(prefix.as_str()),
        0,
        "dropping the lab removed everything it made"
    );
}

/// Deletes a prefix's namespaces when dropped, so a failed assertion leaves none behind.
struct DeleteOnDrop(Prefix);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = caracal_lab::delete_with_prefix(&self.0);
    }
}

#[test]
fn a_kept_lab_is_removed_by_down_from_its_state() {
    if !crate::can_build_labs("a_kept_lab_is_removed_by_down_from_its_state") {
        return;
    }
    let spec = LabSpec::load(&spec_path()).unwrap();
    let prefix = Prefix::unique();
    let state = Lab::up(&spec, &spec_path(), prefix.clone()).unwrap().keep();
    let _cleanup = DeleteOnDrop(prefix.clone());
    assert_eq!(
        namespaces_with(prefix.as_str()),
        18,
        "kept after the value is gone"
    );
    let json = serde_json::to_string(&state).unwrap();
    let restored: caracal_lab::LabState = serde_json::from_str(&json).unwrap();
    assert_eq!(down(&restored).unwrap(), 18);
    assert_eq!(namespaces_with(prefix.as_str()), 0);
}

#[test]
fn bad_specs_say_where() {
    let directory = std::env::temp_dir().join(format!("caracal-spec-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    for (text, needle) in [
        (
            "version: 1\nnodes: [a, b]\nworkloads:\n  - {name: w, namespace: nope}\n",
            "workloads[0].namespace: `nope` is not declared",
        ),
        ("version: 1\nnodes: [a]\n", "a lab has 2 to 16 nodes"),
        (
            "version: 1\nnodes: [a, b]\nexternals: [{name: x, address: 8.8.8.8}]\n",
            "not in a documentation range",
        ),
        (
            "version: 1\nnodes: [a, b]\nworkloadz: []\n",
            "unknown field `workloadz`",
        ),
        (
            "version: 1\nnodes: [a, b]\nnamespaces: [{name: n}]\nworkloads: [{name: w, namespace: n, ports: [{name: d, port: 53, appProtocol: dns}]}]\n",
            "workloads[0].ports[0].appProtocol: `dns` on TCP is not supported",
        ),
        (
            "version: 1\nnodes: [a, b]\nnamespaces: [{name: n}]\nworkloads: [{name: w, namespace: n}]\ntraffic: [{from: n/w, to: domain:x.example, port: 80, rate: 1}]\n",
            "traffic[0].to: `domain:x.example` needs a `dns:` service",
        ),
        (
            "version: 1\nnodes: [a, b]\nnamespaces: [{name: n}]\nworkloads: [{name: w, namespace: n}]\ntraffic: [{from: n/w, to: workload:n/w, port: 80, rate: 500}]\n",
            "traffic[0].rate: 500 is outside (0, 200]",
        ),
        (
            "version: 1\nnodes: [a, b]\nnamespaces: [{name: n}]\nworkloads: [{name: w, namespace: n}]\ntraffic: [{from: n/v, to: workload:n/w, port: 80, rate: 1}]\n",
            "traffic[0].from: `n/v` is not a declared workload",
        ),
        (
            "version: 1\nnodes: [a, b]\nnamespaces: [{name: n}]\nworkloads: [{name: w, namespace: n}]\ntraffic: [{from: n/w, to: workload:n/w, protocol: QUIC, port: 80, rate: 1}]\n",
            "unknown variant `QUIC`",
        ),
        (
            "version: 1\nnodes: [a, b]\ndomains: {shop.example: external:nowhere}\n",
            "domains.shop.example: `external:nowhere` is neither",
        ),
    ] {
        let path = directory.join("spec.yaml");
        std::fs::write(&path, text).unwrap();
        let error = LabSpec::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("spec.yaml") && error.contains(needle),
            "{error}"
        );
    }
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn the_large_example_builds_routes_and_enforces_at_scale() {
    if !crate::can_build_labs("the_large_example_builds_routes_and_enforces_at_scale") {
        return;
    }
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab/large.yaml"
    ));
    let spec = LabSpec::load(&path).unwrap();
    let prefix = Prefix::unique();
    let started = std::time::Instant::now();
    let lab = Lab::up(&spec, &path, prefix.clone()).unwrap();
    eprintln!(
        "large lab: {} pods on {} nodes in {:.1} s",
        lab.pods.len(),
        lab.nodes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(lab.pods.len() >= 100);
    let pod = |workload: &str, replica: usize| {
        lab.pods
            .iter()
            .filter(|pod| pod.workload == workload)
            .nth(replica)
            .unwrap()
    };
    let service = |name: &str| {
        lab.services
            .iter()
            .find(|service| service.name == name)
            .unwrap()
    };
    let _listeners: Vec<TcpListeners> = ["ledger", "postgres", "redis"]
        .iter()
        .flat_map(|workload| lab.pods.iter().filter(move |pod| pod.workload == *workload))
        .map(|pod| {
            TcpListeners::start_in(
                &pod.netns,
                &[if pod.workload == "postgres" {
                    5432
                } else if pod.workload == "redis" {
                    6379
                } else {
                    8080
                }],
            )
            .unwrap()
        })
        .collect();
    // Every ledger replica from api replicas on other nodes, through the service.
    for replica in 0..4 {
        let api = pod("api", replica);
        assert!(
            tcp_connects(
                &api.netns,
                SocketAddr::new(service("ledger").cluster_ip.into(), 80),
                Duration::from_secs(2)
            )
            .unwrap(),
            "api {replica} -> ledger"
        );
    }
    assert!(tcp_connects(
        &pod("ledger", 0).netns,
        SocketAddr::new(service("postgres").cluster_ip.into(), 5432),
        Duration::from_secs(2)
    )
    .unwrap());
    assert!(
        !tcp_connects(
            &pod("search", 0).netns,
            SocketAddr::new(service("postgres").cluster_ip.into(), 5432),
            Duration::from_millis(300)
        )
        .unwrap(),
        "catalog may not reach postgres"
    );
    assert!(tcp_connects(
        &pod("auth", 1).netns,
        SocketAddr::new(service("redis").cluster_ip.into(), 6379),
        Duration::from_secs(2)
    )
    .unwrap());
    drop(lab);
    assert_eq!(namespaces_with(prefix.as_str()), 0);
}
