//! The evaluator's verdict equals what the kernel does to a real packet under the rendered
//! ruleset: random tiered, Calico and Kubernetes policies are written as YAML, loaded,
//! rendered, applied with nft in a node namespace, and real TCP connections between pods
//! are compared with the evaluator, connection by connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use caracal_flow::Action;
use caracal_lab::{Node, Prefix, TcpListeners};
use caracal_policy::{
    load_str, render, Connection, Evaluator, Inventory, LocalEndpoint, Manifests,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const PODS: [(&str, &str, &str, &str, [u8; 4]); 4] = [
    ("shop", "web-0", "web", "front", [10, 77, 0, 2]),
    ("shop", "api-0", "api", "back", [10, 77, 0, 3]),
    ("data", "db-0", "db", "back", [10, 77, 0, 4]),
    ("data", "cache-0", "cache", "back", [10, 77, 0, 5]),
];
const PORTS: [u16; 3] = [80, 443, 8080];

fn inventory_yaml() -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: data, labels: {team: data}}\n",
    );
    for (namespace, name, app, tier, ip) in PODS {
        let address = Ipv4Addr::from(ip);
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}, tier: {tier}}}}}\nstatus: {{podIP: {address}}}\n"
        ));
    }
    text
}

const SELECTORS: [&str; 5] = [
    "all()",
    "app == 'web'",
    "tier == 'back'",
    "app in {'db', 'cache'}",
    "!has(tier)",
];

fn calico_rule() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("Allow"), Just("Deny"), Just("Pass")],
        proptest::option::of(proptest::sample::subsequence(PORTS.to_vec(), 1..=2)),
        proptest::option::of(0..SELECTORS.len()),
        proptest::option::of(prop_oneof![Just("team == 'data'"), Just("team == 'shop'")]),
    )
        .prop_map(|(action, ports, selector, namespaces)| {
            let mut rule = format!("    - action: {action}\n");
            let mut peer = Vec::new();
            if let Some(index) = selector {
                peer.push(format!("selector: \"{}\"", SELECTORS[index]));
            }
            if let Some(namespaces) = namespaces {
                peer.push(format!("namespaceSelector: \"{namespaces}\""));
            }
            if let Some(ports) = &ports {
                rule.push_str("      protocol: TCP\n");
                rule.push_str(&format!("      destination: {{ports: {ports:?}}}\n"));
            }
            if !peer.is_empty() {
                rule.push_str(&format!("      source: {{{}}}\n", peer.join(", ")));
            }
            rule
        })
}

fn calico_policy(kind: &'static str, index: usize) -> impl Strategy<Value = String> {
    (0..SELECTORS.len(), proptest::collection::vec(calico_rule(), 0..3), proptest::collection::vec(calico_rule(), 0..3), 0..3usize, any::<bool>())
        .prop_map(move |(selector, ingress, egress, types, in_data)| {
            let (tier, namespace) = if kind == "GlobalNetworkPolicy" { ("t1", String::new()) } else { ("default", format!(", namespace: {}", if in_data { "data" } else { "shop" })) };
            let name = if tier == "t1" { format!("t1.p{index}") } else { format!("p{index}") };
            let types = ["[Ingress]", "[Egress]", "[Ingress, Egress]"][types];
            // Egress rules name their peer on the destination side.
            let egress: Vec<String> = egress.into_iter().map(|rule| rule.replace("      source: ", "      destination_peer: ")).collect();
            let egress: Vec<String> = egress
                .into_iter()
                .map(|rule| {
                    if let Some(start) = rule.find("      destination_peer: {") {
                        let peer = rule[start + "      destination_peer: {".len()..].trim_end().trim_end_matches('}').to_string();
                        let without = rule[..start].to_string();
                        if let Some(ports_at) = without.find("      destination: {ports: ") {
                            let ports = without[ports_at + "      destination: {".len()..].trim_end().trim_end_matches('}').to_string();
                            return format!("{}      destination: {{{ports}, {peer}}}\n", &without[..ports_at]);
                        }
                        return format!("{without}      destination: {{{peer}}}\n");
                    }
                    rule
                })
                .collect();
            format!(
                "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {name}{namespace}}}\nspec:\n  tier: {tier}\n  order: {index}\n  selector: \"{}\"\n  types: {types}\n  ingress:\n{}  egress:\n{}",
                SELECTORS[selector],
                if ingress.is_empty() { "    []\n".to_string() } else { ingress.join("") },
                if egress.is_empty() { "    []\n".to_string() } else { egress.join("") },
            )
            .replace("  ingress:\n    []\n", "  ingress: []\n")
            .replace("  egress:\n    []\n", "  egress: []\n")
        })
}

fn kubernetes_policy(index: usize) -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("{}"), Just("{matchLabels: {app: db}}"), Just("{matchLabels: {tier: back}}")],
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("podSelector: {matchLabels: {app: web}}"), Just("namespaceSelector: {matchLabels: {team: shop}}"), Just("ipBlock: {cidr: 10.77.0.0/30}")]),
        proptest::option::of(proptest::sample::select(PORTS.to_vec())),
    )
        .prop_map(move |(pods, in_data, peer, port)| {
            let namespace = if in_data { "data" } else { "shop" };
            let mut rule = String::from("    - ");
            let mut parts = Vec::new();
            if let Some(peer) = peer {
                parts.push(format!("from: [{{{peer}}}]"));
            }
            if let Some(port) = port {
                parts.push(format!("ports: [{{port: {port}}}]"));
            }
            rule.push_str(&if parts.is_empty() { "{}".to_string() } else { format!("{{{}}}", parts.join(", ")) });
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: k{index}, namespace: {namespace}}}\nspec:\n  podSelector: {pods}\n  policyTypes: [Ingress]\n  ingress:\n{rule}\n"
            )
        })
}

fn policy_set() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("Deny"), Just("Pass")],
        proptest::collection::vec(calico_policy("GlobalNetworkPolicy", 0), 0..2),
        proptest::option::of(calico_policy("GlobalNetworkPolicy", 1)),
        proptest::option::of(calico_policy("NetworkPolicy", 2)),
        proptest::option::of(kubernetes_policy(3)),
    )
        .prop_map(|(default_action, first, second, namespaced, kubernetes)| {
            let mut documents = vec![format!("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: t1}}\nspec: {{order: 10, defaultAction: {default_action}}}\n")];
            documents.extend(first);
            documents.extend(second);
            documents.extend(namespaced);
            documents.extend(kubernetes);
            documents.join("---\n")
        })
}

#[test]
fn the_evaluator_agrees_with_nftables_on_real_packets() {
    if !crate::can_build_labs("the_evaluator_agrees_with_nftables_on_real_packets") {
        return;
    }
    let prefix = Prefix::unique();
    let mut node = Node::create(&prefix, "n0").expect("node namespace");
    for (_, name, _, _, ip) in PODS {
        node.add_pod(&name.replace('-', ""), Ipv4Addr::from(ip))
            .expect("pod namespace");
    }
    let _listeners: Vec<TcpListeners> = node
        .pods
        .iter()
        .map(|pod| TcpListeners::start(pod, &PORTS).expect("listeners"))
        .collect();
    let mut inventory_manifests = Manifests::default();
    load_str(
        "inventory.yaml",
        &inventory_yaml(),
        &mut inventory_manifests,
    )
    .expect("inventory");
    let connections = proptest::collection::vec(
        (
            0..PODS.len(),
            0..PODS.len(),
            proptest::sample::select(PORTS.to_vec()),
        ),
        6,
    );
    let outcomes = [
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 32,
        max_shrink_iters: 32,
        ..Config::default()
    });
    let result = runner.run(&(policy_set(), connections), |(yaml, probes)| {
        let mut manifests = inventory_manifests.clone();
        load_str("policies.yaml", &yaml, &mut manifests)
            .map_err(|errors| TestCaseError::fail(format!("{errors:?}\n{yaml}")))?;
        let inventory = Inventory::new(&manifests);
        let endpoints: Vec<LocalEndpoint> = node
            .pods
            .iter()
            .map(|pod| {
                let address = std::net::IpAddr::V4(pod.address);
                LocalEndpoint {
                    workload: inventory
                        .endpoint(address)
                        .workload
                        .expect("pod in inventory"),
                    address,
                    interface: pod.host_interface.clone(),
                }
            })
            .collect();
        let ruleset = render(&manifests.policies, &inventory, &endpoints, 1, 9)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        node.apply_nftables(&ruleset.text)
            .map_err(|error| TestCaseError::fail(format!("{error}\n{}", ruleset.text)))?;
        let evaluator = Evaluator::new(&manifests.policies);
        for (from, to, port) in probes {
            if from == to {
                continue;
            }
            let (source, destination) = (&node.pods[from], &node.pods[to]);
            let connection = Connection {
                source: inventory.endpoint(source.address.into()),
                destination: inventory.endpoint(destination.address.into()),
                protocol: "tcp".into(),
                port,
                icmp: None,
            };
            let expected = evaluator.evaluate(&connection).action == Action::Allow;
            let target = SocketAddr::from((destination.address, port));
            let mut connected = source
                .connects(target, Duration::from_millis(300))
                .expect("probe");
            if expected && !connected {
                // A slow machine, not a drop? Give it one long second try before calling it.
                connected = source
                    .connects(target, Duration::from_secs(2))
                    .expect("probe");
            }
            outcomes[usize::from(connected)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert_eq!(
                connected,
                expected,
                "{} -> {}:{} under\n{}\nruleset:\n{}",
                PODS[from].1,
                PODS[to].1,
                port,
                yaml,
                ruleset.text
            );
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let (denied, allowed) = (
        outcomes[0].load(std::sync::atomic::Ordering::Relaxed),
        outcomes[1].load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        denied > 10 && allowed > 10,
        "both verdicts must be exercised: {allowed} allowed, {denied} denied"
    );
    eprintln!("{allowed} connections allowed and {denied} denied, as the evaluator said");
}
