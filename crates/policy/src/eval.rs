//! The evaluator: for a connection between two endpoints it produces the enforced and pending
//! policy traces of each side (egress at the source, ingress at the destination) and the final
//! verdicts, with Calico's semantics as written in flow-model.md §4.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use caracal_flow::{Action, HitAction, PolicyHit, PolicyKind};

use crate::load::{Manifests, NamedPort, PodInfo};
use crate::model::*;
use crate::selector::{Labels, Selector};

/// A pod seen by the evaluator: its labels, its namespace's labels and named ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// `metadata.generateName`: the workload prefix of replica-set pods.
    pub generate_name: Option<String>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Labels of its namespace.
    pub namespace_labels: BTreeMap<String, String>,
    /// Named container ports.
    pub ports: Vec<NamedPort>,
}

/// One end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub address: IpAddr,
    /// The pod at that address, if any.
    pub workload: Option<Workload>,
    /// The most specific network set containing the address: (namespace, name, labels).
    pub network_set: Option<(String, String, BTreeMap<String, String>)>,
}

/// A connection to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Who initiates.
    pub source: Endpoint,
    /// Who receives.
    pub destination: Endpoint,
    /// `tcp`, `udp`, `icmp`, `sctp`, ... or a number.
    pub protocol: String,
    /// Destination port (0 for ICMP).
    pub port: u16,
    /// ICMP type and code, for ICMP.
    pub icmp: Option<(u8, u8)>,
}

/// The traces of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideVerdict {
    /// What the dataplane does, in evaluation order.
    pub enforced: Vec<PolicyHit>,
    /// What it would do with staged policies enforced.
    pub pending: Vec<PolicyHit>,
    /// Verdict of the enforced trace.
    pub action: Action,
    /// Verdict of the pending trace.
    pub pending_action: Action,
}

/// Both sides of a connection and the final verdicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed only if both sides allow.
    pub action: Action,
    /// The same with staged policies enforced.
    pub pending_action: Action,
    /// Egress at the source, when the source is a workload.
    pub egress: Option<SideVerdict>,
    /// Ingress at the destination, when the destination is a workload.
    pub ingress: Option<SideVerdict>,
}

/// Labels plus the ones Kubernetes and Calico add implicitly.
struct WithImplicit<'a> {
    labels: &'a BTreeMap<String, String>,
    implicit: [(&'static str, &'a str); 2],
}

impl Labels for WithImplicit<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str).or_else(|| {
            self.implicit
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| *value)
        })
    }
}

fn pod_labels(workload: &Workload) -> WithImplicit<'_> {
    WithImplicit {
        labels: &workload.labels,
        implicit: [
            ("projectcalico.org/namespace", &workload.namespace),
            ("projectcalico.org/orchestrator", "k8s"),
        ],
    }
}

fn namespace_labels<'a>(labels: &'a BTreeMap<String, String>, name: &'a str) -> WithImplicit<'a> {
    WithImplicit {
        labels,
        implicit: [
            ("kubernetes.io/metadata.name", name),
            ("projectcalico.org/name", name),
        ],
    }
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "icmp" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp6" | "icmpv6" => Some(58),
        "sctp" => Some(132),
        "udplite" => Some(136),
        other => other.parse().ok(),
    }
}

fn same_protocol(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || (protocol_number(&a).is_some() && protocol_number(&a) == protocol_number(&b))
}

fn sort_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

/// Evaluates connections against a policy set. Built once, used for many connections.
pub struct Evaluator {
    tiers: Vec<Tier>,
    enforced: Vec<Vec<Policy>>,
    pending: Vec<Vec<Policy>>,
}

impl Evaluator {
    /// Orders tiers and policies, and prepares the pending view (staged policies enforced,
    /// replacing or deleting the enforced policy of the same kind family, namespace and name).
    pub fn new(set: &PolicySet) -> Evaluator {
        let mut tiers = set.tiers.clone();
        let mut ensure = |name: &str, order: Option<f64>| {
            if !tiers.iter().any(|tier| tier.name == name) {
                tiers.push(Tier {
                    name: name.to_string(),
                    order,
                    default_action: TierDefault::Deny,
                });
            }
        };
        ensure("default", Some(DEFAULT_TIER_ORDER));
        for policy in &set.policies {
            ensure(&policy.tier, None);
        }
        tiers.sort_by(|a, b| {
            sort_key(a.order)
                .total_cmp(&sort_key(b.order))
                .then_with(|| a.name.cmp(&b.name))
        });
        let identity = |policy: &Policy| {
            (
                policy.enforced_kind(),
                policy.namespace.clone(),
                policy.name.clone(),
            )
        };
        let staged: HashMap<_, &Policy> = set
            .policies
            .iter()
            .filter(|policy| policy.staged.is_some())
            .map(|policy| (identity(policy), policy))
            .collect();
        let enforced_list: Vec<&Policy> = set
            .policies
            .iter()
            .filter(|policy| policy.staged.is_none())
            .collect();
        let mut pending_list: Vec<&Policy> = enforced_list
            .iter()
            .copied()
            .filter(|policy| !staged.contains_key(&identity(policy)))
            .collect();
        pending_list.extend(
            staged
                .values()
                .copied()
                .filter(|policy| policy.staged == Some(StagedAction::Set)),
        );
        let by_tier = |list: &[&Policy]| -> Vec<Vec<Policy>> {
            tiers
                .iter()
                .map(|tier| {
                    let mut policies: Vec<Policy> = list
                        .iter()
                        .filter(|policy| policy.tier == tier.name)
                        .map(|policy| (*policy).clone())
                        .collect();
                    policies.sort_by(|a, b| {
                        sort_key(a.order)
                            .total_cmp(&sort_key(b.order))
                            .then_with(|| a.name.cmp(&b.name))
                    });
                    policies
                })
                .collect()
        };
        Evaluator {
            enforced: by_tier(&enforced_list),
            pending: by_tier(&pending_list),
            tiers,
        }
    }

    /// Both sides of a connection.
    pub fn evaluate(&self, connection: &Connection) -> Verdict {
        let side = |endpoint: &Endpoint, direction: Direction| {
            endpoint.workload.as_ref().map(|workload| {
                let (enforced, action) =
                    self.trace(&self.enforced, workload, direction, connection);
                let (pending, pending_action) =
                    self.trace(&self.pending, workload, direction, connection);
                SideVerdict {
                    enforced,
                    pending,
                    action,
                    pending_action,
                }
            })
        };
        let egress = side(&connection.source, Direction::Egress);
        let ingress = side(&connection.destination, Direction::Ingress);
        let combine = |pick: fn(&SideVerdict) -> Action| {
            let denied = [&egress, &ingress]
                .iter()
                .any(|side| side.as_ref().is_some_and(|side| pick(side) == Action::Deny));
            if denied {
                Action::Deny
            } else {
                Action::Allow
            }
        };
        Verdict {
            action: combine(|side| side.action),
            pending_action: combine(|side| side.pending_action),
            egress,
            ingress,
        }
    }

    /// Enforced policies per tier, in evaluation order.
    pub fn enforced_tiers(&self) -> impl Iterator<Item = (&Tier, &[Policy])> {
        self.tiers
            .iter()
            .zip(self.enforced.iter().map(Vec::as_slice))
    }

    /// Whether `policy` applies to `workload` (namespace, namespace selector, selector).
    pub fn selects_workload(policy: &Policy, workload: &Workload) -> bool {
        Self::selects(policy, workload)
    }

    fn selects(policy: &Policy, workload: &Workload) -> bool {
        if !policy.namespace.is_empty() && policy.namespace != workload.namespace {
            return false;
        }
        if let Some(namespaces) = &policy.namespace_selector {
            if !namespaces.matches(&namespace_labels(
                &workload.namespace_labels,
                &workload.namespace,
            )) {
                return false;
            }
        }
        policy.selector.matches(&pod_labels(workload))
    }

    fn trace(
        &self,
        policies: &[Vec<Policy>],
        workload: &Workload,
        direction: Direction,
        connection: &Connection,
    ) -> (Vec<PolicyHit>, Action) {
        let mut hits: Vec<PolicyHit> = Vec::new();
        for (tier, tier_policies) in self.tiers.iter().zip(policies) {
            let selecting: Vec<&Policy> = tier_policies
                .iter()
                .filter(|policy| {
                    policy.rules(direction).is_some() && Self::selects(policy, workload)
                })
                .collect();
            let Some(first) = selecting.first() else {
                continue;
            };
            let mut decided = None;
            'policies: for policy in &selecting {
                for (index, rule) in policy
                    .rules(direction)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    if !rule_matches(rule, policy, connection) {
                        continue;
                    }
                    let action = match rule.action {
                        RuleAction::Log => continue,
                        RuleAction::Allow => HitAction::Allow,
                        RuleAction::Deny => HitAction::Deny,
                        RuleAction::Pass => HitAction::Pass,
                    };
                    hits.push(hit(policy, action, hits.len(), index as i64));
                    decided = Some(action);
                    break 'policies;
                }
            }
            match decided {
                Some(HitAction::Allow) => return (hits, Action::Allow),
                Some(HitAction::Deny) => return (hits, Action::Deny),
                Some(HitAction::Pass) => continue,
                None => {
                    let action = match tier.default_action {
                        TierDefault::Deny => HitAction::Deny,
                        TierDefault::Pass => HitAction::Pass,
                    };
                    let trigger = hit(first, action, hits.len(), -1);
                    hits.push(PolicyHit {
                        kind: PolicyKind::EndOfTier,
                        namespace: String::new(),
                        name: String::new(),
                        tier: tier.name.clone(),
                        action,
                        policy_index: hits.len() as i64,
                        rule_index: -1,
                        trigger: Some(Box::new(trigger)),
                    });
                    if action == HitAction::Deny {
                        return (hits, Action::Deny);
                    }
                }
            }
        }
        hits.push(PolicyHit {
            kind: PolicyKind::Profile,
            namespace: String::new(),
            name: format!("kns.{}", workload.namespace),
            tier: String::new(),
            action: HitAction::Allow,
            policy_index: hits.len() as i64,
            rule_index: 0,
            trigger: None,
        });
        (hits, Action::Allow)
    }
}

fn hit(policy: &Policy, action: HitAction, index: usize, rule_index: i64) -> PolicyHit {
    PolicyHit {
        kind: policy.kind,
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        tier: policy.tier.clone(),
        action,
        policy_index: index as i64,
        rule_index,
        trigger: None,
    }
}

fn icmp_matches(wanted: &IcmpMatch, actual: Option<(u8, u8)>) -> bool {
    actual.is_some_and(|(icmp_type, code)| {
        icmp_type == wanted.icmp_type && wanted.code.is_none_or(|wanted| wanted == code)
    })
}

fn rule_matches(rule: &Rule, policy: &Policy, connection: &Connection) -> bool {
    if rule
        .protocol
        .as_deref()
        .is_some_and(|protocol| !same_protocol(protocol, &connection.protocol))
    {
        return false;
    }
    if rule
        .not_protocol
        .as_deref()
        .is_some_and(|protocol| same_protocol(protocol, &connection.protocol))
    {
        return false;
    }
    if rule
        .icmp
        .as_ref()
        .is_some_and(|icmp| !icmp_matches(icmp, connection.icmp))
    {
        return false;
    }
    if rule
        .not_icmp
        .as_ref()
        .is_some_and(|icmp| icmp_matches(icmp, connection.icmp))
    {
        return false;
    }
    entity_matches(&rule.source, policy, &connection.source, None)
        && entity_matches(
            &rule.destination,
            policy,
            &connection.destination,
            Some(connection),
        )
}

fn port_matches(spec: &PortSpec, connection: &Connection) -> bool {
    match spec {
        PortSpec::Single(port) => *port == connection.port,
        PortSpec::Range(low, high) => (*low..=*high).contains(&connection.port),
        PortSpec::Named(name) => connection
            .destination
            .workload
            .as_ref()
            .is_some_and(|workload| {
                workload.ports.iter().any(|port| {
                    &port.name == name
                        && port.port == connection.port
                        && same_protocol(&port.protocol, &connection.protocol)
                })
            }),
    }
}

/// Whether an endpoint satisfies one side of a rule; `ports_of` is the connection when this
/// is the destination side, whose ports the rule may constrain.
fn entity_matches(
    entity: &EntityRule,
    policy: &Policy,
    endpoint: &Endpoint,
    ports_of: Option<&Connection>,
) -> bool {
    if !entity.nets.is_empty()
        && !entity
            .nets
            .iter()
            .any(|net| net.contains(&endpoint.address))
    {
        return false;
    }
    if entity
        .not_nets
        .iter()
        .any(|net| net.contains(&endpoint.address))
    {
        return false;
    }
    if let Some(connection) = ports_of {
        if !entity.ports.is_empty()
            && !entity
                .ports
                .iter()
                .any(|spec| port_matches(spec, connection))
        {
            return false;
        }
        if entity
            .not_ports
            .iter()
            .any(|spec| port_matches(spec, connection))
        {
            return false;
        }
    }
    identity_matches(entity, policy, endpoint)
}

/// Whether the endpoint's identity (a pod, or a network set for Calico rules) satisfies a
/// rule side's selector, not-selector and namespace selector; true when it has none of them.
pub(crate) fn identity_matches(entity: &EntityRule, policy: &Policy, endpoint: &Endpoint) -> bool {
    if entity.selector.is_none()
        && entity.not_selector.is_none()
        && entity.namespace_selector.is_none()
    {
        return true;
    }
    // Selectors see the endpoint's identity: a pod, or else (for Calico rules) a network set.
    let empty = BTreeMap::new();
    let (namespace, labels, namespace_labels_map): (
        &str,
        Box<dyn Labels + '_>,
        &BTreeMap<String, String>,
    ) = match (&endpoint.workload, &endpoint.network_set) {
        (Some(workload), _) => (
            &workload.namespace,
            Box::new(pod_labels(workload)),
            &workload.namespace_labels,
        ),
        (None, Some((namespace, _, labels))) if !entity.workloads_only => {
            (namespace.as_str(), Box::new(labels.clone()), &empty)
        }
        _ => return false,
    };
    match &entity.namespace_selector {
        Some(namespaces)
            if namespace.is_empty()
                || !namespaces.matches(&namespace_labels(namespace_labels_map, namespace)) =>
        {
            return false
        }
        Some(_) => {}
        None if !policy.namespace.is_empty() && namespace != policy.namespace => return false,
        None => {}
    }
    let selector = entity.selector.as_ref().unwrap_or(&Selector::All);
    selector.matches(labels.as_ref())
        && !entity
            .not_selector
            .as_ref()
            .is_some_and(|not| not.matches(labels.as_ref()))
}

/// Addresses to endpoints: pods by IP, network sets by most specific prefix.
pub struct Inventory {
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pods: Vec<PodInfo>,
    by_address: HashMap<IpAddr, usize>,
    network_sets: Vec<NetworkSet>,
}

impl Inventory {
    /// An inventory of the namespaces, pods and network sets in `manifests`.
    pub fn new(manifests: &Manifests) -> Inventory {
        let pods = manifests.pods.clone();
        let by_address = pods
            .iter()
            .enumerate()
            .filter_map(|(index, pod)| Some((pod.ip?, index)))
            .collect();
        Inventory {
            namespaces: manifests
                .namespaces
                .iter()
                .map(|namespace| (namespace.name.clone(), namespace.labels.clone()))
                .collect(),
            pods,
            by_address,
            network_sets: manifests.policies.network_sets.clone(),
        }
    }

    fn workload(&self, pod: &PodInfo) -> Workload {
        Workload {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            generate_name: pod.generate_name.clone(),
            labels: pod.labels.clone(),
            namespace_labels: self
                .namespaces
                .get(&pod.namespace)
                .cloned()
                .unwrap_or_default(),
            ports: pod.ports.clone(),
        }
    }

    /// Every pod with an address, as the evaluator sees it.
    pub fn workloads(&self) -> impl Iterator<Item = (IpAddr, Workload)> + '_ {
        self.pods
            .iter()
            .filter_map(|pod| Some((pod.ip?, self.workload(pod))))
    }

    /// Every network set.
    pub fn network_sets(&self) -> &[NetworkSet] {
        &self.network_sets
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods
            .iter()
            .find(|pod| pod.namespace == namespace && pod.name == name)
    }

    /// The endpoint at `address`: its pod if any, and its most specific network set.
    pub fn endpoint(&self, address: IpAddr) -> Endpoint {
        let workload = self
            .by_address
            .get(&address)
            .map(|index| self.workload(&self.pods[*index]));
        let network_set = self
            .network_sets
            .iter()
            .flat_map(|set| {
                set.nets
                    .iter()
                    .filter(|net| net.contains(&address))
                    .map(move |net| (net.prefix_len(), set))
            })
            .max_by_key(|(prefix, _)| *prefix)
            .map(|(_, set)| (set.namespace.clone(), set.name.clone(), set.labels.clone()));
        Endpoint {
            address,
            workload,
            network_set,
        }
    }
}
