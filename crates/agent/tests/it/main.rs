//! The agent's collectors against real packets in a lab (root only; skipped with a message
//! elsewhere, failing in CI).

mod end_to_end;
mod upload;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use caracal_agent::{parse_packet, parse_prefix, NflogSocket, Verdict};
use caracal_flow::PolicyKind;
use caracal_lab::{in_namespace, tcp_connects, Lab, LabSpec, Prefix, TcpListeners, NFLOG_GROUP};

pub fn can_build_labs(test: &str) -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run lab tests as root"
    );
    eprintln!("skipped {test}: needs root");
    false
}

/// Collects verdicts from every node's socket until `done` holds or two seconds pass.
fn collect(
    sockets: &mut BTreeMap<String, NflogSocket>,
    done: impl Fn(&[(String, Verdict)]) -> bool,
) -> Vec<(String, Verdict)> {
    let mut verdicts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !done(&verdicts) {
        for (node, socket) in sockets.iter_mut() {
            for (prefix, payload) in socket.receive().unwrap() {
                let (generation, tag) = parse_prefix(&prefix).unwrap();
                verdicts.push((
                    node.clone(),
                    Verdict {
                        generation,
                        tag,
                        packet: parse_packet(&payload).unwrap(),
                    },
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    verdicts
}

#[test]
fn nflog_verdicts_name_the_deciding_rule_of_real_connections() {
    if !can_build_labs("nflog_verdicts_name_the_deciding_rule_of_real_connections") {
        return;
    }
    let spec_path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab/shop.yaml"
    ));
    let spec = LabSpec::load(&spec_path).unwrap();
    let lab = Lab::up(&spec, &spec_path, Prefix::unique()).unwrap();
    let mut sockets = BTreeMap::new();
    for (name, node) in &lab.nodes {
        let socket = in_namespace(node.namespace.name(), || {
            NflogSocket::open(NFLOG_GROUP, caracal_policy::DNS_SNAPLEN)
        })
        .unwrap()
        .unwrap();
        sockets.insert(name.clone(), socket);
    }
    let pod = |workload: &str| {
        lab.pods
            .iter()
            .find(|pod| pod.workload == workload)
            .unwrap()
    };
    let postgres = pod("postgres");
    let _listener = TcpListeners::start_in(&postgres.netns, &[5432]).unwrap();
    let target = SocketAddr::new(IpAddr::V4(postgres.address), 5432);
    let hit_of =
        |node: &str, verdict: &Verdict| lab.rulesets[node].tags[verdict.tag as usize].hit.clone();

    // Denied: prometheus is outside the namespaces postgres accepts.
    let prometheus = pod("prometheus");
    assert!(!tcp_connects(&prometheus.netns, target, Duration::from_millis(300)).unwrap());
    let verdicts = collect(&mut sockets, |seen| {
        seen.iter().any(|(node, verdict)| {
            node == &postgres.node && hit_of(node, verdict).kind == PolicyKind::EndOfTier
        })
    });
    let (node, denial) = verdicts
        .iter()
        .find(|(node, verdict)| node == &postgres.node && verdict.packet.destination == target.ip())
        .expect("the destination node logged the denial");
    let hit = hit_of(node, denial);
    assert_eq!(
        (hit.kind, hit.tier.as_str()),
        (PolicyKind::EndOfTier, "default")
    );
    assert_eq!(hit.trigger.unwrap().name, "default-deny");
    assert_eq!(denial.packet.source, IpAddr::V4(prometheus.address));
    assert_eq!(
        (denial.packet.protocol, denial.packet.destination_port),
        (6, 5432)
    );
    assert_eq!(denial.generation, 1);

    // Allowed: checkout may reach postgres; its node logs the egress pass and profile, the
    // destination node the allowing Kubernetes policy.
    let checkout = pod("checkout");
    assert!(tcp_connects(&checkout.netns, target, Duration::from_secs(2)).unwrap());
    let from_checkout = |verdicts: &[(String, Verdict)]| -> Vec<String> {
        verdicts
            .iter()
            .filter(|(_, verdict)| verdict.packet.source == IpAddr::V4(checkout.address))
            .map(|(node, verdict)| hit_of(node, verdict).to_string())
            .collect()
    };
    let verdicts = collect(&mut sockets, |seen| from_checkout(seen).len() >= 3);
    let hits = from_checkout(&verdicts);
    assert!(
        hits.contains(&"0|security|gnp:security.deny-crawlers|pass|1".to_string()),
        "{hits:?}"
    );
    assert!(
        hits.contains(&"0||pro:kns.shop|allow|0".to_string()),
        "{hits:?}"
    );
    assert!(
        hits.contains(&"0|default|knp:data/postgres-from-shop|allow|0".to_string()),
        "{hits:?}"
    );
    // Only the first packet of a connection is logged: one verdict per hit.
    assert_eq!(hits.len(), 3, "{hits:?}");
}

#[test]
fn conntrack_reports_service_translation_and_byte_counters() {
    use caracal_agent::{ConntrackSocket, EntryEvent};
    use caracal_lab::tcp_send;
    if !can_build_labs("conntrack_reports_service_translation_and_byte_counters") {
        return;
    }
    let spec_path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab/shop.yaml"
    ));
    let spec = LabSpec::load(&spec_path).unwrap();
    let lab = Lab::up(&spec, &spec_path, Prefix::unique()).unwrap();
    let checkout = lab
        .pods
        .iter()
        .find(|pod| pod.workload == "checkout")
        .unwrap();
    let node = &lab
        .nodes
        .iter()
        .find(|(name, _)| name == &checkout.node)
        .unwrap()
        .1;
    let mut events = in_namespace(node.namespace.name(), ConntrackSocket::events)
        .unwrap()
        .unwrap();
    let backends: Vec<IpAddr> = lab
        .pods
        .iter()
        .filter(|pod| pod.workload == "postgres")
        .map(|pod| IpAddr::V4(pod.address))
        .collect();
    let _listeners: Vec<TcpListeners> = lab
        .pods
        .iter()
        .filter(|pod| pod.workload == "postgres")
        .map(|pod| TcpListeners::start_in(&pod.netns, &[5432]).unwrap())
        .collect();
    let service = lab
        .services
        .iter()
        .find(|service| service.name == "postgres")
        .unwrap();
    let target = SocketAddr::new(IpAddr::V4(service.cluster_ip), 5432);
    const SENT: u64 = 200_000;
    assert!(
        tcp_send(
            &checkout.netns,
            target,
            SENT as usize,
            Duration::from_secs(2)
        )
        .unwrap(),
        "checkout reaches the postgres service"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut created = Vec::new();
    while Instant::now() < deadline && created.is_empty() {
        created.extend(events.receive().unwrap().into_iter().filter(|entry| {
            entry.event == EntryEvent::New && entry.original.destination == target.ip()
        }));
        std::thread::sleep(Duration::from_millis(10));
    }
    let new = created.first().expect("a NEW event for the connection");
    assert_eq!(new.original.source, IpAddr::V4(checkout.address));
    assert!(
        backends.contains(&new.reply.source),
        "the reply tuple names the real backend: {new:?}"
    );
    assert_eq!(new.reply.source_port, 5432);
    // Counters of the connection, read by a dump as the agent does every flush.
    let dumped = in_namespace(node.namespace.name(), ConntrackSocket::dump)
        .unwrap()
        .unwrap();
    let entry = dumped
        .iter()
        .find(|entry| entry.id == new.id)
        .expect("the connection in the dump");
    assert_eq!(entry.event, EntryEvent::Dump);
    let sent = entry.original_counters;
    let overhead = 52 * sent.packets + 200;
    assert!(
        sent.bytes >= SENT && sent.bytes <= SENT + overhead,
        "{sent:?} for {SENT} bytes of payload"
    );
    assert!(
        entry.reply_counters.packets > 0,
        "acknowledgements came back"
    );
}

#[test]
fn flows_from_real_traffic_carry_names_services_traces_and_counters() {
    use caracal_agent::{Assembler, AssemblyConfig, ConntrackSocket, ServiceAddress};
    use caracal_flow::{Action, EndpointType, Reporter, ServiceRef};
    use caracal_lab::tcp_send;
    use caracal_policy::{Evaluator, Inventory};
    if !can_build_labs("flows_from_real_traffic_carry_names_services_traces_and_counters") {
        return;
    }
    let spec_path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab/shop.yaml"
    ));
    let spec = LabSpec::load(&spec_path).unwrap();
    let lab = Lab::up(&spec, &spec_path, Prefix::unique()).unwrap();
    let services: Vec<ServiceAddress> = lab
        .services
        .iter()
        .flat_map(|service| {
            service.ports.iter().map(move |port| ServiceAddress {
                address: IpAddr::V4(service.cluster_ip),
                port: port.port,
                protocol: 6,
                service: ServiceRef {
                    name: service.name.clone(),
                    namespace: service.namespace.clone(),
                    port_name: port.name.clone(),
                    port: port.port,
                },
            })
        })
        .collect();
    // One agent core per node, with that node's sockets.
    struct NodeAgent {
        nflog: NflogSocket,
        events: ConntrackSocket,
        assembler: Assembler,
        netns: String,
    }
    let mut agents: BTreeMap<String, NodeAgent> = BTreeMap::new();
    for (name, node) in &lab.nodes {
        let netns = node.namespace.name().to_string();
        let nflog = in_namespace(&netns, || {
            NflogSocket::open(NFLOG_GROUP, caracal_policy::DNS_SNAPLEN)
        })
        .unwrap()
        .unwrap();
        let events = in_namespace(&netns, ConntrackSocket::events)
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
        agents.insert(
            name.clone(),
            NodeAgent {
                nflog,
                events,
                assembler,
                netns,
            },
        );
    }
    let pod = |workload: &str| {
        lab.pods
            .iter()
            .find(|pod| pod.workload == workload)
            .unwrap()
    };
    let mut listeners = Vec::new();
    for backend in lab.pods.iter().filter(|pod| pod.workload == "postgres") {
        listeners.push(TcpListeners::start_in(&backend.netns, &[5432]).unwrap());
    }
    listeners.push(TcpListeners::start_in(lab.externals[0].1.name(), &[443]).unwrap());
    let postgres_service = SocketAddr::new(
        IpAddr::V4(
            lab.services
                .iter()
                .find(|s| s.name == "postgres")
                .unwrap()
                .cluster_ip,
        ),
        5432,
    );
    const SENT: u64 = 50_000;
    assert!(tcp_send(
        &pod("checkout").netns,
        postgres_service,
        SENT as usize,
        Duration::from_secs(2)
    )
    .unwrap());
    assert!(!tcp_connects(
        &pod("prometheus").netns,
        SocketAddr::new(IpAddr::V4(pod("postgres").address), 5432),
        Duration::from_millis(300)
    )
    .unwrap());
    assert!(tcp_send(
        &pod("frontend").netns,
        SocketAddr::new("203.0.113.10".parse().unwrap(), 443),
        1000,
        Duration::from_secs(2)
    )
    .unwrap());
    // Allowed today, denied once the staged policy is enforced: traffic flows, pending says deny.
    assert!(tcp_send(
        &pod("frontend").netns,
        postgres_service,
        500,
        Duration::from_secs(2)
    )
    .unwrap());
    // Feed everything the kernel said, then a dump for the counters, then flush.
    let mut flows = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        for agent in agents.values_mut() {
            for (prefix, payload) in agent.nflog.receive().unwrap() {
                let (generation, tag) = parse_prefix(&prefix).unwrap();
                agent.assembler.on_verdict(
                    &Verdict {
                        generation,
                        tag,
                        packet: parse_packet(&payload).unwrap(),
                    },
                    100,
                );
            }
            for entry in agent.events.receive().unwrap() {
                agent.assembler.on_conntrack(&entry, 100);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (node, agent) in agents.iter_mut() {
        for entry in in_namespace(&agent.netns, ConntrackSocket::dump)
            .unwrap()
            .unwrap()
        {
            if std::env::var_os("CARACAL_DEBUG_TEST").is_some() {
                eprintln!(
                    "{node} dump {} -> {}:{} reply {} id {}",
                    entry.original.source,
                    entry.original.destination,
                    entry.original.destination_port,
                    entry.reply.source,
                    entry.id
                );
            }
            agent.assembler.on_conntrack(&entry, 100);
        }
        if std::env::var_os("CARACAL_DEBUG_TEST").is_some() {
            eprintln!("{node} stats {:?}", agent.assembler.stats());
        }
        for flow in agent.assembler.flush(90, 105) {
            flows.push((node.clone(), flow));
        }
        assert_eq!(agent.assembler.stats().unknown_tags, 0);
    }
    let find = |reporter: Reporter, source: &str, dest: &str| {
        flows
            .iter()
            .map(|(_, flow)| flow)
            .find(|flow| {
                flow.key.reporter == reporter
                    && flow.key.source.name.starts_with(source)
                    && flow.key.dest.name.starts_with(dest)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {reporter:?} flow {source} -> {dest} in {:#?}",
                    flows
                        .iter()
                        .map(|(n, f)| (n, &f.key.source.name, &f.key.dest.name, f.key.reporter))
                        .collect::<Vec<_>>()
                )
            })
    };
    // checkout -> postgres through the service, from both sides.
    let source_side = find(Reporter::Src, "checkout-", "postgres-");
    assert!(
        source_side.key.source.name.ends_with('*') && source_side.key.dest.name.ends_with('*'),
        "allowed flows are at level 2"
    );
    assert_eq!(
        source_side.key.service,
        ServiceRef {
            name: "postgres".into(),
            namespace: "data".into(),
            port_name: "postgres".into(),
            port: 5432
        }
    );
    assert_eq!(source_side.key.dest_port, 5432);
    let texts: Vec<String> = source_side
        .key
        .policies
        .enforced
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        texts,
        [
            "0|security|gnp:security.deny-crawlers|pass|1",
            "1||pro:kns.shop|allow|0"
        ]
    );
    assert!(
        source_side.counters.bytes_out >= SENT
            && source_side.counters.bytes_out <= SENT * 105 / 100 + 2000,
        "{:?}",
        source_side.counters
    );
    assert_eq!(source_side.counters.connections_started, 1);
    assert!(source_side
        .source_labels
        .as_slice()
        .contains(&"app=checkout".to_string()));
    let dest_side = find(Reporter::Dst, "checkout-", "postgres-");
    let texts: Vec<String> = dest_side
        .key
        .policies
        .enforced
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(texts, ["0|default|knp:data/postgres-from-shop|allow|0"]);
    assert!(dest_side
        .key
        .policies
        .pending
        .iter()
        .any(|hit| hit.name == "postgres-from-shop"
            && hit.kind == PolicyKind::StagedKubernetesNetworkPolicy));
    assert!(
        dest_side.counters.bytes_in >= SENT,
        "{:?}",
        dest_side.counters
    );
    let staged = find(Reporter::Dst, "frontend-", "postgres-");
    assert_eq!(staged.key.action, Action::Allow);
    let last_pending = staged.key.policies.pending.last().unwrap();
    assert_eq!(
        (last_pending.kind, last_pending.action),
        (PolicyKind::EndOfTier, caracal_flow::HitAction::Deny),
        "{:?}",
        staged.key.policies
    );
    assert_eq!(
        last_pending.trigger.as_ref().unwrap().kind,
        PolicyKind::KubernetesNetworkPolicy,
        "default-deny sorts first in the tier"
    );
    // prometheus -> postgres: denied at the destination, named at level 1 (pod names).
    let denied = find(Reporter::Dst, "prometheus-", "postgres-");
    assert_eq!(denied.key.action, Action::Deny);
    assert!(
        !denied.key.source.name.ends_with('*'),
        "denied flows keep pod names"
    );
    assert_eq!(denied.key.policies.enforced[0].kind, PolicyKind::EndOfTier);
    assert_eq!(
        denied.key.policies.enforced[0]
            .trigger
            .as_ref()
            .unwrap()
            .name,
        "default-deny"
    );
    assert!(denied.counters.packets_in >= 1);
    // frontend -> the payments API outside: `pub`, with its address kept.
    let external = find(Reporter::Src, "frontend-", "pub");
    assert_eq!(external.key.dest.kind, EndpointType::Network);
    assert_eq!(
        external.dest_ips.members(),
        ["203.0.113.10".parse::<IpAddr>().unwrap()]
    );
    drop(listeners);
}
