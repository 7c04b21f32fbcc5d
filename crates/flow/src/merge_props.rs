//! Property tests of the merge rules: merging is associative and commutative, and merging in
//! any grouping equals one pass over all updates.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use crate::model::*;

fn key() -> FlowKey {
    FlowKey {
        source: Endpoint {
            kind: EndpointType::Workload,
            namespace: "shop".into(),
            name: "cart-*".into(),
        },
        dest: Endpoint {
            kind: EndpointType::Workload,
            namespace: "shop".into(),
            name: "redis-*".into(),
        },
        dest_port: 6379,
        service: ServiceRef::default(),
        proto: "tcp".into(),
        reporter: Reporter::Src,
        action: Action::Allow,
        policies: PolicyTrace::default(),
    }
}

fn update() -> impl Strategy<Value = Flow> {
    let labels = proptest::collection::vec(
        prop_oneof![Just("app=cart"), Just("tier=api"), Just("v=1"), Just("v=2")],
        0..4,
    );
    let ips = proptest::collection::vec(0u32..160, 0..70);
    (
        0i64..1000,
        0i64..100,
        labels.clone(),
        labels,
        ips.clone(),
        ips,
        any::<[u32; 7]>(),
        proptest::collection::vec("[a-c]{1,2}", 0..4),
    )
        .prop_map(
            |(
                start,
                width,
                source_labels,
                dest_labels,
                source_ips,
                dest_ips,
                counters,
                domains,
            )| {
                let to_ips = |raw: Vec<u32>| {
                    IpSet::from_members(
                        raw.into_iter()
                            .map(|n| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))),
                    )
                };
                Flow {
                    key: key(),
                    start_time: start,
                    end_time: start + width,
                    source_labels: Labels::new(
                        source_labels.into_iter().map(String::from).collect(),
                    ),
                    dest_labels: Labels::new(dest_labels.into_iter().map(String::from).collect()),
                    counters: Counters {
                        packets_in: counters[0].into(),
                        packets_out: counters[1].into(),
                        bytes_in: counters[2].into(),
                        bytes_out: counters[3].into(),
                        connections_started: counters[4].into(),
                        connections_completed: counters[5].into(),
                        connections_live: counters[6].into(),
                    },
                    source_ips: to_ips(source_ips),
                    dest_ips: to_ips(dest_ips),
                    dest_domains: DomainSet::from_members(domains),
                }
            },
        )
}

fn merged(mut first: Flow, rest: &[&Flow]) -> Flow {
    for other in rest {
        first.merge(other);
    }
    first
}

proptest! {
    #[test]
    fn merge_is_commutative(a in update(), b in update()) {
        prop_assert_eq!(merged(a.clone(), &[&b]), merged(b, &[&a]));
    }

    #[test]
    fn merge_is_associative(a in update(), b in update(), c in update()) {
        let left = merged(merged(a.clone(), &[&b]), &[&c]);
        let right = merged(a, &[&merged(b, &[&c])]);
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merging_in_halves_equals_one_pass(updates in proptest::collection::vec(update(), 2..12), split in 1usize..11) {
        let split = split.min(updates.len() - 1);
        let all: Vec<&Flow> = updates[1..].iter().collect();
        let one_pass = merged(updates[0].clone(), &all);
        let first_half: Vec<&Flow> = updates[1..split].iter().collect();
        let second_half: Vec<&Flow> = updates[split + 1..].iter().collect();
        let halves = merged(merged(updates[0].clone(), &first_half), &[&merged(updates[split].clone(), &second_half)]);
        prop_assert_eq!(one_pass, halves);
    }

    #[test]
    fn bounded_sets_keep_the_smallest_members(raw in proptest::collection::vec(0u32..500, 0..300)) {
        let set = IpSet::from_members(raw.iter().map(|n| IpAddr::V4(Ipv4Addr::from(*n))));
        let mut distinct: Vec<u32> = raw.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(set.truncated(), distinct.len() > crate::IPS_BOUND);
        let expected: Vec<IpAddr> = distinct.iter().take(crate::IPS_BOUND).map(|n| IpAddr::V4(Ipv4Addr::from(*n))).collect();
        prop_assert_eq!(set.members(), &expected[..]);
    }
}
