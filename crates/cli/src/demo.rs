//! `caracal demo`: the server on its defaults plus simulated cluster traffic sent through the
//! real gRPC ingest, and a note of where to look. Binds to loopback only.

use std::sync::Arc;

use caracal_server::Server;
use caracal_sim::{Protocol, SimulateConfig};
use clap::Args;

use caracal_flow::time::SystemClock;

use crate::server::{load_config, ServerArgs};

/// Flags of `caracal demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Use simulated traffic even when a lab could be built
    #[arg(long)]
    pub simulate: bool,
    /// Lab spec to build instead of the built-in shop (needs root or CAP_NET_ADMIN)
    #[arg(long, value_name = "FILE")]
    pub lab_spec: Option<std::path::PathBuf>,
    /// Simulated flow updates per second at the daily peak
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub rate: u64,
    /// Seed of the simulated cluster
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = load_config(&args.server)?;
    anyhow::ensure!(
        config.tls_cert.is_none() && config.api_token_file.is_none(),
        "the demo runs without TLS or tokens on loopback; use `caracal server` for those"
    );
    anyhow::ensure!(
        config.http.ip().is_loopback() && config.grpc.ip().is_loopback(),
        "the demo has no authentication and binds to loopback only; use `caracal server` for other addresses"
    );
    let data = config.data.clone();
    crate::runtime()?.block_on(async move {
        let server = Server::bind(config, Arc::new(SystemClock)).await?;
        let (http, grpc) = (server.http_address(), server.grpc_address());
        println!("Caracal demo: loopback only, no authentication.");
        println!("  HTTP API      http://{http}/api/v1/flows   (OpenAPI: /api/v1/openapi.json, metrics: /metrics)");
        println!("  gRPC          {grpc}   (Goldmane Flows/FlowCollector/Statistics, Caracal Ingest)");
        let lab = if args.simulate { Err("--simulate was given".to_string()) } else { start_lab(&args, &data, &format!("http://{grpc}")).await };
        let traffic = match lab {
            Ok(running) => {
                server.hub().metrics.add_source(running.agents.metrics_source(&running.lab));
                println!(
                    "  traffic       real packets in lab {} ({} nodes, {} pods): nftables policies, one agent per node",
                    running.lab.prefix.as_str(),
                    running.lab.nodes.len(),
                    running.lab.pods.len()
                );
                Traffic::Lab(Box::new(running))
            }
            Err(reason) => {
                println!("  traffic       simulated cluster (no lab: {reason}), seed {}, up to {} updates/s", args.seed, args.rate);
                let simulator = SimulateConfig {
                    server: grpc.to_string(),
                    rate: args.rate,
                    duration: None,
                    seed: args.seed,
                    nodes: 3,
                    protocol: Protocol::Batched,
                    sender: "demo-simulator".into(),
                    tls: None,
                };
                let (stop_simulator, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    if let Err(error) = caracal_sim::send(simulator, async {
                        let _ = stopped.await;
                    })
                    .await
                    {
                        tracing::error!(%error, "simulated traffic stopped");
                    }
                });
                Traffic::Simulated(stop_simulator, task)
            }
        };
        println!("Try: caracal observe --server http://{http} --last 20");
        println!("     curl -s 'http://{http}/api/v1/flows?filter=action%3Ddeny&page_size=5'");
        server
            .run(async move {
                crate::shutdown_signal().await;
                match traffic {
                    Traffic::Simulated(stop, task) => {
                        let _ = stop.send(());
                        let _ = task.await;
                    }
                    Traffic::Lab(running) => {
                        // Stop the traffic, flush the agents, give uploads a moment, remove the lab.
                        let LabRun { lab, traffic, agents } = *running;
                        drop(traffic);
                        for agent in agents.agents {
                            agent.stop();
                        }
                        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
                        while agents.uploaders.iter().any(|uploader| uploader.pending() > 0) && std::time::Instant::now() < deadline {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        drop(lab);
                        println!("lab removed");
                    }
                }
            })
            .await?;
        Ok(())
    })
}

enum Traffic {
    Simulated(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    Lab(Box<LabRun>),
}

struct LabRun {
    lab: caracal_lab::Lab,
    traffic: caracal_lab::TrafficRunner,
    agents: caracal::lab_agents::LabAgents,
}

/// The built-in shop lab, written out so its relative policy paths resolve.
const SHOP_FILES: [(&str, &str); 5] = [
    ("shop.yaml", include_str!("../../../examples/lab/shop.yaml")),
    (
        "shop-policies/00-tiers.yaml",
        include_str!("../../../examples/lab/shop-policies/00-tiers.yaml"),
    ),
    (
        "shop-policies/10-security.yaml",
        include_str!("../../../examples/lab/shop-policies/10-security.yaml"),
    ),
    (
        "shop-policies/20-data.yaml",
        include_str!("../../../examples/lab/shop-policies/20-data.yaml"),
    ),
    (
        "shop-policies/30-staged.yaml",
        include_str!("../../../examples/lab/shop-policies/30-staged.yaml"),
    ),
];

fn can_build_labs() -> Result<(), String> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err("building a lab needs root (or CAP_NET_ADMIN)".into());
    }
    for tool in ["ip", "nft"] {
        if std::process::Command::new(tool).arg("-V").output().is_err()
            && std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_err()
        {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    Ok(())
}

async fn start_lab(
    args: &DemoArgs,
    data: &std::path::Path,
    server: &str,
) -> Result<LabRun, String> {
    can_build_labs()?;
    let spec_path = match &args.lab_spec {
        Some(path) => path.clone(),
        None => {
            let directory = data.join("demo-lab");
            for (name, text) in SHOP_FILES {
                let path = directory.join(name);
                std::fs::create_dir_all(path.parent().expect("file in a directory"))
                    .map_err(|error| error.to_string())?;
                std::fs::write(&path, text)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            }
            directory.join("shop.yaml")
        }
    };
    let spec = caracal_lab::LabSpec::load(&spec_path).map_err(|error| error.to_string())?;
    let lab = caracal_lab::Lab::up(&spec, &spec_path, caracal_lab::Prefix::unique())
        .map_err(|error| format!("lab up failed: {error}"))?;
    let agents =
        caracal::lab_agents::start(&lab, server, 15).map_err(|error| format!("{error:#}"))?;
    let traffic = caracal_lab::TrafficRunner::start(&lab, &spec, &spec.traffic)
        .map_err(|error| error.to_string())?;
    Ok(LabRun {
        lab,
        traffic,
        agents,
    })
}
