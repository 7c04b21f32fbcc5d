use proptest::prelude::*;

use super::*;
use crate::model::*;

fn sample_flow() -> Flow {
    Flow {
        key: FlowKey {
            source: Endpoint {
                kind: EndpointType::Workload,
                namespace: "shop".into(),
                name: "frontend-7d9c8f6b5-*".into(),
            },
            dest: Endpoint {
                kind: EndpointType::Network,
                namespace: "-".into(),
                name: "pub".into(),
            },
            dest_port: 443,
            service: ServiceRef::default(),
            proto: "tcp".into(),
            reporter: Reporter::Src,
            action: Action::Deny,
            policies: PolicyTrace {
                enforced: vec!["0|security|gnp:block-egress|deny|1".parse().unwrap()],
                pending: vec!["0|security|sgnp:staged-allow|allow|0".parse().unwrap()],
            },
        },
        start_time: 15,
        end_time: 30,
        source_labels: Labels::new(vec!["app=frontend".into(), "tier=web".into()]),
        dest_labels: Labels::default(),
        counters: Counters {
            bytes_out: 1200,
            packets_out: 3,
            connections_started: 1,
            ..Counters::default()
        },
        source_ips: IpSet::from_members(["10.0.0.7".parse().unwrap()]),
        dest_ips: IpSet::from_members(["203.0.113.9".parse().unwrap()]),
        dest_domains: DomainSet::from_members(["api.example.com".to_string()]),
    }
}

fn matches(filter: &str) -> bool {
    parse(filter)
        .unwrap_or_else(|error| panic!("{filter}: {error}"))
        .matches(&sample_flow())
}

#[test]
fn filters_match_as_documented() {
    assert!(matches(""));
    assert!(matches("source_namespace = shop AND action = deny AND dest_port IN (80, 443) AND NOT dest_name ~ \"test\""));
    assert!(matches(
        "source_label app = frontend AND has(source_label tier) AND NOT has(dest_label tier)"
    ));
    assert!(matches(
        "dest_ip IN (203.0.113.0/24) AND source_ip = 10.0.0.7"
    ));
    assert!(matches("dest_ip = 203.0.113.0/24"));
    assert!(!matches("dest_ip = 198.51.100.0/24"));
    assert!(matches(
        "policy.name = block-egress AND policy.tier = security AND pending_action = allow"
    ));
    assert!(matches(
        "enforced.action = deny AND NOT enforced.action = allow AND pending.kind = sgnp"
    ));
    assert!(matches(
        "bytes_out > 1000 AND bytes_out <= 1200 AND packets_in < 1"
    ));
    assert!(matches("proto = TCP AND protocol != udp"));
    assert!(matches(
        "dest_name = \"PUBLIC NETWORK\" AND dest_namespace = Global"
    ));
    assert!(matches("dest_domain = *.example.com AND domain ~ api"));
    assert!(matches(
        "(action = allow OR reporter = src) AND source_type = wep"
    ));
    assert!(!matches("action = allow OR reporter = dst"));
    assert!(matches("dest_port NOT IN (80, 8080)"));
    assert!(!matches("source_label app != frontend"));
    assert!(matches(
        "policy(name = block-egress AND tier = security AND action = deny)"
    ));
    assert!(!matches("policy(name = block-egress AND action = allow)"));
    assert!(matches("pending(kind = sgnp AND action IN (allow, pass))"));
    let text = "policy(name = a AND tier ~ sec) AND NOT enforced(action = deny)";
    assert_eq!(parse(text).unwrap().to_string(), text);
}

#[test]
fn errors_name_the_column_and_what_was_expected() {
    let cases = [
        ("dest_nme = x", 1, "unknown field `dest_nme`"),
        ("action = maybe", 10, "unknown action `maybe`"),
        (
            "dest_port = http",
            13,
            "`dest_port` takes a whole number, found `http`",
        ),
        ("dest_port = 70000", 13, "is a port, 0 to 65535"),
        (
            "source_name < 3",
            13,
            "`<` needs a numeric field; `source_name` is text",
        ),
        ("dest_ip = 300.1.1.1", 11, "takes an address or CIDR"),
        (
            "action = deny AND",
            18,
            "expected a field name, found end of filter",
        ),
        ("(action = deny", 15, "expected `)`"),
        ("source_name = \"open", 15, "unterminated string"),
        (
            "action = deny dest_port = 1",
            15,
            "expected AND, OR or the end",
        ),
        (
            "dest_port IN (1 2)",
            17,
            "expected `,` or `)` in the IN list",
        ),
        ("source_name = and", 15, "quote it to mean the text"),
        ("has(label x)", 5, "expected `source_label` or `dest_label`"),
        ("a ! b", 3, "`!` must be followed by `=` or `~`"),
    ];
    for (text, column, needle) in cases {
        let error = parse(text).expect_err(text);
        assert!(error.message.contains(needle), "{text}: {error}");
        assert_eq!(error.column, column, "{text}: {error}");
    }
}

#[test]
fn key_only_filters_are_recognised() {
    assert!(
        parse("source_namespace = a AND policy.name = b AND dest_port > 3")
            .unwrap()
            .is_key_only()
    );
    assert!(!parse("source_namespace = a AND bytes_in > 3")
        .unwrap()
        .is_key_only());
    assert!(!parse("has(source_label app)").unwrap().is_key_only());
}

fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}",
        "[ -~]{0,6}",
        Just("and".to_string()),
        Just("*.example.com".to_string()),
    ]
}

fn comparison() -> impl Strategy<Value = Expr> {
    let text_field = prop_oneof![
        Just(TextField::SourceNamespace),
        Just(TextField::SourceName),
        Just(TextField::DestName),
        Just(TextField::DestServiceName),
    ];
    let text_op = prop_oneof![
        Just(Op::Eq),
        Just(Op::Ne),
        Just(Op::Contains),
        Just(Op::NotContains)
    ];
    let number_op = prop_oneof![
        Just(Op::Eq),
        Just(Op::Ne),
        Just(Op::Lt),
        Just(Op::Le),
        Just(Op::Gt),
        Just(Op::Ge)
    ];
    let side = prop_oneof![Just(Side::Source), Just(Side::Dest)];
    prop_oneof![
        (text_field, text_op, text_value()).prop_map(|(field, op, value)| Expr::Compare(
            Comparison {
                field: Field::Text(field),
                op,
                values: vec![Value::Text(value)]
            }
        )),
        (number_op, 0u64..70000).prop_map(|(op, value)| Expr::Compare(Comparison {
            field: Field::Number(NumberField::BytesIn),
            op,
            values: vec![Value::Number(value)]
        })),
        (proptest::collection::vec(0u64..65536, 1..4), any::<bool>()).prop_map(
            |(ports, negated)| Expr::Compare(Comparison {
                field: Field::Number(NumberField::DestPort),
                op: if negated { Op::NotIn } else { Op::In },
                values: ports.into_iter().map(Value::Number).collect()
            })
        ),
        (side.clone(), "[a-z./]{1,8}", text_value()).prop_map(|(side, key, value)| Expr::Compare(
            Comparison {
                field: Field::Label(side, key),
                op: Op::Eq,
                values: vec![Value::Text(value)]
            }
        )),
        (side.clone(), "[a-z][a-z0-9.-]{0,8}").prop_map(|(side, key)| Expr::HasLabel(side, key)),
        (side, any::<[u8; 4]>(), 0u8..=32).prop_map(|(side, octets, prefix)| Expr::Compare(
            Comparison {
                field: Field::Ip(side),
                op: Op::Eq,
                values: vec![Value::Net(ipnet::IpNet::V4(
                    ipnet::Ipv4Net::new(octets.into(), prefix).unwrap()
                ))]
            }
        )),
        prop_oneof![
            Just(HitAction::Allow),
            Just(HitAction::Deny),
            Just(HitAction::Pass)
        ]
        .prop_map(|action| Expr::Compare(Comparison {
            field: Field::Policy(TraceScope::Pending, HitField::Action),
            op: Op::Eq,
            values: vec![Value::Text(action.to_string())]
        })),
    ]
}

fn flat(children: Vec<Expr>, conjunction: bool) -> Expr {
    let mut flat = Vec::new();
    for child in children {
        match (child, conjunction) {
            (Expr::And(inner), true) | (Expr::Or(inner), false) => flat.extend(inner),
            (other, _) => flat.push(other),
        }
    }
    if flat.len() == 1 {
        flat.pop().unwrap()
    } else if conjunction {
        Expr::And(flat)
    } else {
        Expr::Or(flat)
    }
}

fn expression() -> impl Strategy<Value = Expr> {
    comparison().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4)
                .prop_map(|children| flat(children, true)),
            proptest::collection::vec(inner.clone(), 2..4)
                .prop_map(|children| flat(children, false)),
            inner.prop_map(|child| Expr::Not(Box::new(child))),
        ]
    })
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_expression(expr in expression()) {
        let text = expr.to_string();
        let parsed = parse(&text).map_err(|error| TestCaseError::fail(format!("{text}: {error}")))?;
        prop_assert_eq!(parsed, expr, "text: {}", text);
    }

    #[test]
    fn the_parser_never_panics(text in "[ -~]{0,40}") {
        let _ = parse(&text);
    }
}
