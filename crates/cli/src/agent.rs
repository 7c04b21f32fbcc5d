//! `caracal agent`: the node agent as its own process, for a lab node. It programs the node's nftables from the spec's policies and re-renders them
//! when a policy file changes, reads NFLOG verdicts and conntrack in the node's namespace,
//! uploads flow updates until interrupted, and serves its metrics.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use caracal_agent::{Assembler, AssemblyConfig, NodeAgent, NodeSockets, UploadConfig, Uploader};
use caracal_lab::{in_namespace, LabState};
use caracal_policy::{render, Evaluator, Inventory, LocalEndpoint, Manifests, Ruleset};
use clap::Args;

/// Flags of `caracal agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The lab state file `caracal lab up` wrote (caracal-data/lab/PREFIX.json)
    #[arg(long, value_name = "FILE")]
    pub lab_state: PathBuf,
    /// The node this agent serves
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// gRPC address of the server
    #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR")]
    pub server: String,
    /// Seconds between flow flushes
    #[arg(long, default_value_t = 15, value_name = "S")]
    pub flush_interval: i64,
    /// NFLOG group the ruleset logs verdicts to
    #[arg(long, default_value_t = caracal_lab::NFLOG_GROUP, value_name = "N")]
    pub nflog_group: u16,
    /// Where to serve Prometheus metrics (`/metrics`) and `/healthz`
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub metrics: std::net::SocketAddr,
}

/// Serves the agent's metrics until the process ends.
async fn serve_metrics(
    address: std::net::SocketAddr,
    node: String,
    stats: std::sync::Arc<caracal_agent::NodeStats>,
    uploader: Uploader,
) -> anyhow::Result<std::net::SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--metrics {address}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let scrape = move || {
        let view = caracal_agent::metrics::AgentMetrics {
            node: &node,
            stats: &stats,
            uploader: &uploader,
        };
        let body = caracal_agent::metrics::render(&[view]);
        async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

fn render_node(
    state: &LabState,
    manifests: &Manifests,
    node: &str,
    generation: u32,
    group: u16,
) -> anyhow::Result<Ruleset> {
    let inventory = Inventory::new(manifests);
    let endpoints: Vec<LocalEndpoint> = state
        .pods
        .iter()
        .filter(|pod| pod.node == node)
        .map(|pod| {
            let address = IpAddr::V4(pod.address);
            let workload = inventory
                .endpoint(address)
                .workload
                .context("a lab pod missing from its inventory")?;
            Ok(LocalEndpoint {
                workload,
                address,
                interface: pod.host_interface.clone(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(render(
        &manifests.policies,
        &inventory,
        &endpoints,
        generation,
        group,
    )?)
}

fn apply(netns: &str, ruleset: &Ruleset) -> anyhow::Result<()> {
    caracal_lab::apply_nftables_in(netns, &ruleset.text).context("nft refused the ruleset")
}

/// The policy files now and when each last changed: a new, removed or edited file differs.
fn modified(state: &LabState) -> Vec<(PathBuf, Option<SystemTime>)> {
    state
        .policy_files()
        .into_iter()
        .map(|file| {
            let time = std::fs::metadata(&file)
                .and_then(|meta| meta.modified())
                .ok();
            (file, time)
        })
        .collect()
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.lab_state)
        .with_context(|| format!("cannot read {}", args.lab_state.display()))?;
    let state: LabState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a lab state file", args.lab_state.display()))?;
    let netns = state
        .nodes
        .get(&args.node)
        .with_context(|| {
            format!(
                "--node {}: the lab has nodes {}",
                args.node,
                state.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?
        .clone();
    let server = if args.server.contains("://") {
        args.server.clone()
    } else {
        format!("http://{}", args.server)
    };
    let manifests = state.manifests()?;
    let mut generation = (SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 1_000_000_000) as u32;
    let ruleset = render_node(&state, &manifests, &args.node, generation, args.nflog_group)?;
    apply(&netns, &ruleset)?;
    let group = args.nflog_group;
    let sockets = in_namespace(&netns, move || NodeSockets::open(group))?
        .context("opening the node's kernel sockets")?;
    let services = caracal::lab_agents::service_addresses(&state.services);
    let local = state
        .pods
        .iter()
        .filter(|pod| pod.node == args.node)
        .map(|pod| IpAddr::V4(pod.address))
        .collect();
    let mut assembler = Assembler::new(
        AssemblyConfig::default(),
        Inventory::new(&manifests),
        Evaluator::new(&manifests.policies),
        local,
        services,
    );
    assembler.set_ruleset(generation, ruleset.tags);
    crate::runtime()?.block_on(async move {
        let (uploader, task) = Uploader::new(UploadConfig { server, sender: args.node.clone(), max_buffered_batches: 10_000, max_backoff: Duration::from_secs(5) });
        tokio::spawn(task);
        let agent = NodeAgent::start(sockets, assembler, uploader.clone(), args.flush_interval);
        let metrics = serve_metrics(args.metrics, args.node.clone(), agent.stats.clone(), uploader.clone()).await?;
        eprintln!("agent for lab node {} ({netns}) running; ruleset generation {generation}; metrics on http://{metrics}/metrics", args.node);
        let mut seen = modified(&state);
        let shutdown = crate::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = modified(&state);
            if now == seen {
                continue;
            }
            seen = now;
            // A policy file changed: render again and apply; a bad edit keeps the old rules.
            match state.manifests() {
                Ok(updated) => {
                    generation = generation.wrapping_add(1);
                    match render_node(&state, &updated, &args.node, generation, group).and_then(|ruleset| apply(&netns, &ruleset).map(|()| ruleset)) {
                        Ok(ruleset) => {
                            agent.set_ruleset(generation, ruleset.tags, Some(Evaluator::new(&updated.policies)));
                            eprintln!("policies changed: ruleset generation {generation} applied ({} policies)", updated.policies.policies.len());
                        }
                        Err(error) => eprintln!("policies changed but were not applied: {error:#}"),
                    }
                }
                Err(error) => eprintln!("policies changed but do not load; keeping the rules in force: {error}"),
            }
        }
        agent.stop();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while uploader.pending() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
}
