//! `caracal lab up|down|status|exec`: build a lab from a spec and leave it running, remove
//! exactly what was built (state files under --state, or every namespace with the prefix
//! after a crash), list running labs, run a command inside a pod.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use caracal_lab::{delete_with_prefix, down, Lab, LabSpec, LabState, Prefix};
use clap::{Args, Subcommand};

/// `caracal lab ...`
#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build the lab of a spec and leave it running (root or CAP_NET_ADMIN)
    Up(UpArgs),
    /// Remove a lab: everything `up` made
    Down(DownArgs),
    /// List running labs and their pods
    Status(StateArgs),
    /// Run a command inside a pod: caracal lab exec NS/POD -- CMD...
    Exec(ExecArgs),
}

#[derive(Args, Debug)]
pub struct StateArgs {
    /// Where lab state files live
    #[arg(long, default_value = "caracal-data/lab", value_name = "DIR")]
    pub state: PathBuf,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The lab spec (see examples/lab/shop.yaml)
    pub spec: PathBuf,
    /// Name prefix of every namespace and interface (1-6 lower-case letters and digits)
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Only the lab with this prefix (also when its state file is gone)
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// NAMESPACE/POD, or a pod name (a unique prefix of it is enough)
    pub pod: String,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

pub fn run(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => remove(args),
        LabCommand::Status(args) => status(&args.state),
        LabCommand::Exec(args) => exec(args),
    }
}

fn state_file(directory: &Path, prefix: &str) -> PathBuf {
    directory.join(format!("{prefix}.json"))
}

fn states(directory: &Path) -> anyhow::Result<Vec<(PathBuf, LabState)>> {
    let mut result = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Ok(result);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "json")
        {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let state: LabState = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a lab state file", path.display()))?;
            result.push((path, state));
        }
    }
    result.sort_by(|a, b| a.1.prefix.cmp(&b.1.prefix));
    Ok(result)
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let spec = LabSpec::load(&args.spec)?;
    let prefix = match &args.prefix {
        Some(text) => Prefix::new(text)?,
        None => Prefix::unique(),
    };
    let file = state_file(&args.state.state, prefix.as_str());
    if file.exists() {
        bail!(
            "a lab with prefix {} is already up ({}); run `caracal lab down --prefix {}` first",
            prefix.as_str(),
            file.display(),
            prefix.as_str()
        );
    }
    std::fs::create_dir_all(&args.state.state)
        .with_context(|| format!("cannot create {}", args.state.state.display()))?;
    eprintln!(
        "building lab {} from {} ...",
        prefix.as_str(),
        args.spec.display()
    );
    let lab = Lab::up(&spec, &args.spec, prefix.clone())
        .context("lab up failed; everything it had built was removed")?;
    let state = lab.keep();
    std::fs::write(&file, serde_json::to_string_pretty(&state)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    print_state(&state);
    println!(
        "state: {}\nremove it with: caracal lab down --prefix {}",
        file.display(),
        state.prefix
    );
    Ok(())
}

fn print_state(state: &LabState) {
    println!(
        "lab {} ({} nodes, {} pods, {} externals) from {}",
        state.prefix,
        state.nodes.len(),
        state.pods.len(),
        state.externals.len(),
        state.spec.display()
    );
    println!(
        "  {:<12} {:<44} {:<8} {:<15} NETNS",
        "NAMESPACE", "POD", "NODE", "ADDRESS"
    );
    for pod in &state.pods {
        println!(
            "  {:<12} {:<44} {:<8} {:<15} {}",
            pod.namespace, pod.name, pod.node, pod.address, pod.netns
        );
    }
    for (name, (netns, address)) in &state.externals {
        println!(
            "  {:<12} {:<44} {:<8} {:<15} {}",
            "(external)", name, "-", address, netns
        );
    }
}

fn remove(args: DownArgs) -> anyhow::Result<()> {
    let mut removed_any = false;
    for (path, state) in states(&args.state.state)? {
        if args
            .prefix
            .as_deref()
            .is_some_and(|prefix| prefix != state.prefix)
        {
            continue;
        }
        let count = down(&state)?;
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        println!("lab {}: removed {count} namespaces", state.prefix);
        removed_any = true;
    }
    if let Some(prefix) = &args.prefix {
        // After a crash the state file may be missing: sweep by prefix all the same.
        let count = delete_with_prefix(&Prefix::new(prefix)?)?;
        if count > 0 {
            println!("lab {prefix}: removed {count} namespaces without a state file");
            removed_any = true;
        }
    }
    if !removed_any {
        println!("no lab to remove");
    }
    Ok(())
}

fn status(directory: &Path) -> anyhow::Result<()> {
    let labs = states(directory)?;
    if labs.is_empty() {
        println!("no lab is up (state directory {})", directory.display());
    }
    let listing = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("cannot run ip netns list")?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for (_, state) in labs {
        let present = listing
            .lines()
            .filter(|line| line.starts_with(&format!("{}-", state.prefix)))
            .count();
        let expected = 1 + state.nodes.len() + state.pods.len() + state.externals.len();
        print_state(&state);
        println!(
            "  namespaces present: {present} of {expected}{}",
            if present == expected {
                ""
            } else {
                " (damaged: run lab down and up again)"
            }
        );
    }
    Ok(())
}

fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let labs = states(&args.state.state)?;
    let (namespace, name) = match args.pod.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, args.pod.as_str()),
    };
    let matches: Vec<_> = labs
        .iter()
        .flat_map(|(_, state)| state.pods.iter())
        .filter(|pod| {
            namespace.is_none_or(|namespace| pod.namespace == namespace)
                && pod.name.starts_with(name)
        })
        .collect();
    let pod = match matches.as_slice() {
        [pod] => pod,
        [] => bail!(
            "no pod matches `{}` in the labs under {}",
            args.pod,
            args.state.state.display()
        ),
        many => bail!(
            "`{}` matches {} pods ({}); say NAMESPACE/POD",
            args.pod,
            many.len(),
            many.iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.netns])
        .args(&args.command)
        .status()
        .context("cannot run ip netns exec")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
