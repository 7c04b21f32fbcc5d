//! `caracal policy check|trace`: validate manifests, and show the enforced and pending policy
//! traces and the verdict of one connection, for trying a policy before enforcing it.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use caracal_flow::{Action, PolicyHit, PolicyKind};
use caracal_policy::{
    load_str, validate, Connection, Endpoint, Evaluator, Inventory, Manifests, SideVerdict,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

/// `caracal policy ...`
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate policy manifests (files or directories of .yaml/.yml)
    Check(CheckArgs),
    /// Show the policy traces and verdict of one connection
    Trace(TraceArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Manifest files or directories
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TraceOutput {
    /// Readable tiers, policies and rules.
    Table,
    /// `{"action", "enforced", "pending", ...}`.
    Json,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Policy manifests (a file or a directory)
    #[arg(long, value_name = "DIR")]
    pub policies: Vec<PathBuf>,
    /// Namespace and Pod manifests (labels, status.podIP)
    #[arg(long, value_name = "FILE")]
    pub inventory: Vec<PathBuf>,
    /// Source: NAMESPACE/POD or an IP address
    #[arg(long, value_name = "NS/POD|IP")]
    pub from: String,
    /// Destination: NAMESPACE/POD or an IP address
    #[arg(long, value_name = "NS/POD|IP")]
    pub to: String,
    /// Destination port and protocol, e.g. 443/tcp, 53/udp, icmp
    #[arg(long, value_name = "PORT/PROTO")]
    pub port: String,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: TraceOutput,
}

fn manifest_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect();
            entries.sort();
            let nested: Vec<PathBuf> = entries
                .into_iter()
                .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            files.extend(manifest_files(&nested)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads every manifest, collecting every error; fails with all of them.
fn load(paths: &[PathBuf], into: &mut Manifests) -> anyhow::Result<usize> {
    let files = manifest_files(paths)?;
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if let Err(errors) = load_str(&file.display().to_string(), &text, into) {
            problems.extend(errors.into_iter().map(|error| error.to_string()));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(files.len())
}

pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check(args) => check(&args.files),
        PolicyCommand::Trace(args) => trace(args),
    }
}

fn check(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut manifests = Manifests::default();
    let files = load(paths, &mut manifests)?;
    let problems = validate(&manifests.policies);
    if !problems.is_empty() {
        bail!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    let set = &manifests.policies;
    let staged = set
        .policies
        .iter()
        .filter(|policy| policy.staged.is_some())
        .count();
    println!(
        "ok: {} policies ({staged} staged) in {} tiers, {} network sets, from {files} file(s)",
        set.policies.len(),
        set.tiers.len().max(1),
        set.network_sets.len()
    );
    Ok(())
}

fn endpoint(inventory: &Inventory, text: &str, flag: &str) -> anyhow::Result<(Endpoint, String)> {
    if let Ok(address) = text.parse::<IpAddr>() {
        let endpoint = inventory.endpoint(address);
        let name = match (&endpoint.workload, &endpoint.network_set) {
            (Some(workload), _) => format!("{}/{} ({address})", workload.namespace, workload.name),
            (None, Some((_, set, _))) => format!("{address} (network set {set})"),
            _ => address.to_string(),
        };
        return Ok((endpoint, name));
    }
    let Some((namespace, name)) = text.split_once('/') else {
        bail!("{flag} {text}: expected NAMESPACE/POD or an IP address")
    };
    let pod = inventory
        .pod(namespace, name)
        .with_context(|| format!("{flag} {text}: no such pod in the inventory"))?;
    let address = pod
        .ip
        .with_context(|| format!("{flag} {text}: the pod has no status.podIP in the inventory"))?;
    Ok((
        inventory.endpoint(address),
        format!("{namespace}/{name} ({address})"),
    ))
}

fn port_and_protocol(text: &str) -> anyhow::Result<(u16, String)> {
    let lower = text.to_ascii_lowercase();
    if lower == "icmp" || lower == "icmp6" {
        return Ok((0, lower));
    }
    let (port, protocol) = lower.split_once('/').unwrap_or((lower.as_str(), "tcp"));
    let port: u16 = port
        .parse()
        .with_context(|| format!("--port {text}: expected PORT/PROTO like 443/tcp"))?;
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        bail!("--port {text}: protocol must be tcp, udp or sctp (or just icmp)");
    }
    Ok((port, protocol.to_string()))
}

fn hit_line(hit: &PolicyHit) -> String {
    let name = match (&hit.kind, &hit.trigger) {
        (PolicyKind::EndOfTier, Some(trigger)) => {
            format!("end of tier (first selecting policy: {})", trigger.name)
        }
        (PolicyKind::Profile, _) => format!("profile {}", hit.name),
        _ if hit.namespace.is_empty() => format!("{} {}", hit.kind.long_name(), hit.name),
        _ => format!("{} {}/{}", hit.kind.long_name(), hit.namespace, hit.name),
    };
    let rule = if hit.rule_index < 0 {
        "default action".to_string()
    } else {
        format!("rule {}", hit.rule_index)
    };
    let tier = if hit.tier.is_empty() { "-" } else { &hit.tier };
    format!(
        "    {:>2}  {:<10}  {:<60}  {:<5}  {}",
        hit.policy_index, tier, name, hit.action, rule
    )
}

fn side_table(title: &str, side: &Option<SideVerdict>) -> String {
    let Some(side) = side else {
        return format!("{title}: not a workload, no policy applies\n");
    };
    let mut out = format!("{title}: {}\n  enforced\n", side.action);
    for hit in &side.enforced {
        out.push_str(&hit_line(hit));
        out.push('\n');
    }
    if side.pending == side.enforced {
        out.push_str("  pending: the same (no staged policy changes it)\n");
    } else {
        out.push_str(&format!("  pending: {}\n", side.pending_action));
        for hit in &side.pending {
            out.push_str(&hit_line(hit));
            out.push('\n');
        }
    }
    out
}

fn trace(args: TraceArgs) -> anyhow::Result<()> {
    let mut manifests = Manifests::default();
    load(&args.policies, &mut manifests)?;
    load(&args.inventory, &mut manifests)?;
    let problems = validate(&manifests.policies);
    if !problems.is_empty() {
        bail!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    let inventory = Inventory::new(&manifests);
    let (source, source_name) = endpoint(&inventory, &args.from, "--from")?;
    let (destination, destination_name) = endpoint(&inventory, &args.to, "--to")?;
    let (port, protocol) = port_and_protocol(&args.port)?;
    let connection = Connection {
        source,
        destination,
        protocol: protocol.clone(),
        port,
        icmp: None,
    };
    let verdict = Evaluator::new(&manifests.policies).evaluate(&connection);
    match args.output {
        TraceOutput::Json => {
            let both = |pick: fn(&SideVerdict) -> &Vec<PolicyHit>| -> Vec<PolicyHit> {
                [&verdict.egress, &verdict.ingress]
                    .into_iter()
                    .flatten()
                    .flat_map(|side| pick(side).iter().cloned())
                    .collect()
            };
            let side = |side: &Option<SideVerdict>| {
                side.as_ref().map(|side| json!({ "action": side.action, "pending_action": side.pending_action, "enforced": side.enforced, "pending": side.pending }))
            };
            let document = json!({
                "action": verdict.action,
                "pending_action": verdict.pending_action,
                "enforced": both(|side| &side.enforced),
                "pending": both(|side| &side.pending),
                "egress": side(&verdict.egress),
                "ingress": side(&verdict.ingress),
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        TraceOutput::Table => {
            println!("{source_name} -> {destination_name}  {port}/{protocol}");
            print!("{}", side_table("egress at the source", &verdict.egress));
            print!(
                "{}",
                side_table("ingress at the destination", &verdict.ingress)
            );
            let pending = if verdict.pending_action == verdict.action {
                String::new()
            } else {
                format!("  (with staged policies: {})", verdict.pending_action)
            };
            println!(
                "verdict: {}{pending}",
                if verdict.action == Action::Allow {
                    "allow"
                } else {
                    "deny"
                }
            );
        }
    }
    Ok(())
}
