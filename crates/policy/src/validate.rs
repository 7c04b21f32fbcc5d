//! Checks across resources that no single document can make: tiers that policies name must
//! exist, and no two resources may share a kind, namespace and name.

use std::collections::HashMap;

use crate::model::PolicySet;

/// Problems across the loaded resources, each naming where the resources came from.
pub fn validate(set: &PolicySet) -> Vec<String> {
    let mut problems = Vec::new();
    for policy in &set.policies {
        if policy.tier != "default" && !set.tiers.iter().any(|tier| tier.name == policy.tier) {
            problems.push(format!(
                "{}: policy {} names tier `{}`, which no Tier resource declares",
                policy.origin, policy.name, policy.tier
            ));
        }
    }
    let mut seen: HashMap<(String, String, String), &str> = HashMap::new();
    for policy in &set.policies {
        let identity = (
            policy.kind.long_name().to_string(),
            policy.namespace.clone(),
            policy.name.clone(),
        );
        if let Some(first) = seen.insert(identity, &policy.origin) {
            problems.push(format!(
                "{}: {} {} is also defined at {first}",
                policy.origin,
                policy.kind.long_name(),
                policy.name
            ));
        }
    }
    let mut tiers: HashMap<&str, usize> = HashMap::new();
    for tier in &set.tiers {
        *tiers.entry(&tier.name).or_default() += 1;
    }
    problems.extend(
        tiers
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(name, count)| format!("tier `{name}` is declared {count} times")),
    );
    problems
}
