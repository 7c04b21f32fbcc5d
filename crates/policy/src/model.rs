//! The policy model every source converts into: tiers, policies with ordered rules, network
//! sets. Kubernetes NetworkPolicies become policies of the `default` tier with order 1000, as
//! Calico treats them.

use std::collections::BTreeMap;

use caracal_flow::PolicyKind;
use ipnet::IpNet;

use crate::selector::Selector;

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Allow the connection.
    Allow,
    /// Deny it.
    Deny,
    /// Skip to the next tier.
    Pass,
    /// Record and go on to the next rule.
    Log,
}

/// Which way traffic crosses the endpoint the policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Into the endpoint.
    Ingress,
    /// Out of the endpoint.
    Egress,
}

/// A port, a range, or a named container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// One port.
    Single(u16),
    /// An inclusive range.
    Range(u16, u16),
    /// A named port of the destination workload.
    Named(String),
}

/// ICMP type and optional code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMatch {
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code, any when `None`.
    pub code: Option<u8>,
}

/// The source or destination part of a rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntityRule {
    /// Endpoints (and network sets) whose labels match.
    pub selector: Option<Selector>,
    /// Endpoints whose labels do not match.
    pub not_selector: Option<Selector>,
    /// Endpoints in namespaces whose labels match.
    pub namespace_selector: Option<Selector>,
    /// Addresses within these networks.
    pub nets: Vec<IpNet>,
    /// Addresses outside these networks.
    pub not_nets: Vec<IpNet>,
    /// Destination ports (only on the destination side).
    pub ports: Vec<PortSpec>,
    /// Destination ports excluded.
    pub not_ports: Vec<PortSpec>,
    /// Selectors match pods only, never network sets (Kubernetes peers).
    pub workloads_only: bool,
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// What a match does.
    pub action: RuleAction,
    /// Protocol the rule is limited to (`tcp`, `udp`, `icmp`, `sctp` or a number).
    pub protocol: Option<String>,
    /// Protocol excluded.
    pub not_protocol: Option<String>,
    /// ICMP type/code the rule is limited to.
    pub icmp: Option<IcmpMatch>,
    /// ICMP type/code excluded.
    pub not_icmp: Option<IcmpMatch>,
    /// Who sends.
    pub source: EntityRule,
    /// Who receives.
    pub destination: EntityRule,
}

/// A staged policy's intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagedAction {
    /// Would add or replace the policy of the same name.
    Set,
    /// Would delete the policy of the same name.
    Delete,
}

/// One policy, namespaced or global, enforced or staged.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Its kind, as reported in traces.
    pub kind: PolicyKind,
    /// Its namespace; empty for global kinds.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its tier.
    pub tier: String,
    /// Order within the tier; `None` sorts last.
    pub order: Option<f64>,
    /// Endpoints it applies to.
    pub selector: Selector,
    /// For global policies: namespaces of the endpoints it applies to.
    pub namespace_selector: Option<Selector>,
    /// Ingress rules, `None` when the policy does not apply to ingress.
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules, `None` when the policy does not apply to egress.
    pub egress: Option<Vec<Rule>>,
    /// For staged policies, what they would do.
    pub staged: Option<StagedAction>,
    /// Where it was loaded from (`file#document`).
    pub origin: String,
}

impl Policy {
    /// The rules for a direction, if the policy applies to it.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// The enforced kind a staged kind stands in for.
    pub fn enforced_kind(&self) -> PolicyKind {
        match self.kind {
            PolicyKind::StagedNetworkPolicy => PolicyKind::CalicoNetworkPolicy,
            PolicyKind::StagedGlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
            PolicyKind::StagedKubernetesNetworkPolicy => PolicyKind::KubernetesNetworkPolicy,
            other => other,
        }
    }
}

/// What a tier does when its policies select an endpoint but no rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierDefault {
    /// Deny (the default).
    Deny,
    /// Go on to the next tier.
    Pass,
}

/// A tier of policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    /// Name.
    pub name: String,
    /// Order among tiers; `None` sorts last.
    pub order: Option<f64>,
    /// End-of-tier action.
    pub default_action: TierDefault,
}

/// Addresses with labels that rules can select.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSet {
    /// Namespace; empty for a global network set.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Networks.
    pub nets: Vec<IpNet>,
}

/// The order Calico gives the `default` tier.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// Every policy resource loaded, ready to evaluate.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    /// Tiers (the `default` tier is added when missing).
    pub tiers: Vec<Tier>,
    /// Policies, enforced and staged.
    pub policies: Vec<Policy>,
    /// Network sets, namespaced and global.
    pub network_sets: Vec<NetworkSet>,
}
