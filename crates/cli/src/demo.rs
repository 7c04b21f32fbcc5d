//! `caracal demo`: the server on its defaults plus simulated cluster traffic sent through the
//! real gRPC ingest, and a note of where to look. Binds to loopback only.

use std::sync::Arc;

use caracal_server::Server;
use caracal_sim::{Protocol, SimulateConfig};
use clap::Args;

use crate::server::{load_config, ServerArgs, SystemClock};

/// Flags of `caracal demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub server: ServerArgs,
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
    crate::runtime()?.block_on(async move {
        let server = Server::bind(config, Arc::new(SystemClock)).await?;
        let (http, grpc) = (server.http_address(), server.grpc_address());
        println!("Caracal demo: loopback only, no authentication.");
        println!("  HTTP API      http://{http}/api/v1/flows   (OpenAPI: /api/v1/openapi.json, metrics: /metrics)");
        println!("  gRPC          {grpc}   (Goldmane Flows/FlowCollector/Statistics, Caracal Ingest)");
        println!("  traffic       simulated cluster, seed {}, up to {} updates/s through the gRPC ingest", args.seed, args.rate);
        println!("Try: caracal observe --server http://{http} --last 20");
        println!("     curl -s 'http://{http}/api/v1/flows?filter=action%3Ddeny&page_size=5'");
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
        let traffic = tokio::spawn(async move {
            if let Err(error) = caracal_sim::send(simulator, async {
                let _ = stopped.await;
            })
            .await
            {
                tracing::error!(%error, "simulated traffic stopped");
            }
        });
        server
            .run(async move {
                crate::shutdown_signal().await;
                let _ = stop_simulator.send(());
                let _ = traffic.await;
            })
            .await?;
        Ok(())
    })
}
