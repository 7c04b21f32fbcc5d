//! The evaluator and loader against manifests on disk.

use caracal_flow::{Action, HitAction, PolicyKind};
use caracal_policy::*;

fn load(files: &[(&str, &str)]) -> Manifests {
    let mut manifests = Manifests::default();
    for (name, text) in files {
        load_str(name, text, &mut manifests).unwrap_or_else(|errors| panic!("{errors:#?}"));
    }
    manifests
}

fn testdata(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn connection(
    inventory: &Inventory,
    from: &str,
    to: &str,
    protocol: &str,
    port: u16,
) -> Connection {
    Connection {
        source: inventory.endpoint(from.parse().unwrap()),
        destination: inventory.endpoint(to.parse().unwrap()),
        protocol: protocol.into(),
        port,
        icmp: None,
    }
}

fn texts(hits: &[caracal_flow::PolicyHit]) -> Vec<String> {
    hits.iter().map(ToString::to_string).collect()
}

fn with_inventory(policies: &str) -> (Evaluator, Inventory) {
    let manifests = load(&[
        ("inventory.yaml", &testdata("inventory.yaml")),
        ("policies.yaml", policies),
    ]);
    (
        Evaluator::new(&manifests.policies),
        Inventory::new(&manifests),
    )
}

#[test]
fn the_kubernetes_documentation_example_behaves_as_documented() {
    let (evaluator, inventory) = with_inventory(&testdata("kubernetes-docs.yaml"));
    let db = "10.244.0.10";
    // From a pod in a namespace labelled project=myproject, to 6379: allowed by peer 2 (rule 1).
    let verdict = evaluator.evaluate(&connection(&inventory, "10.244.1.20", db, "tcp", 6379));
    assert_eq!(verdict.action, Action::Allow);
    assert_eq!(
        texts(&verdict.ingress.as_ref().unwrap().enforced),
        ["0|default|knp:default/test-network-policy|allow|1"]
    );
    // From role=frontend in the same namespace: peer 3 (rule 2).
    let verdict = evaluator.evaluate(&connection(&inventory, "10.244.0.11", db, "tcp", 6379));
    assert_eq!(verdict.action, Action::Allow);
    assert_eq!(verdict.ingress.unwrap().enforced[0].rule_index, 2);
    // The frontend's own egress is not selected by any policy: its namespace profile allows.
    // From another namespace: end of tier, denied, triggered by the policy.
    let verdict = evaluator.evaluate(&connection(&inventory, "10.244.2.30", db, "tcp", 6379));
    assert_eq!(verdict.action, Action::Deny);
    let ingress = verdict.ingress.unwrap();
    assert_eq!(ingress.enforced[0].kind, PolicyKind::EndOfTier);
    assert_eq!(
        ingress.enforced[0].trigger.as_ref().unwrap().name,
        "test-network-policy"
    );
    // ipBlock with except: 172.17.0.5 allowed, 172.17.1.5 denied, on 6379 only.
    assert_eq!(
        evaluator
            .evaluate(&connection(&inventory, "172.17.0.5", db, "tcp", 6379))
            .action,
        Action::Allow
    );
    assert_eq!(
        evaluator
            .evaluate(&connection(&inventory, "172.17.1.5", db, "tcp", 6379))
            .action,
        Action::Deny
    );
    assert_eq!(
        evaluator
            .evaluate(&connection(&inventory, "172.17.0.5", db, "tcp", 6380))
            .action,
        Action::Deny
    );
    assert_eq!(
        evaluator
            .evaluate(&connection(&inventory, "172.17.0.5", db, "udp", 6379))
            .action,
        Action::Deny
    );
    // Egress from db: only 10.0.0.0/24 on 5978.
    assert_eq!(
        evaluator
            .evaluate(&connection(&inventory, db, "10.0.0.7", "tcp", 5978))
            .action,
        Action::Allow
    );
    let denied = evaluator.evaluate(&connection(&inventory, db, "10.244.0.11", "tcp", 5978));
    assert_eq!(denied.action, Action::Deny);
    assert!(denied.egress.unwrap().enforced[0].kind == PolicyKind::EndOfTier);
}

#[test]
fn default_deny_and_allow_from_a_namespace() {
    let policies = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-myproject, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [myproject]}]
"#;
    let (evaluator, inventory) = with_inventory(policies);
    let allowed = evaluator.evaluate(&connection(
        &inventory,
        "10.244.1.20",
        "10.244.0.10",
        "tcp",
        1234,
    ));
    assert_eq!(allowed.action, Action::Allow);
    assert_eq!(
        texts(&allowed.ingress.unwrap().enforced),
        ["0|default|knp:default/allow-myproject|allow|0"]
    );
    let denied = evaluator.evaluate(&connection(
        &inventory,
        "10.244.1.20",
        "10.244.0.11",
        "tcp",
        80,
    ));
    assert_eq!(denied.action, Action::Deny);
    let trigger = denied.ingress.unwrap().enforced[0].trigger.clone().unwrap();
    assert_eq!(
        trigger.name, "default-deny-ingress",
        "the first policy of the tier by order, then name"
    );
}

#[test]
fn tiers_pass_deny_profiles_and_staged_policies() {
    let policies = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.block-other}
spec:
  tier: security
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
    - action: Log
    - action: Deny
      source: {namespaceSelector: project == 'other'}
    - action: Pass
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.watch-web}
spec:
  tier: platform
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-http, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [http, '9000:9100']}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: allow-http, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == 'client', namespaceSelector: project == 'myproject'}
      destination: {ports: [8080]}
"#;
    let (evaluator, inventory) = with_inventory(policies);
    let web = "10.244.3.40";
    // From other: denied in the security tier by rule 1 (rule 0 only logs).
    let verdict = evaluator.evaluate(&connection(&inventory, "10.244.2.30", web, "tcp", 8080));
    assert_eq!(verdict.action, Action::Deny);
    assert_eq!(
        texts(&verdict.ingress.as_ref().unwrap().enforced),
        ["0|security|gnp:security.block-other|deny|1"]
    );
    // From myproject: pass; platform tier selects but no rule matches TCP → its default Pass;
    // default tier allows by the named port `http` (8080).
    let verdict = evaluator.evaluate(&connection(&inventory, "10.244.1.20", web, "tcp", 8080));
    assert_eq!(verdict.action, Action::Allow);
    let ingress = verdict.ingress.unwrap();
    assert_eq!(
        texts(&ingress.enforced)[0],
        "0|security|gnp:security.block-other|pass|2"
    );
    assert_eq!(ingress.enforced[1].kind, PolicyKind::EndOfTier);
    assert_eq!(
        (
            ingress.enforced[1].tier.as_str(),
            ingress.enforced[1].action
        ),
        ("platform", HitAction::Pass)
    );
    assert_eq!(
        texts(&ingress.enforced)[2],
        "2|default|np:shop/allow-http|allow|0"
    );
    // The staged replacement allows only clients from myproject on 8080: same verdict here...
    assert_eq!(ingress.pending_action, Action::Allow);
    assert_eq!(ingress.pending[2].kind, PolicyKind::StagedNetworkPolicy);
    // ...but a range port from the frontend is allowed now and would be denied once staged.
    let verdict = evaluator.evaluate(&connection(&inventory, "10.244.0.11", web, "tcp", 9050));
    assert_eq!(
        (verdict.action, verdict.pending_action),
        (Action::Allow, Action::Deny)
    );
    let pending = verdict.ingress.unwrap().pending;
    assert_eq!(pending.last().unwrap().kind, PolicyKind::EndOfTier);
    assert_eq!(
        pending.last().unwrap().trigger.as_ref().unwrap().kind,
        PolicyKind::StagedNetworkPolicy
    );
    // Egress of a pod no policy selects: the namespace profile.
    let verdict = evaluator.evaluate(&connection(&inventory, web, "203.0.113.9", "tcp", 443));
    assert_eq!(
        texts(&verdict.egress.unwrap().enforced),
        ["0||pro:kns.shop|allow|0"]
    );
}

/// Regression: a YAML syntax error once made the loader collect the same error forever.
#[test]
fn a_syntax_error_is_one_error_with_its_line() {
    let text = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {a: {b}}\n---\nkind: Tier\n";
    let mut manifests = Manifests::default();
    let errors = load_str("broken.yaml", text, &mut manifests).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_string().starts_with("broken.yaml: document 2"),
        "{}",
        errors[0]
    );
    assert!(errors[0].message.contains("line 7"), "{}", errors[0]);
}

#[test]
fn bad_manifests_name_the_file_document_field_and_line() {
    let cases = [
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  ingress:\n    - from: []\n      portz: []\n",
            "document 1 (NetworkPolicy): spec.ingress[0]: unknown field `portz`",
            "line 8",
        ),
        (
            "---\nkind: Tier\napiVersion: projectcalico.org/v3\nmetadata: {name: t}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  selector: app = 'web'\n",
            "document 2 (GlobalNetworkPolicy g): spec.selector: selector error at column 5",
            "",
        ),
        ("apiVersion: v9\nkind: Widget\nmetadata: {name: w}\n", "unsupported apiVersion/kind `v9` `Widget`", ""),
        ("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {}\n", "metadata.name: missing", ""),
        (
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  ingress:\n    - action: Allow\n      destination: {ports: [80]}\n",
            "spec.ingress[0].destination.ports: ports need protocol",
            "",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  ingress:\n    - ports: [{port: 70000}]\n",
            "spec.ingress[0].ports[0].port: port 70000 is outside 1..=65535",
            "",
        ),
    ];
    for (text, needle, line) in cases {
        let mut manifests = Manifests::default();
        let errors = load_str("bad.yaml", text, &mut manifests).expect_err(needle);
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(message.starts_with("bad.yaml: document "), "{message}");
        assert!(message.contains(needle), "{message}");
        assert!(message.contains(line), "{message}");
    }
}

fn node_ruleset() -> Ruleset {
    let manifests = load(&[
        ("inventory.yaml", &testdata("inventory.yaml")),
        ("kubernetes-docs.yaml", &testdata("kubernetes-docs.yaml")),
        ("tiers.yaml", &testdata("tiers.yaml")),
    ]);
    let inventory = Inventory::new(&manifests);
    let endpoints: Vec<LocalEndpoint> = [
        ("default", "db-0", "lxc-db0"),
        ("shop", "web-0", "lxc-web0"),
    ]
    .into_iter()
    .map(|(namespace, name, interface)| {
        let address = inventory.pod(namespace, name).unwrap().ip.unwrap();
        LocalEndpoint {
            workload: inventory.endpoint(address).workload.unwrap(),
            address,
            interface: interface.into(),
        }
    })
    .collect();
    render(&manifests.policies, &inventory, &endpoints, 3, 7).unwrap()
}

#[test]
fn the_rendered_ruleset_matches_its_golden_file() {
    let ruleset = node_ruleset();
    let path = format!("{}/testdata/golden/node-a.nft", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("CARACAL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &ruleset.text).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .expect("golden file; regenerate with CARACAL_UPDATE_GOLDEN=1");
    assert_eq!(
        ruleset.text, golden,
        "rendered ruleset changed; review and regenerate with CARACAL_UPDATE_GOLDEN=1"
    );
    // Every tag is referenced by exactly one prefix, and ids are dense.
    for tag in &ruleset.tags {
        let prefix = format!("\"caracal:3:{}\"", tag.id);
        assert_eq!(ruleset.text.matches(&prefix).count().min(1), 1, "{prefix}");
    }
    let db_ingress: Vec<String> = ruleset
        .tags
        .iter()
        .filter(|tag| tag.endpoint == "default/db-0" && tag.direction == Direction::Ingress)
        .map(|tag| tag.hit.to_string())
        .collect();
    assert_eq!(
        db_ingress,
        [
            "0|security|gnp:security.block-other|deny|0",
            "0|security|gnp:security.block-other|pass|1",
            "0|security|eot:|deny|-1",
            "0|default|knp:default/test-network-policy|allow|0",
            "0|default|knp:default/test-network-policy|allow|1",
            "0|default|knp:default/test-network-policy|allow|2",
            "0|default|eot:|deny|-1",
            "0||pro:kns.default|allow|0",
        ]
    );
}

#[test]
fn nftables_accepts_the_rendered_ruleset() {
    let Ok(status) = std::process::Command::new("nft").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install nftables (see .ci/run)"
        );
        eprintln!("skipped: nft is not installed");
        return;
    };
    assert!(status.status.success());
    let ruleset = node_ruleset();
    let file = std::env::temp_dir().join(format!("caracal-check-{}.nft", std::process::id()));
    std::fs::write(&file, &ruleset.text).unwrap();
    // --check parses and validates the whole transaction in the kernel without committing it.
    let output = std::process::Command::new("nft")
        .arg("--check")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    if !output.status.success()
        && String::from_utf8_lossy(&output.stderr).contains("Operation not permitted")
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must check the ruleset"
        );
        eprintln!("skipped: nft --check needs CAP_NET_ADMIN");
        return;
    }
    assert!(
        output.status.success(),
        "nft rejected the ruleset:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
