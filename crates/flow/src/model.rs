//! The records of flow-model.md: endpoints, the flow key with its policy trace, counters, and
//! the flow log that merges every update of one key within a bucket.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sets::{BoundedSet, DOMAINS_BOUND, IPS_BOUND};

/// A value that names none of an enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} `{value}`, expected one of: {}", expected.trim_end_matches([',', ' ']))]
pub struct UnknownName {
    /// What was being parsed (e.g. "action").
    pub what: &'static str,
    /// The offending text.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The canonical lower-case name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(text: &str) -> Result<Self, UnknownName> {
                let lower = text.to_ascii_lowercase();
                match lower.as_str() {
                    $($text $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: text.to_string(), expected: concat!($($text, ", "),+) }),
                }
            }
        }
    };
}

named_enum!(
    /// What kind of thing an endpoint is.
    EndpointType, "endpoint type" {
        /// A workload (pod).
        Workload = "wep" | "workloadendpoint" | "workload",
        /// A host endpoint.
        Host = "hep" | "hostendpoint" | "host",
        /// A network set.
        NetworkSet = "ns" | "networkset",
        /// A network with no known identity (`pub` or `pvt`).
        Network = "net" | "network",
    }
);

named_enum!(
    /// Which side measured a flow.
    Reporter, "reporter" {
        /// The node of the initiating endpoint (egress policy).
        Src = "src" | "source",
        /// The node of the receiving endpoint (ingress policy).
        Dst = "dst" | "dest" | "destination",
    }
);

named_enum!(
    /// The final verdict of a flow.
    Action, "action" {
        /// Allowed.
        Allow = "allow" | "allowed",
        /// Denied.
        Deny = "deny" | "denied",
    }
);

named_enum!(
    /// What one policy hit decided.
    HitAction, "policy action" {
        /// The rule allowed.
        Allow = "allow",
        /// The rule denied.
        Deny = "deny",
        /// The rule passed to the next tier.
        Pass = "pass",
    }
);

named_enum!(
    /// The kind of resource a policy hit names.
    PolicyKind, "policy kind" {
        /// Calico namespaced NetworkPolicy.
        CalicoNetworkPolicy = "np" | "caliconetworkpolicy",
        /// Calico GlobalNetworkPolicy.
        GlobalNetworkPolicy = "gnp" | "globalnetworkpolicy",
        /// Calico StagedNetworkPolicy.
        StagedNetworkPolicy = "snp" | "stagednetworkpolicy",
        /// Calico StagedGlobalNetworkPolicy.
        StagedGlobalNetworkPolicy = "sgnp" | "stagedglobalnetworkpolicy",
        /// Staged Kubernetes NetworkPolicy.
        StagedKubernetesNetworkPolicy = "sknp" | "stagedkubernetesnetworkpolicy",
        /// Kubernetes NetworkPolicy.
        KubernetesNetworkPolicy = "knp" | "networkpolicy" | "kubernetesnetworkpolicy",
        /// Kubernetes ClusterNetworkPolicy.
        ClusterNetworkPolicy = "kcnp" | "clusternetworkpolicy",
        /// A namespace profile.
        Profile = "pro" | "profile",
        /// A tier's default action.
        EndOfTier = "eot" | "endoftier",
    }
);

impl PolicyKind {
    /// The resource name used by Goldmane and Calico (`CalicoNetworkPolicy`, `EndOfTier`, ...).
    pub fn long_name(self) -> &'static str {
        match self {
            PolicyKind::CalicoNetworkPolicy => "CalicoNetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::StagedNetworkPolicy => "StagedNetworkPolicy",
            PolicyKind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            PolicyKind::StagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
            PolicyKind::KubernetesNetworkPolicy => "NetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            PolicyKind::Profile => "Profile",
            PolicyKind::EndOfTier => "EndOfTier",
        }
    }

    /// Whether the kind is a staged (not enforced) policy.
    pub fn is_staged(self) -> bool {
        matches!(
            self,
            PolicyKind::StagedNetworkPolicy
                | PolicyKind::StagedGlobalNetworkPolicy
                | PolicyKind::StagedKubernetesNetworkPolicy
        )
    }
}

/// One policy that a connection traversed, with what it decided.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyHit {
    /// The kind of resource.
    pub kind: PolicyKind,
    /// Its namespace; empty for global kinds.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its tier; empty for profiles.
    pub tier: String,
    /// What the hit decided.
    pub action: HitAction,
    /// Position among the policies traversed.
    pub policy_index: i64,
    /// Position of the matching rule; `-1` is the tier's default action.
    pub rule_index: i64,
    /// For `EndOfTier`: the first policy of the tier that selected the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Box<PolicyHit>>,
}

/// A policy hit text that does not follow `index|tier|kind:[ns/]name|action|rule`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad policy hit `{text}`: {reason}")]
pub struct BadPolicyHit {
    /// The offending text.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for PolicyHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|{}:", self.policy_index, self.tier, self.kind)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}|{}|{}", self.name, self.action, self.rule_index)
    }
}

impl FromStr for PolicyHit {
    type Err = BadPolicyHit;
    fn from_str(text: &str) -> Result<Self, BadPolicyHit> {
        let bad = |reason: String| BadPolicyHit {
            text: text.to_string(),
            reason,
        };
        let parts: Vec<&str> = text.split('|').collect();
        let [index, tier, kind_and_name, action, rule] = parts[..] else {
            return Err(bad(format!(
                "expected 5 fields separated by `|`, found {}",
                parts.len()
            )));
        };
        let (kind, qualified) = kind_and_name
            .split_once(':')
            .ok_or_else(|| bad("expected `kind:name`".into()))?;
        let (namespace, name) = match qualified.split_once('/') {
            Some((namespace, name)) => (namespace, name),
            None => ("", qualified),
        };
        Ok(PolicyHit {
            kind: kind
                .parse()
                .map_err(|error: UnknownName| bad(error.to_string()))?,
            namespace: namespace.to_string(),
            name: name.to_string(),
            tier: tier.to_string(),
            action: action
                .parse()
                .map_err(|error: UnknownName| bad(error.to_string()))?,
            policy_index: index
                .parse()
                .map_err(|_| bad(format!("policy index `{index}` is not a number")))?,
            rule_index: rule
                .parse()
                .map_err(|_| bad(format!("rule index `{rule}` is not a number")))?,
            trigger: None,
        })
    }
}

/// What the dataplane did (`enforced`) and what it would do with staged policies enforced
/// (`pending`), each in evaluation order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyTrace {
    /// Hits that decided the real verdict.
    pub enforced: Vec<PolicyHit>,
    /// Hits a new connection would see if staged policies were enforced.
    pub pending: Vec<PolicyHit>,
}

impl PolicyTrace {
    /// Every hit, enforced first.
    pub fn hits(&self) -> impl Iterator<Item = &PolicyHit> {
        self.enforced.iter().chain(self.pending.iter())
    }
}

/// The identity of one end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// What kind of endpoint.
    pub kind: EndpointType,
    /// Kubernetes namespace; `-` when not namespaced.
    pub namespace: String,
    /// Pod name (levels 0–1), pod prefix, host, network set, or `pub`/`pvt`.
    pub name: String,
}

/// The Kubernetes Service a flow's destination was reached through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    /// Service name; `-` or empty when none.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// Name of the service port.
    pub port_name: String,
    /// The service port; 0 when none.
    pub port: u16,
}

/// Everything that identifies a flow log; records with equal keys merge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// The initiating endpoint.
    pub source: Endpoint,
    /// The receiving endpoint.
    pub dest: Endpoint,
    /// Destination port (0 for ICMP or at level 3).
    pub dest_port: u16,
    /// The service of the pre-DNAT destination.
    pub service: ServiceRef,
    /// Protocol name (`tcp`, `udp`, `icmp`, ...) or number.
    pub proto: String,
    /// Who measured it.
    pub reporter: Reporter,
    /// Final verdict.
    pub action: Action,
    /// The policy trace.
    pub policies: PolicyTrace,
}

/// Traffic counters of a flow log over its interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    /// Packets received by the reporting endpoint.
    pub packets_in: u64,
    /// Packets sent by the reporting endpoint.
    pub packets_out: u64,
    /// Bytes received by the reporting endpoint.
    pub bytes_in: u64,
    /// Bytes sent by the reporting endpoint.
    pub bytes_out: u64,
    /// Connections that began in the interval.
    pub connections_started: u64,
    /// Connections that ended in the interval.
    pub connections_completed: u64,
    /// Connections active in the interval.
    pub connections_live: u64,
}

impl Counters {
    /// Adds another interval's counters (saturating, a hostile peer cannot wrap them).
    pub fn add(&mut self, other: &Counters) {
        self.packets_in = self.packets_in.saturating_add(other.packets_in);
        self.packets_out = self.packets_out.saturating_add(other.packets_out);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.connections_started = self
            .connections_started
            .saturating_add(other.connections_started);
        self.connections_completed = self
            .connections_completed
            .saturating_add(other.connections_completed);
        self.connections_live = self.connections_live.saturating_add(other.connections_live);
    }
}

/// `key=value` labels of an endpoint, sorted and unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(Vec<String>);

impl Labels {
    /// Labels from `key=value` strings in any order.
    pub fn new(mut labels: Vec<String>) -> Self {
        labels.sort_unstable();
        labels.dedup();
        Labels(labels)
    }

    /// Labels from pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(
            pairs
                .into_iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
        )
    }

    /// The labels both sets carry.
    pub fn intersect(&self, other: &Labels) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|label| other.0.binary_search(label).is_ok())
                .cloned()
                .collect(),
        )
    }

    /// The `key=value` strings, sorted.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The value of label `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        label_value(&self.0, key)
    }
}

/// The value of label `key` in sorted `key=value` strings.
pub fn label_value<'a>(labels: &'a [String], key: &str) -> Option<&'a str> {
    labels.iter().find_map(|label| {
        let (label_key, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
        (label_key == key).then_some(value)
    })
}

/// A bounded set of addresses.
pub type IpSet = BoundedSet<IpAddr, IPS_BOUND>;
/// A bounded set of domain names.
pub type DomainSet = BoundedSet<String, DOMAINS_BOUND>;

/// A flow log: every connection of one key within one interval, merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The identity.
    pub key: FlowKey,
    /// Start of the interval, Unix seconds.
    pub start_time: i64,
    /// End of the interval, Unix seconds.
    pub end_time: i64,
    /// Labels of the source (intersection over merged endpoints).
    pub source_labels: Labels,
    /// Labels of the destination.
    pub dest_labels: Labels,
    /// Traffic counters.
    pub counters: Counters,
    /// Source addresses seen.
    pub source_ips: IpSet,
    /// Destination addresses seen.
    pub dest_ips: IpSet,
    /// Names the source resolved to the destination.
    pub dest_domains: DomainSet,
}

impl Flow {
    /// Merges another record of the same key: counters add, labels intersect, sets union,
    /// start takes the minimum and end the maximum.
    pub fn merge(&mut self, other: &Flow) {
        debug_assert_eq!(self.key, other.key, "only records of one key merge");
        self.start_time = self.start_time.min(other.start_time);
        self.end_time = self.end_time.max(other.end_time);
        if self.source_labels != other.source_labels {
            self.source_labels = self.source_labels.intersect(&other.source_labels);
        }
        if self.dest_labels != other.dest_labels {
            self.dest_labels = self.dest_labels.intersect(&other.dest_labels);
        }
        self.counters.add(&other.counters);
        self.source_ips.union_with(&other.source_ips);
        self.dest_ips.union_with(&other.dest_ips);
        self.dest_domains.union_with(&other.dest_domains);
    }
}

named_enum!(
    /// How much an agent folds connections before it reports them (flow-model.md §5).
    AggregationLevel, "aggregation level" {
        /// Full 5-tuple and pod names.
        Connection = "0",
        /// As 0 without the source port.
        Pod = "1",
        /// Endpoints by identity: pod prefix, network set, `pub`/`pvt`.
        Workload = "2",
        /// As 2 without the destination port.
        WorkloadNoPort = "3",
    }
);

/// The name a pod takes at aggregation level 2 and above: its `generateName` followed by `*`
/// (`frontend-7d9c8f6b5-` → `frontend-7d9c8f6b5-*`), or the pod name when it has none.
pub fn workload_name(pod_name: &str, generate_name: Option<&str>) -> String {
    match generate_name {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}*"),
        _ => pod_name.to_string(),
    }
}

/// Whether an address is private (RFC 1918, unique local, loopback, link local) rather than
/// public: the `pvt`/`pub` split for endpoints with no known identity.
pub fn is_private(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hit_text_round_trips() {
        for text in [
            "0|security|gnp:deny-bad|deny|2",
            "1|default|knp:shop/allow-web|allow|0",
            "2|platform|eot:|deny|-1",
        ] {
            let hit: PolicyHit = text.parse().unwrap();
            assert_eq!(hit.to_string(), text);
        }
        let error = "0|tier|bogus:x|allow|0".parse::<PolicyHit>().unwrap_err();
        assert!(
            error.to_string().contains("unknown policy kind `bogus`"),
            "{error}"
        );
    }

    #[test]
    fn labels_intersect_and_lookup() {
        let a = Labels::new(vec!["app=web".into(), "tier=front".into(), "v=1".into()]);
        let b = Labels::new(vec!["v=2".into(), "app=web".into()]);
        assert_eq!(a.intersect(&b).as_slice(), ["app=web"]);
        assert_eq!(a.get("tier"), Some("front"));
        assert_eq!(a.get("missing"), None);
    }

    #[test]
    fn workload_names_and_private_ranges() {
        assert_eq!(
            workload_name("frontend-7d9c8f6b5-x2x9q", Some("frontend-7d9c8f6b5-")),
            "frontend-7d9c8f6b5-*"
        );
        assert_eq!(workload_name("etcd-0", None), "etcd-0");
        assert!(is_private("10.1.2.3".parse().unwrap()));
        assert!(!is_private("203.0.113.9".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
        assert!(!is_private("2001:db8::1".parse().unwrap()));
    }
}
