//! The agent's collectors against real packets in a lab (root only; skipped with a message
//! elsewhere, failing in CI).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use caracal_agent::{parse_packet, parse_prefix, NflogSocket, Verdict};
use caracal_flow::PolicyKind;
use caracal_lab::{in_namespace, tcp_connects, Lab, LabSpec, Prefix, TcpListeners, NFLOG_GROUP};

fn can_build_labs(test: &str) -> bool {
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
            NflogSocket::open(NFLOG_GROUP, 128)
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
