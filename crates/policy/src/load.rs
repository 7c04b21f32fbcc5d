//! Loading ordinary multi-document YAML manifests: Kubernetes `NetworkPolicy`, Calico v3
//! policies (namespaced, global, staged), tiers and network sets, plus `Namespace` and `Pod`
//! objects for an inventory. Policy schemas are strict: an unknown or invalid field is an
//! error naming the file, the document, the resource, the field path, line and column.

use std::collections::BTreeMap;
use std::net::IpAddr;

use caracal_flow::PolicyKind;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use thiserror::Error;

use crate::model::*;
use crate::selector::Selector;

/// A problem in one document of one file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{file}: document {document}{resource}: {message}")]
pub struct LoadError {
    /// The file (or name given for the text).
    pub file: String,
    /// 1-based document number within the file.
    pub document: usize,
    /// ` (Kind namespace/name)` when known.
    pub resource: String,
    /// What is wrong, with the field path and position.
    pub message: String,
}

/// A namespace of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A named container port of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name.
    pub name: String,
    /// Its number.
    pub port: u16,
    /// Its protocol, lower case.
    pub protocol: String,
}

/// A pod of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generateName`, the workload prefix.
    pub generate_name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`.
    pub ip: Option<IpAddr>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// Named container ports.
    pub ports: Vec<NamedPort>,
}

/// Everything loaded from manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Policies, tiers and network sets.
    pub policies: PolicySet,
    /// Namespaces.
    pub namespaces: Vec<NamespaceInfo>,
    /// Pods.
    pub pods: Vec<PodInfo>,
}

/// Fields read only to be accepted by the strict schema are allowed to go unused.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    generate_name: Option<String>,
    // Present in exported manifests; not ours to check.
    annotations: Option<serde_yaml::Value>,
    uid: Option<serde_yaml::Value>,
    resource_version: Option<serde_yaml::Value>,
    creation_timestamp: Option<serde_yaml::Value>,
    generation: Option<serde_yaml::Value>,
    managed_fields: Option<serde_yaml::Value>,
    owner_references: Option<serde_yaml::Value>,
    finalizers: Option<serde_yaml::Value>,
    self_link: Option<serde_yaml::Value>,
    deletion_timestamp: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<S>,
    #[allow(dead_code)]
    status: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LabelRequirement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelRequirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubernetesSpec {
    pod_selector: LabelSelector,
    policy_types: Option<Vec<String>>,
    ingress: Option<Vec<KubernetesIngress>>,
    egress: Option<Vec<KubernetesEgress>>,
    staged_action: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesIngress {
    #[serde(default)]
    from: Vec<KubernetesPeer>,
    #[serde(default)]
    ports: Vec<KubernetesPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesEgress {
    #[serde(default)]
    to: Vec<KubernetesPeer>,
    #[serde(default)]
    ports: Vec<KubernetesPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubernetesPeer {
    pod_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    ip_block: Option<IpBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpBlock {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubernetesPort {
    protocol: Option<String>,
    port: Option<IntOrString>,
    end_port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CalicoSpec {
    tier: Option<String>,
    order: Option<f64>,
    selector: Option<String>,
    namespace_selector: Option<String>,
    service_account_selector: Option<String>,
    types: Option<Vec<String>>,
    ingress: Option<Vec<CalicoRule>>,
    egress: Option<Vec<CalicoRule>>,
    do_not_track: Option<bool>,
    pre_dnat: Option<bool>,
    apply_on_forward: Option<bool>,
    staged_action: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CalicoRule {
    action: String,
    protocol: Option<IntOrString>,
    not_protocol: Option<IntOrString>,
    icmp: Option<IcmpSpec>,
    #[serde(rename = "notICMP")]
    not_icmp: Option<IcmpSpec>,
    ip_version: Option<u8>,
    #[serde(default)]
    source: CalicoEntity,
    #[serde(default)]
    destination: CalicoEntity,
    #[allow(dead_code)]
    metadata: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IcmpSpec {
    #[serde(rename = "type")]
    icmp_type: u8,
    code: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CalicoEntity {
    selector: Option<String>,
    not_selector: Option<String>,
    namespace_selector: Option<String>,
    #[serde(default)]
    nets: Vec<String>,
    #[serde(default)]
    not_nets: Vec<String>,
    #[serde(default)]
    ports: Vec<IntOrString>,
    #[serde(default)]
    not_ports: Vec<IntOrString>,
    service_accounts: Option<serde_yaml::Value>,
    services: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TierSpec {
    order: Option<f64>,
    default_action: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSetSpec {
    #[serde(default)]
    nets: Vec<String>,
}

/// Pods and namespaces carry far more than we read: those schemas are lenient.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LenientDocument {
    #[serde(default)]
    metadata: LenientMetadata,
    #[serde(default)]
    spec: LenientPodSpec,
    #[serde(default)]
    status: LenientPodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LenientMetadata {
    name: Option<String>,
    namespace: Option<String>,
    generate_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LenientPodSpec {
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<LenientContainer>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LenientContainer {
    #[serde(default)]
    ports: Vec<LenientPort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LenientPort {
    name: Option<String>,
    container_port: u16,
    protocol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LenientPodStatus {
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
}

/// Deserializes one document; serde_yaml's errors carry the field path, line and column.
fn typed<T: DeserializeOwned>(document: serde_yaml::Deserializer<'_>) -> Result<T, String> {
    T::deserialize(document).map_err(|error| error.to_string())
}

fn label_selector(selector: &LabelSelector, field: &str) -> Result<Selector, String> {
    let mut terms: Vec<Selector> = selector
        .match_labels
        .iter()
        .map(|(key, value)| Selector::Equals(key.clone(), value.clone()))
        .collect();
    for (index, requirement) in selector.match_expressions.iter().enumerate() {
        let key = requirement.key.clone();
        terms.push(match requirement.operator.as_str() {
            "In" => Selector::In(key, requirement.values.clone()),
            "NotIn" => Selector::NotIn(key, requirement.values.clone()),
            "Exists" => Selector::Has(key),
            "DoesNotExist" => Selector::Not(Box::new(Selector::Has(key))),
            other => return Err(format!("{field}.matchExpressions[{index}].operator: `{other}` is not In, NotIn, Exists or DoesNotExist")),
        });
    }
    Ok(match terms.len() {
        0 => Selector::All,
        1 => terms.pop().expect("one term"),
        _ => Selector::And(terms),
    })
}

fn parse_net(text: &str, field: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{field}: `{text}` is not an address or CIDR"))
}

fn parse_nets(texts: &[String], field: &str) -> Result<Vec<IpNet>, String> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| parse_net(text, &format!("{field}[{index}]")))
        .collect()
}

fn port_number(value: i64, field: &str) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("{field}: port {value} is outside 1..=65535"))
}

fn port_spec(value: &IntOrString, field: &str) -> Result<PortSpec, String> {
    match value {
        IntOrString::Int(number) => Ok(PortSpec::Single(port_number(*number, field)?)),
        IntOrString::Text(text) => {
            if let Some((low, high)) = text.split_once(':') {
                let parse = |part: &str| {
                    part.trim().parse::<i64>().map_err(|_| {
                        format!("{field}: `{text}` is not a port range like 8000:8080")
                    })
                };
                let (low, high) = (
                    port_number(parse(low)?, field)?,
                    port_number(parse(high)?, field)?,
                );
                if low > high {
                    return Err(format!("{field}: range `{text}` ends before it starts"));
                }
                return Ok(PortSpec::Range(low, high));
            }
            if let Ok(number) = text.parse::<i64>() {
                return Ok(PortSpec::Single(port_number(number, field)?));
            }
            let valid = !text.is_empty()
                && text.len() <= 15
                && text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(format!("{field}: `{text}` is neither a port, a range nor a port name (lower case, digits, `-`, at most 15)"));
            }
            Ok(PortSpec::Named(text.clone()))
        }
    }
}

fn protocol(value: &IntOrString, field: &str) -> Result<String, String> {
    match value {
        IntOrString::Int(number) => u8::try_from(*number).map(|n| n.to_string()).map_err(|_| format!("{field}: protocol {number} is outside 0..=255")),
        IntOrString::Text(text) => match text.to_ascii_lowercase().as_str() {
            name @ ("tcp" | "udp" | "icmp" | "sctp" | "udplite") => Ok(name.to_string()),
            "icmpv6" => Ok("icmp6".into()),
            other if other.parse::<u8>().is_ok() => Ok(other.to_string()),
            _ => Err(format!("{field}: unknown protocol `{text}`; use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number")),
        },
    }
}

fn optional_selector(text: &Option<String>, field: &str) -> Result<Option<Selector>, String> {
    text.as_deref()
        .map(|text| Selector::parse(text).map_err(|error| format!("{field}: {error}")))
        .transpose()
}

fn entity(raw: &CalicoEntity, field: &str, destination: bool) -> Result<EntityRule, String> {
    if raw.service_accounts.is_some() || raw.services.is_some() {
        return Err(format!(
            "{field}: serviceAccounts and services matches are not supported yet"
        ));
    }
    if !destination && (!raw.ports.is_empty() || !raw.not_ports.is_empty()) {
        return Err(format!(
            "{field}.ports: source ports are not supported yet; match destination ports"
        ));
    }
    let ports = |list: &[IntOrString], name: &str| {
        list.iter()
            .enumerate()
            .map(|(index, port)| port_spec(port, &format!("{field}.{name}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(EntityRule {
        selector: optional_selector(&raw.selector, &format!("{field}.selector"))?,
        not_selector: optional_selector(&raw.not_selector, &format!("{field}.notSelector"))?,
        namespace_selector: optional_selector(
            &raw.namespace_selector,
            &format!("{field}.namespaceSelector"),
        )?,
        nets: parse_nets(&raw.nets, &format!("{field}.nets"))?,
        not_nets: parse_nets(&raw.not_nets, &format!("{field}.notNets"))?,
        ports: ports(&raw.ports, "ports")?,
        not_ports: ports(&raw.not_ports, "notPorts")?,
        workloads_only: false,
    })
}

fn calico_rule(raw: &CalicoRule, field: &str) -> Result<Rule, String> {
    let action = match raw.action.to_ascii_lowercase().as_str() {
        "allow" => RuleAction::Allow,
        "deny" => RuleAction::Deny,
        "pass" => RuleAction::Pass,
        "log" => RuleAction::Log,
        _ => {
            return Err(format!(
                "{field}.action: `{}` is not Allow, Deny, Pass or Log",
                raw.action
            ))
        }
    };
    let rule_protocol = raw
        .protocol
        .as_ref()
        .map(|p| protocol(p, &format!("{field}.protocol")))
        .transpose()?;
    let rule = Rule {
        action,
        protocol: rule_protocol.clone(),
        not_protocol: raw
            .not_protocol
            .as_ref()
            .map(|p| protocol(p, &format!("{field}.notProtocol")))
            .transpose()?,
        icmp: raw.icmp.as_ref().map(|icmp| IcmpMatch {
            icmp_type: icmp.icmp_type,
            code: icmp.code,
        }),
        not_icmp: raw.not_icmp.as_ref().map(|icmp| IcmpMatch {
            icmp_type: icmp.icmp_type,
            code: icmp.code,
        }),
        source: entity(&raw.source, &format!("{field}.source"), false)?,
        destination: entity(&raw.destination, &format!("{field}.destination"), true)?,
    };
    let has_ports = !rule.destination.ports.is_empty() || !rule.destination.not_ports.is_empty();
    if has_ports
        && !matches!(
            rule_protocol.as_deref(),
            Some("tcp" | "udp" | "sctp" | "udplite")
        )
    {
        return Err(format!(
            "{field}.destination.ports: ports need protocol TCP, UDP, SCTP or UDPLite on the rule"
        ));
    }
    if (rule.icmp.is_some() || rule.not_icmp.is_some())
        && !matches!(rule_protocol.as_deref(), Some("icmp" | "icmp6"))
    {
        return Err(format!(
            "{field}.icmp: ICMP matches need protocol ICMP or ICMPv6 on the rule"
        ));
    }
    if let Some(version) = raw
        .ip_version
        .filter(|version| *version != 4 && *version != 6)
    {
        return Err(format!("{field}.ipVersion: {version} is not 4 or 6"));
    }
    Ok(rule)
}

fn directions(
    types: &Option<Vec<String>>,
    has_egress_rules: bool,
    field: &str,
) -> Result<(bool, bool), String> {
    match types {
        None => Ok((true, has_egress_rules)),
        Some(types) => {
            let mut result = (false, false);
            for (index, kind) in types.iter().enumerate() {
                match kind.as_str() {
                    "Ingress" => result.0 = true,
                    "Egress" => result.1 = true,
                    other => {
                        return Err(format!(
                            "{field}[{index}]: `{other}` is not Ingress or Egress"
                        ))
                    }
                }
            }
            Ok(result)
        }
    }
}

fn staged_action(value: &Option<String>, staged: bool) -> Result<Option<StagedAction>, String> {
    match (value.as_deref(), staged) {
        (None, false) => Ok(None),
        (Some(_), false) => Err("spec.stagedAction: only staged kinds take a staged action".into()),
        (None | Some("Set"), true) => Ok(Some(StagedAction::Set)),
        (Some("Delete"), true) => Ok(Some(StagedAction::Delete)),
        (Some(other), true) => Err(format!("spec.stagedAction: `{other}` is not Set or Delete")),
    }
}

fn kubernetes_peers_and_ports(
    peers: &[KubernetesPeer],
    ports: &[KubernetesPort],
    field: &str,
    ingress: bool,
) -> Result<Vec<Rule>, String> {
    // Calico semantics: one rule per peer and protocol, so a trace names which one matched.
    let mut by_protocol: BTreeMap<String, Vec<PortSpec>> = BTreeMap::new();
    for (index, port) in ports.iter().enumerate() {
        let port_field = format!("{field}.ports[{index}]");
        let name = protocol(
            &IntOrString::Text(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
            &format!("{port_field}.protocol"),
        )?;
        let entry = by_protocol.entry(name).or_default();
        match (&port.port, port.end_port) {
            (None, None) => {}
            (None, Some(_)) => return Err(format!("{port_field}.endPort: needs a numeric port")),
            (Some(value), None) => entry.push(port_spec(value, &format!("{port_field}.port"))?),
            (Some(IntOrString::Int(start)), Some(end)) => {
                let (start, end) = (
                    port_number(*start, &format!("{port_field}.port"))?,
                    port_number(end, &format!("{port_field}.endPort"))?,
                );
                if end < start {
                    return Err(format!("{port_field}.endPort: {end} is below port {start}"));
                }
                entry.push(PortSpec::Range(start, end));
            }
            (Some(IntOrString::Text(_)), Some(_)) => {
                return Err(format!(
                    "{port_field}.endPort: needs a numeric port, not a named one"
                ))
            }
        }
    }
    let protocol_groups: Vec<(Option<String>, Vec<PortSpec>)> = if by_protocol.is_empty() {
        vec![(None, Vec::new())]
    } else {
        by_protocol
            .into_iter()
            .map(|(name, ports)| (Some(name), ports))
            .collect()
    };
    let mut peer_entities = Vec::new();
    if peers.is_empty() {
        peer_entities.push(EntityRule::default());
    }
    for (index, peer) in peers.iter().enumerate() {
        let peer_field = format!("{field}.{}[{index}]", if ingress { "from" } else { "to" });
        let mut entity = EntityRule {
            workloads_only: true,
            ..EntityRule::default()
        };
        match (&peer.pod_selector, &peer.namespace_selector, &peer.ip_block) {
            (None, None, Some(block)) => {
                entity.workloads_only = false;
                entity.nets = vec![parse_net(
                    &block.cidr,
                    &format!("{peer_field}.ipBlock.cidr"),
                )?];
                entity.not_nets =
                    parse_nets(&block.except, &format!("{peer_field}.ipBlock.except"))?;
            }
            (pods, namespaces, None) if pods.is_some() || namespaces.is_some() => {
                entity.selector = Some(match pods {
                    Some(pods) => label_selector(pods, &format!("{peer_field}.podSelector"))?,
                    None => Selector::All,
                });
                entity.namespace_selector = namespaces
                    .as_ref()
                    .map(|ns| label_selector(ns, &format!("{peer_field}.namespaceSelector")))
                    .transpose()?;
            }
            _ => {
                return Err(format!(
                    "{peer_field}: a peer has either ipBlock or podSelector/namespaceSelector"
                ))
            }
        }
        peer_entities.push(entity);
    }
    let mut rules = Vec::new();
    for peer in &peer_entities {
        for (name, ports) in &protocol_groups {
            let destination_ports = EntityRule {
                ports: ports.clone(),
                ..EntityRule::default()
            };
            let (source, destination) = if ingress {
                (peer.clone(), destination_ports)
            } else {
                (
                    EntityRule::default(),
                    EntityRule {
                        ports: ports.clone(),
                        ..peer.clone()
                    },
                )
            };
            rules.push(Rule {
                action: RuleAction::Allow,
                protocol: name.clone(),
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source,
                destination,
            });
        }
    }
    Ok(rules)
}

fn name_of(metadata: &Metadata) -> Result<String, String> {
    metadata
        .name
        .clone()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| "metadata.name: missing".to_string())
}

/// Reads every document of `text` (named `file` in errors) into `into`; returns every error.
pub fn load_str(file: &str, text: &str, into: &mut Manifests) -> Result<(), Vec<LoadError>> {
    let mut errors = Vec::new();
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        match serde_yaml::Value::deserialize(document) {
            Ok(value) => {
                let field =
                    |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
                kinds.push(Ok((field("apiVersion"), field("kind"), value.is_null())));
            }
            Err(error) => {
                // After a syntax error the parser cannot find the next document (and would
                // yield the same error forever): report it and stop reading this file.
                kinds.push(Err(error.to_string()));
                break;
            }
        }
    }
    for (index, (document, kind)) in serde_yaml::Deserializer::from_str(text)
        .zip(kinds)
        .enumerate()
    {
        let number = index + 1;
        let fail = |resource: String, message: String| LoadError {
            file: file.to_string(),
            document: number,
            resource,
            message,
        };
        let (api_version, kind) = match kind {
            Err(message) => {
                errors.push(fail(String::new(), message));
                continue;
            }
            Ok((_, _, true)) => continue,
            Ok((Some(api_version), Some(kind), false)) => (api_version, kind),
            Ok(_) => {
                errors.push(fail(
                    String::new(),
                    "apiVersion and kind are required".into(),
                ));
                continue;
            }
        };
        let result = load_document(document, &api_version, &kind, file, number, into);
        if let Err((resource, message)) = result {
            errors.push(fail(resource, message));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn load_document(
    document: serde_yaml::Deserializer<'_>,
    api_version: &str,
    kind: &str,
    file: &str,
    number: usize,
    into: &mut Manifests,
) -> Result<(), (String, String)> {
    let origin = format!("{file}#{number}");
    let bare = |message: String| (format!(" ({kind})"), message);
    match (api_version, kind) {
        ("networking.k8s.io/v1", "NetworkPolicy") | ("projectcalico.org/v3", "StagedKubernetesNetworkPolicy") => {
            let staged = kind.starts_with("Staged");
            let raw: Document<KubernetesSpec> = typed(document).map_err(bare)?;
            let name = name_of(&raw.metadata).map_err(bare)?;
            let namespace = raw.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let resource = format!(" ({kind} {namespace}/{name})");
            let spec = raw.spec.ok_or_else(|| (resource.clone(), "spec: missing".to_string()))?;
            let with = |message: String| (resource.clone(), message);
            let (ingress, egress) = directions(&spec.policy_types, spec.egress.is_some(), "spec.policyTypes").map_err(with)?;
            let mut ingress_rules = Vec::new();
            for (index, rule) in spec.ingress.iter().flatten().enumerate() {
                ingress_rules.extend(kubernetes_peers_and_ports(&rule.from, &rule.ports, &format!("spec.ingress[{index}]"), true).map_err(with)?);
            }
            let mut egress_rules = Vec::new();
            for (index, rule) in spec.egress.iter().flatten().enumerate() {
                egress_rules.extend(kubernetes_peers_and_ports(&rule.to, &rule.ports, &format!("spec.egress[{index}]"), false).map_err(with)?);
            }
            into.policies.policies.push(Policy {
                kind: if staged { PolicyKind::StagedKubernetesNetworkPolicy } else { PolicyKind::KubernetesNetworkPolicy },
                namespace,
                name,
                tier: "default".into(),
                order: Some(1000.0),
                selector: label_selector(&spec.pod_selector, "spec.podSelector").map_err(with)?,
                namespace_selector: None,
                ingress: ingress.then_some(ingress_rules),
                egress: egress.then_some(egress_rules),
                staged: staged_action(&spec.staged_action, staged).map_err(with)?,
                origin,
            });
        }
        (
            "projectcalico.org/v3",
            "NetworkPolicy" | "GlobalNetworkPolicy" | "StagedNetworkPolicy" | "StagedGlobalNetworkPolicy",
        ) => {
            let global = kind.contains("Global");
            let staged = kind.starts_with("Staged");
            let raw: Document<CalicoSpec> = typed(document).map_err(bare)?;
            let name = name_of(&raw.metadata).map_err(bare)?;
            let namespace = if global { String::new() } else { raw.metadata.namespace.clone().unwrap_or_else(|| "default".into()) };
            let resource = if global { format!(" ({kind} {name})") } else { format!(" ({kind} {namespace}/{name})") };
            let with = |message: String| (resource.clone(), message);
            let spec = raw.spec.ok_or_else(|| with("spec: missing".into()))?;
            if spec.service_account_selector.is_some() {
                return Err(with("spec.serviceAccountSelector: not supported yet".into()));
            }
            if spec.do_not_track == Some(true) || spec.pre_dnat == Some(true) || spec.apply_on_forward == Some(true) {
                return Err(with("spec: doNotTrack, preDNAT and applyOnForward (host endpoint policy) are not supported yet".into()));
            }
            if !global && spec.namespace_selector.is_some() {
                return Err(with("spec.namespaceSelector: only global policies select namespaces".into()));
            }
            let (ingress, egress) = directions(&spec.types, spec.egress.is_some(), "spec.types").map_err(with)?;
            let rules = |list: &Option<Vec<CalicoRule>>, side: &str| -> Result<Vec<Rule>, String> {
                list.iter().flatten().enumerate().map(|(index, rule)| calico_rule(rule, &format!("spec.{side}[{index}]"))).collect()
            };
            let ingress_rules = rules(&spec.ingress, "ingress").map_err(with)?;
            let egress_rules = rules(&spec.egress, "egress").map_err(with)?;
            let selector = optional_selector(&spec.selector, "spec.selector").map_err(with)?.unwrap_or(Selector::All);
            into.policies.policies.push(Policy {
                kind: match (global, staged) {
                    (false, false) => PolicyKind::CalicoNetworkPolicy,
                    (true, false) => PolicyKind::GlobalNetworkPolicy,
                    (false, true) => PolicyKind::StagedNetworkPolicy,
                    (true, true) => PolicyKind::StagedGlobalNetworkPolicy,
                },
                namespace,
                name,
                tier: spec.tier.clone().unwrap_or_else(|| "default".into()),
                order: spec.order,
                selector,
                namespace_selector: optional_selector(&spec.namespace_selector, "spec.namespaceSelector").map_err(with)?,
                ingress: ingress.then_some(ingress_rules),
                egress: egress.then_some(egress_rules),
                staged: staged_action(&spec.staged_action, staged).map_err(with)?,
                origin,
            });
        }
        ("projectcalico.org/v3", "Tier") => {
            let raw: Document<TierSpec> = typed(document).map_err(bare)?;
            let name = name_of(&raw.metadata).map_err(bare)?;
            let resource = format!(" (Tier {name})");
            let spec = raw.spec.unwrap_or(TierSpec { order: None, default_action: None });
            let default_action = match spec.default_action.as_deref() {
                None | Some("Deny") => TierDefault::Deny,
                Some("Pass") => TierDefault::Pass,
                Some(other) => return Err((resource, format!("spec.defaultAction: `{other}` is not Deny or Pass"))),
            };
            into.policies.tiers.push(Tier { name, order: spec.order, default_action });
        }
        ("projectcalico.org/v3", "NetworkSet" | "GlobalNetworkSet") => {
            let global = kind == "GlobalNetworkSet";
            let raw: Document<NetworkSetSpec> = typed(document).map_err(bare)?;
            let name = name_of(&raw.metadata).map_err(bare)?;
            let namespace = if global { String::new() } else { raw.metadata.namespace.clone().unwrap_or_else(|| "default".into()) };
            let resource = format!(" ({kind} {name})");
            let nets = parse_nets(&raw.spec.map(|spec| spec.nets).unwrap_or_default(), "spec.nets").map_err(|message| (resource, message))?;
            into.policies.network_sets.push(NetworkSet { namespace, name, labels: raw.metadata.labels, nets });
        }
        ("v1", "Namespace") => {
            let raw: LenientDocument = typed(document).map_err(bare)?;
            let name = raw.metadata.name.ok_or_else(|| bare("metadata.name: missing".into()))?;
            into.namespaces.push(NamespaceInfo { name, labels: raw.metadata.labels });
        }
        ("v1", "Pod") => {
            let raw: LenientDocument = typed(document).map_err(bare)?;
            let name = raw.metadata.name.clone().ok_or_else(|| bare("metadata.name: missing".into()))?;
            let namespace = raw.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let resource = format!(" (Pod {namespace}/{name})");
            let ip = raw
                .status
                .pod_ip
                .as_deref()
                .map(|text| text.parse::<IpAddr>().map_err(|_| (resource.clone(), format!("status.podIP: `{text}` is not an address"))))
                .transpose()?;
            let ports = raw
                .spec
                .containers
                .iter()
                .flat_map(|container| container.ports.iter())
                .filter_map(|port| {
                    Some(NamedPort {
                        name: port.name.clone()?,
                        port: port.container_port,
                        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                    })
                })
                .collect();
            into.pods.push(PodInfo { namespace, name, generate_name: raw.metadata.generate_name, labels: raw.metadata.labels, ip, node: raw.spec.node_name, ports });
        }
        _ => {
            return Err(bare(format!(
                "unsupported apiVersion/kind `{api_version}` `{kind}`; expected networking.k8s.io/v1 NetworkPolicy, projectcalico.org/v3 \
NetworkPolicy, GlobalNetworkPolicy, StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy, Tier, NetworkSet, \
GlobalNetworkSet, or v1 Namespace and Pod"
            )))
        }
    }
    Ok(())
}
