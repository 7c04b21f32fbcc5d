//! Agent throughput (bench/RESULTS.md): kernel events per second through parse, enrich and
//! aggregate on one core. The stream is shaped like the shop lab's: per connection, the NFLOG
//! packet of each verdict (raw bytes, parsed here), a conntrack NEW, two dumps and a DESTROY,
//! over 12 pods, services and externals; every 15 000 events a flush folds them into flows.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use caracal_agent::{
    parse_packet, parse_prefix, Assembler, AssemblyConfig, ConntrackEntry, DirectionCounters,
    EntryEvent, FiveTuple, Verdict,
};
use caracal_policy::{load_str, render, Evaluator, Inventory, LocalEndpoint, Manifests};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

enum Event {
    Logged(String, Vec<u8>),
    Tracked(ConntrackEntry),
}

fn tcp_packet(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    source_port: u16,
    destination_port: u16,
) -> Vec<u8> {
    let mut packet = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0];
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&destination.octets());
    packet.extend_from_slice(&source_port.to_be_bytes());
    packet.extend_from_slice(&destination_port.to_be_bytes());
    packet.extend_from_slice(&[0; 16]);
    packet
}

fn setup() -> (Assembler, Vec<Event>) {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/lab/");
    let mut manifests = Manifests::default();
    for file in [
        "shop-policies/00-tiers.yaml",
        "shop-policies/10-security.yaml",
        "shop-policies/20-data.yaml",
        "shop-policies/30-staged.yaml",
    ] {
        load_str(
            file,
            &std::fs::read_to_string(format!("{base}{file}")).unwrap(),
            &mut manifests,
        )
        .unwrap();
    }
    let mut inventory_text = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: data, labels: {team: data}}\n");
    let apps = [
        ("shop", "frontend"),
        ("shop", "cart"),
        ("shop", "checkout"),
        ("data", "postgres"),
        ("data", "redis"),
    ];
    for (index, (namespace, app)) in apps.iter().enumerate() {
        for replica in 0..2 {
            inventory_text.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {app}-5d8f7c9b4-{replica}x, generateName: {app}-5d8f7c9b4-, namespace: {namespace}, labels: {{app: {app}}}}}\nstatus: {{podIP: 10.244.0.{}}}\n",
                index * 2 + replica + 2
            ));
        }
    }
    load_str("inventory.yaml", &inventory_text, &mut manifests).unwrap();
    let inventory = Inventory::new(&manifests);
    let locals: Vec<LocalEndpoint> = (2..12u8)
        .map(|host| {
            let address = IpAddr::V4(Ipv4Addr::new(10, 244, 0, host));
            LocalEndpoint {
                workload: inventory.endpoint(address).workload.unwrap(),
                address,
                interface: format!("h{host}"),
            }
        })
        .collect();
    let ruleset = render(&manifests.policies, &inventory, &locals, 1, 42).unwrap();
    let mut assembler = Assembler::new(
        AssemblyConfig::default(),
        Inventory::new(&manifests),
        Evaluator::new(&manifests.policies),
        locals.iter().map(|l| l.address).collect(),
        Vec::new(),
    );
    // Prefixes for the verdicts a connection from pod a to pod b would log: take the tags of
    // their chains in rule order (the pass/profile/allow path).
    assembler.set_ruleset(1, ruleset.tags.clone());
    let mut events = Vec::new();
    for round in 0..3000u32 {
        let id = round + 1;
        let (a, b) = (
            2 + (round % 10) as u8,
            2 + ((round / 10 + 1 + round % 10) % 10) as u8,
        );
        let (source, destination) = (Ipv4Addr::new(10, 244, 0, a), Ipv4Addr::new(10, 244, 0, b));
        let port = [8080u16, 5432, 6379][round as usize % 3];
        let source_port = 30_000 + (round % 30_000) as u16;
        let packet = tcp_packet(source, destination, source_port, port);
        let tags: Vec<u32> = ruleset
            .tags
            .iter()
            .filter(|tag| tag.hit.action != caracal_flow::HitAction::Deny)
            .filter(|tag| {
                tag.endpoint.ends_with(&format!("-{}x", (a - 2) % 2))
                    || tag.endpoint.ends_with(&format!("-{}x", (b - 2) % 2))
            })
            .map(|tag| tag.id)
            .take(3)
            .collect();
        for tag in tags {
            events.push(Event::Logged(format!("caracal:1:{tag}"), packet.clone()));
        }
        let tuple = FiveTuple {
            protocol: 6,
            source: source.into(),
            destination: destination.into(),
            source_port,
            destination_port: port,
        };
        let reply = FiveTuple {
            source: destination.into(),
            destination: source.into(),
            source_port: port,
            destination_port: source_port,
            ..tuple
        };
        for (event, bytes) in [
            (EntryEvent::New, 0u64),
            (EntryEvent::Dump, 1500),
            (EntryEvent::Dump, 3000),
            (EntryEvent::Destroy, 3200),
        ] {
            events.push(Event::Tracked(ConntrackEntry {
                event,
                id,
                original: tuple,
                reply,
                original_counters: DirectionCounters {
                    packets: bytes / 500,
                    bytes,
                },
                reply_counters: DirectionCounters {
                    packets: bytes / 700,
                    bytes: bytes * 3,
                },
            }));
        }
    }
    (assembler, events)
}

fn throughput(c: &mut Criterion) {
    let (mut assembler, events) = setup();
    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    group.bench_function("parse_enrich_aggregate", |b| {
        b.iter(|| {
            for (index, event) in events.iter().enumerate() {
                match event {
                    Event::Logged(prefix, payload) => {
                        let (generation, tag) = parse_prefix(prefix).unwrap();
                        let packet = parse_packet(payload).unwrap();
                        assembler.on_verdict(
                            &Verdict {
                                generation,
                                tag,
                                packet,
                            },
                            100,
                        );
                    }
                    Event::Tracked(entry) => assembler.on_conntrack(entry, 0),
                }
                if index % 15_000 == 14_999 {
                    black_box(assembler.flush(90, 105));
                }
            }
            black_box(assembler.flush(90, 105))
        })
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
