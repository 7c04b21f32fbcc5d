use std::collections::BTreeMap;

use caracal_flow::filter::parse;
use caracal_flow::*;
use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_700_000_000;

fn flow(source: &str, dest: &str, port: u16, start: i64, bytes: u64) -> Flow {
    Flow {
        key: FlowKey {
            source: Endpoint {
                kind: EndpointType::Workload,
                namespace: "shop".into(),
                name: source.into(),
            },
            dest: Endpoint {
                kind: EndpointType::Workload,
                namespace: "data".into(),
                name: dest.into(),
            },
            dest_port: port,
            service: ServiceRef::default(),
            proto: "tcp".into(),
            reporter: Reporter::Src,
            action: Action::Allow,
            policies: PolicyTrace {
                enforced: vec!["0|default|knp:data/allow-shop|allow|0".parse().unwrap()],
                pending: vec![],
            },
        },
        start_time: start,
        end_time: start + 15,
        source_labels: Labels::new(vec![format!("app={source}"), "team=web".into()]),
        dest_labels: Labels::new(vec![format!("app={dest}")]),
        counters: Counters {
            bytes_out: bytes,
            packets_out: 1,
            connections_started: 1,
            ..Counters::default()
        },
        source_ips: IpSet::from_members(["10.0.0.1".parse().unwrap()]),
        dest_ips: IpSet::default(),
        dest_domains: DomainSet::default(),
    }
}

fn all(ring: &BucketRing) -> ListQuery {
    ListQuery {
        start: ring.oldest_bucket(),
        end: NOW + 30,
        filter: Expr::All,
        sort: SortOrder::Time,
        page: 0,
        page_size: 0,
        interval: 0,
    }
}

use caracal_flow::filter::Expr;

#[test]
fn updates_of_one_key_merge_within_and_across_buckets() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    ring.ingest(&flow("cart-1", "redis-0", 6379, NOW - 20, 100), None, NOW)
        .unwrap();
    ring.ingest(&flow("cart-1", "redis-0", 6379, NOW - 19, 50), None, NOW)
        .unwrap();
    let mut other_labels = flow("cart-1", "redis-0", 6379, NOW - 5, 7);
    other_labels.source_labels = Labels::new(vec!["app=cart-1".into()]);
    ring.ingest(&other_labels, None, NOW).unwrap();
    assert_eq!(ring.key_count(), 1);
    assert_eq!(ring.window_count(), 2);
    let result = ring.list(&all(&ring));
    assert_eq!(result.total_results, 1);
    let (_, merged) = &result.flows[0];
    assert_eq!(merged.counters.bytes_out, 157);
    assert_eq!(merged.start_time, bucket_start(NOW - 20));
    assert_eq!(merged.end_time, bucket_start(NOW - 5) + 15);
    assert_eq!(
        merged.source_labels.as_slice(),
        ["app=cart-1"],
        "labels intersect"
    );
}

#[test]
fn the_window_accepts_one_hour_back_and_one_bucket_ahead() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    let current = bucket_start(NOW);
    assert_eq!(
        ring.ingest(&flow("a", "b", 1, current - 240 * 15, 1), None, NOW),
        Ok(Ingested::Merged)
    );
    assert_eq!(
        ring.ingest(&flow("a", "b", 1, current - 240 * 15 - 1, 1), None, NOW),
        Err(Reject::TooOld)
    );
    assert_eq!(
        ring.ingest(&flow("a", "b", 1, current + 15, 1), None, NOW),
        Ok(Ingested::Merged)
    );
    assert_eq!(
        ring.ingest(&flow("a", "b", 1, current + 30, 1), None, NOW),
        Err(Reject::TooNew)
    );
    assert_eq!(ring.stats().rejected_too_old, 1);
    assert_eq!(ring.stats().rejected_too_new, 1);
}

#[test]
fn expiry_frees_keys_and_interned_values() {
    let mut ring = BucketRing::new(
        RingConfig {
            hot_buckets: 4,
            max_page_size: 100,
        },
        NOW,
    )
    .unwrap();
    for index in 0..50 {
        ring.ingest(
            &flow(&format!("cart-{index}"), "redis-0", 6379, NOW, 1),
            None,
            NOW,
        )
        .unwrap();
    }
    assert_eq!(ring.key_count(), 50);
    let before = ring.memory_bytes();
    ring.advance(NOW + 5 * 15 + 15);
    assert_eq!(ring.key_count(), 0);
    assert_eq!(ring.window_count(), 0);
    assert_eq!(ring.strings.len(), 0);
    assert_eq!(ring.traces.len(), 0);
    assert_eq!(ring.label_sets.len(), 0);
    assert!(ring.memory_bytes() <= before);
    // A key that comes back gets a new id.
    ring.ingest(
        &flow("cart-0", "redis-0", 6379, NOW + 90, 1),
        None,
        NOW + 90,
    )
    .unwrap();
    let id = ring
        .list(&ListQuery {
            start: NOW,
            end: NOW + 200,
            ..all(&ring)
        })
        .flows[0]
        .0;
    assert_ne!(id >> 32, 0, "generation advanced on reuse");
}

#[test]
fn replays_from_the_same_peer_are_not_counted_twice() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    let update = flow("cart-1", "redis-0", 6379, NOW - 20, 100);
    assert_eq!(ring.ingest(&update, Some(7), NOW), Ok(Ingested::Merged));
    assert_eq!(ring.ingest(&update, Some(7), NOW), Ok(Ingested::Duplicate));
    assert_eq!(
        ring.ingest(&update, Some(8), NOW),
        Ok(Ingested::Merged),
        "another peer is another report"
    );
    assert_eq!(ring.list(&all(&ring)).flows[0].1.counters.bytes_out, 200);
}

#[test]
fn list_filters_sorts_and_pages() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    for (index, name) in ["b-1", "a-1", "c-1", "d-1"].iter().enumerate() {
        ring.ingest(
            &flow(
                name,
                "redis-0",
                6379 + index as u16,
                NOW - 60 + 15 * index as i64,
                10 * index as u64,
            ),
            None,
            NOW,
        )
        .unwrap();
    }
    let newest_first: Vec<String> = ring
        .list(&all(&ring))
        .flows
        .into_iter()
        .map(|(_, f)| f.key.source.name)
        .collect();
    assert_eq!(newest_first, ["d-1", "c-1", "a-1", "b-1"]);
    let by_name = ListQuery {
        sort: SortOrder::SourceName,
        page: 1,
        page_size: 2,
        ..all(&ring)
    };
    let page = ring.list(&by_name);
    assert_eq!(page.total_results, 4);
    assert_eq!(page.total_pages, 2);
    let names: Vec<String> = page
        .flows
        .into_iter()
        .map(|(_, f)| f.key.source.name)
        .collect();
    assert_eq!(names, ["c-1", "d-1"]);
    let filtered = ListQuery {
        filter: parse("dest_port >= 6381 AND bytes_out > 25").unwrap(),
        ..all(&ring)
    };
    let names: Vec<String> = ring
        .list(&filtered)
        .flows
        .into_iter()
        .map(|(_, f)| f.key.source.name)
        .collect();
    assert_eq!(names, ["d-1"]);
    let labelled = ListQuery {
        filter: parse("source_label app = a-1").unwrap(),
        ..all(&ring)
    };
    assert_eq!(ring.list(&labelled).total_results, 1);
}

#[test]
fn hints_are_distinct_sorted_and_follow_the_filter() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    ring.ingest(&flow("b-1", "redis-0", 1, NOW, 1), None, NOW)
        .unwrap();
    ring.ingest(&flow("a-1", "redis-0", 2, NOW, 1), None, NOW)
        .unwrap();
    ring.ingest(&flow("a-1", "pg-0", 3, NOW, 1), None, NOW)
        .unwrap();
    let HintPage { total, values, .. } =
        ring.hints(HintField::SourceName, 0, NOW + 30, &Expr::All, 0, 0);
    assert_eq!(
        (total, values),
        (2, vec!["a-1".to_string(), "b-1".to_string()])
    );
    let HintPage { values, .. } = ring.hints(
        HintField::DestName,
        0,
        NOW + 30,
        &parse("source_name = a-1").unwrap(),
        0,
        0,
    );
    assert_eq!(values, ["pg-0", "redis-0"]);
    let HintPage { values, .. } = ring.hints(HintField::PolicyName, 0, NOW + 30, &Expr::All, 0, 0);
    assert_eq!(values, ["allow-shop"]);
    let HintPage { values, .. } = ring.hints(HintField::PolicyKind, 0, NOW + 30, &Expr::All, 0, 0);
    assert_eq!(values, ["NetworkPolicy"]);
}

#[test]
fn statistics_split_by_verdict_and_direction() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    ring.ingest(&flow("a-1", "redis-0", 1, NOW - 15, 100), None, NOW)
        .unwrap();
    ring.ingest(&flow("a-1", "redis-0", 1, NOW, 50), None, NOW)
        .unwrap();
    let query = StatisticsQuery {
        start: 0,
        end: NOW + 30,
        kind: StatisticType::Bytes,
        group: StatisticsGroup::Policy,
        policy: vec![],
        time_series: true,
    };
    let rows = ring.statistics(&query);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].policy.name, "allow-shop");
    assert_eq!(rows[0].direction, "egress");
    assert_eq!(rows[0].allowed_out, [100, 50]);
    assert_eq!(rows[0].x.len(), 2);
}

#[test]
fn the_graph_groups_by_workload_and_namespace() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    ring.ingest(&flow("cart-7d9-abcde", "redis-0", 6379, NOW, 10), None, NOW)
        .unwrap();
    ring.ingest(&flow("cart-7d9-fghij", "redis-0", 6379, NOW, 5), None, NOW)
        .unwrap();
    let graph = ring.graph(0, NOW + 30, &Expr::All, GraphGroup::Workload, 100);
    let ids: Vec<&str> = graph.nodes.iter().map(|node| node.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ns:data",
            "ns:shop",
            "wl:data/redis-*",
            "wl:shop/cart-7d9-*"
        ]
    );
    assert_eq!(graph.edges.len(), 1);
    assert_eq!(graph.edges[0].bytes, 15);
    let graph = ring.graph(0, NOW + 30, &Expr::All, GraphGroup::Namespace, 100);
    assert_eq!(graph.nodes.len(), 2);
}

proptest! {
    /// The ring answers List exactly like a naive group-by over the same updates.
    #[test]
    fn list_equals_a_naive_group_by(updates in proptest::collection::vec((0usize..6, 0usize..3, 0i64..20, 1u64..1000), 1..80)) {
        let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
        type Expected = (u64, i64, i64, Option<Labels>, Vec<std::net::IpAddr>);
        let mut expected: BTreeMap<(String, u16), Expected> = BTreeMap::new();
        for (source, dest, bucket, bytes) in updates {
            let start = bucket_start(NOW) - bucket * 15 + (bytes as i64 % 15);
            let mut update = flow(&format!("src-{source}"), "dst", dest as u16, start, bytes);
            // Labels and addresses vary between updates of one key.
            if bytes.is_multiple_of(3) {
                update.source_labels = Labels::new(vec!["team=web".into(), format!("v={}", bytes % 2)]);
                update.source_ips = IpSet::from_members([format!("10.0.0.{}", bytes % 7).parse().unwrap()]);
            }
            ring.ingest(&update, None, NOW).unwrap();
            let entry = expected.entry((update.key.source.name.clone(), dest as u16)).or_insert((0, i64::MAX, i64::MIN, None, vec![]));
            entry.0 += bytes;
            entry.1 = entry.1.min(bucket_start(start));
            entry.2 = entry.2.max(bucket_start(start) + 15);
            entry.3 = Some(match &entry.3 {
                Some(labels) => labels.intersect(&update.source_labels),
                None => update.source_labels.clone(),
            });
            entry.4.extend(update.source_ips.members().iter().copied());
            entry.4.sort();
            entry.4.dedup();
        }
        let got: BTreeMap<(String, u16), Expected> = ring
            .list(&all(&ring))
            .flows
            .into_iter()
            .map(|(_, f)| {
                let ips = f.source_ips.members().to_vec();
                ((f.key.source.name, f.key.dest_port), (f.counters.bytes_out, f.start_time, f.end_time, Some(f.source_labels), ips))
            })
            .collect();
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    /// Start and end of a key over a range are its first and last held bucket, also when the
    /// range wraps around the end of the ring.
    #[test]
    fn bounds_are_the_first_and_last_bucket_held(buckets in proptest::collection::btree_set(0i64..240, 1..20), shift in 0i64..600) {
        let now = NOW + shift * 15;
        let mut ring = BucketRing::new(RingConfig::default(), now).unwrap();
        for bucket in &buckets {
            ring.ingest(&flow("a", "b", 1, bucket_start(now) - bucket * 15, 1), None, now).unwrap();
        }
        let listed = ring.list(&ListQuery { start: 0, end: now + 30, ..all(&ring) });
        let flow = &listed.flows[0].1;
        prop_assert_eq!(flow.start_time, bucket_start(now) - buckets.iter().max().unwrap() * 15);
        prop_assert_eq!(flow.end_time, bucket_start(now) - buckets.iter().min().unwrap() * 15 + 15);
    }
}

#[test]
fn large_pages_aggregate_sequentially_with_the_same_result_as_per_key_lookups() {
    let mut ring = BucketRing::new(RingConfig::default(), NOW).unwrap();
    for key in 0..400u64 {
        for bucket in 0..(1 + key % 5) as i64 {
            let mut update = flow(
                &format!("src-{key}"),
                "dst",
                (key % 7) as u16,
                bucket_start(NOW) - bucket * 15,
                key + 1,
            );
            if (key + bucket as u64).is_multiple_of(3) {
                update.source_labels = Labels::new(vec!["team=web".into()]);
                update.dest_ips =
                    IpSet::from_members([format!("10.1.0.{}", bucket).parse().unwrap()]);
            }
            ring.ingest(&update, None, NOW).unwrap();
        }
    }
    let everything = ring.list(&all(&ring));
    assert_eq!(everything.flows.len(), 400);
    let mut paged = Vec::new();
    for page in 0..4 {
        paged.extend(
            ring.list(&ListQuery {
                page,
                page_size: 100,
                ..all(&ring)
            })
            .flows,
        );
    }
    assert_eq!(everything.flows, paged);
}

#[test]
fn cached_sets_stay_valid_across_expiry_and_reuse() {
    let mut ring = BucketRing::new(
        RingConfig {
            hot_buckets: 2,
            max_page_size: 100,
        },
        NOW,
    )
    .unwrap();
    let mut now = NOW;
    for round in 0..12i64 {
        // Alternate two label sets so freed ids get reused by other contents.
        let mut update = flow("a", "b", 1, now, 1);
        update.source_labels = Labels::new(vec![format!("round={}", round % 3)]);
        ring.ingest(&update, None, now).unwrap();
        let mut other = flow("c", "d", 2, now, 1);
        other.source_labels = Labels::new(vec![format!("other={round}")]);
        ring.ingest(&other, None, now).unwrap();
        let listed = ring.list(&ListQuery {
            start: bucket_start(now),
            end: now + 15,
            ..all(&ring)
        });
        let a = listed
            .flows
            .iter()
            .find(|(_, f)| f.key.source.name == "a")
            .unwrap();
        assert_eq!(
            a.1.source_labels.as_slice(),
            [format!("round={}", round % 3)]
        );
        now += 15 * (1 + round % 3);
    }
}
