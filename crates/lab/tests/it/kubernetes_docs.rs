//! The examples of the Kubernetes NetworkPolicy documentation on real packets: the main
//! example (ipBlock with except, namespace and pod selectors, ports, egress to a CIDR),
//! default deny of ingress and of egress, a namespace-and-pod selector in one `from` element
//! (AND) against two elements (OR), a port range with `endPort`, and a named port in an
//! egress rule. Documentation CIDRs are
//! moved into the lab's own ranges; every case checks the kernel and the evaluator agree.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use caracal_flow::Action;
use caracal_lab::{tcp_connects, Lab, LabSpec, Prefix, TcpListeners};
use caracal_policy::{Connection, Evaluator, Inventory};

const SPEC: &str = r#"
version: 1
nodes: [node-a, node-b]
namespaces:
  - {name: default, labels: {kubernetes.io/metadata.name: default}}
  - {name: myproject, labels: {project: myproject}}
  - {name: other, labels: {project: other}}
  - {name: locked, labels: {project: locked}}
workloads:
  - {name: db, namespace: default, labels: {role: db}, nodes: [node-b], ports: [{name: redis, port: 6379}, {name: side, port: 7000}, {name: r1, port: 32100}, {name: r2, port: 33000}]}
  - {name: frontend, namespace: default, labels: {role: frontend}, nodes: [node-a], ports: [{name: http, port: 8080}, {name: admin, port: 9000}]}
  - {name: web, namespace: myproject, labels: {app: web}, nodes: [node-a], ports: [{name: http, port: 8080}]}
  - {name: stranger, namespace: other, labels: {app: stranger}, nodes: [node-a], ports: [{name: http, port: 8080}]}
  - {name: api, namespace: other, labels: {app: api}, nodes: [node-b], ports: [{name: http, port: 8080}]}
  - {name: box, namespace: locked, labels: {app: box}, nodes: [node-b], ports: [{name: http, port: 8080}]}
externals:
  - {name: partner, address: 203.0.113.10, ports: [5978, 443]}
  - {name: excepted, address: 203.0.113.200, ports: [443]}
policies: [policies.yaml]
"#;

/// The documentation's policies; its 172.17.0.0/16 and 10.0.0.0/24 become documentation
/// ranges the lab's externals live in.
const POLICIES: &str = r#"
# "test-network-policy", the main example.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: test-network-policy, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}
        - namespaceSelector: {matchLabels: {project: myproject}}
        - podSelector: {matchLabels: {role: frontend}}
      ports: [{protocol: TCP, port: 6379}]
  egress:
    - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
      ports: [{protocol: TCP, port: 5978}]
---
# "Targeting a range of ports".
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: multi-port-egress, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {role: frontend}}}]
      ports: [{protocol: TCP, port: 32000, endPort: 32768}]
---
# "Default deny all ingress traffic".
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: other}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
# "Default deny all egress traffic".
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress, namespace: locked}
spec:
  podSelector: {}
  policyTypes: [Egress]
---
# One `from` element with both selectors: pods of that namespace AND with that label.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-other-strangers, namespace: myproject}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {project: other}}
          podSelector: {matchLabels: {app: stranger}}
---
# Egress by port name: the destination pod's port called `http`, whatever its number.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: stranger-egress-by-port-name, namespace: other}
spec:
  podSelector: {matchLabels: {app: stranger}}
  policyTypes: [Egress]
  egress:
    - ports: [{protocol: TCP, port: http}]
"#;

/// Where a connection starts: a network namespace and its address.
type Origin = (String, IpAddr);

#[test]
fn the_kubernetes_documentation_examples_behave_as_documented() {
    if !crate::can_build_labs("the_kubernetes_documentation_examples_behave_as_documented") {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let spec_path = directory.path().join("docs.yaml");
    std::fs::write(&spec_path, SPEC).unwrap();
    std::fs::write(directory.path().join("policies.yaml"), POLICIES).unwrap();
    let spec = LabSpec::load(&spec_path).unwrap();
    let lab = Lab::up(&spec, &spec_path, Prefix::unique()).unwrap();
    let mut listeners = Vec::new();
    for servers in caracal_lab::TrafficRunner::lab_servers(&lab, &spec) {
        listeners.push(TcpListeners::start_in(&servers.netns, &servers.tcp).unwrap());
    }
    let pod = |workload: &str| {
        let pod = lab
            .pods
            .iter()
            .find(|pod| pod.workload == workload)
            .unwrap();
        (pod.netns.clone(), IpAddr::V4(pod.address))
    };
    let external = |name: &str| {
        let (_, namespace, address) = lab.externals.iter().find(|(n, _, _)| n == name).unwrap();
        (namespace.name().to_string(), IpAddr::V4(*address))
    };
    let partner = external("partner");
    let db = pod("db").1;
    let cases: Vec<(&str, Origin, IpAddr, u16, bool)> = vec![
        // The main example, ingress: the three `from` peers are ORed, the port is required.
        ("pod selector", pod("frontend"), db, 6379, true),
        ("namespace selector", pod("web"), db, 6379, true),
        ("no peer matches", pod("stranger"), db, 6379, false),
        ("port not listed", pod("web"), db, 7000, false),
        ("ipBlock", partner.clone(), db, 6379, true),
        ("ipBlock except", external("excepted"), db, 6379, false),
        // Its egress: only the CIDR on port 5978.
        ("egress to CIDR and port", pod("db"), partner.1, 5978, true),
        ("egress other port", pod("db"), partner.1, 443, false),
        ("egress to a pod", pod("db"), pod("frontend").1, 8080, false),
        // endPort.
        ("inside the port range", pod("frontend"), db, 32100, true),
        ("outside the port range", pod("frontend"), db, 33000, false),
        // Default deny ingress in `other`.
        (
            "default deny ingress",
            pod("web"),
            pod("api").1,
            8080,
            false,
        ),
        (
            "no policy selects frontend",
            pod("stranger"),
            pod("frontend").1,
            8080,
            true,
        ),
        // Default deny egress in `locked`.
        (
            "default deny egress",
            pod("box"),
            pod("frontend").1,
            8080,
            false,
        ),
        // Namespace AND pod selector in one element.
        (
            "both selectors match",
            pod("stranger"),
            pod("web").1,
            8080,
            true,
        ),
        ("namespace only", pod("api"), pod("web").1, 8080, false),
        (
            "label only, other namespace",
            pod("frontend"),
            pod("web").1,
            8080,
            false,
        ),
    ];
    let inventory = Inventory::new(lab.manifests());
    let evaluator = Evaluator::new(&lab.manifests().policies);
    let mut wrong = Vec::new();
    for (name, (netns, source), target, port, expected) in cases {
        let connected = tcp_connects(
            &netns,
            SocketAddr::new(target, port),
            Duration::from_millis(400),
        )
        .unwrap();
        let verdict = evaluator.evaluate(&Connection {
            source: inventory.endpoint(source),
            destination: inventory.endpoint(target),
            protocol: "tcp".into(),
            port,
            icmp: None,
        });
        let evaluated = verdict.action == Action::Allow;
        if connected != expected || evaluated != expected {
            wrong.push(format!(
                "{name}: {source} -> {target}:{port} expected {expected}, kernel {connected}, evaluator {evaluated}"
            ));
        }
    }
    drop(listeners);
    drop(lab);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
