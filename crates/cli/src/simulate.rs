//! `caracal simulate`: seeded cluster traffic through the real gRPC ingest.

use std::time::Duration;

use caracal_sim::{Protocol, SimulateConfig};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    /// Caracal's batched protocol (many updates per message).
    Batched,
    /// Goldmane's FlowCollector.Connect, one receipt per update, like Felix.
    Goldmane,
}

/// Flags of `caracal simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// gRPC address of the server
    #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR")]
    pub server: String,
    /// Flow updates per second at the daily peak
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub rate: u64,
    /// How long to send (e.g. 30s, 5m); runs until interrupted when omitted
    #[arg(long, value_parser = humantime::parse_duration, value_name = "D")]
    pub duration: Option<Duration>,
    /// Seed of the simulated cluster and its traffic
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Nodes of the simulated cluster
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub nodes: usize,
    /// Wire protocol
    #[arg(long, value_enum, default_value = "batched")]
    pub protocol: ProtocolArg,
    /// PEM authority of the server's certificate (turns on TLS; needs --tls-cert and --tls-key)
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM client key
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Name the server's certificate carries
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub tls_domain: String,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let config = SimulateConfig {
        server: args.server,
        rate: args.rate,
        duration: args.duration,
        seed: args.seed,
        nodes: args.nodes,
        protocol: match args.protocol {
            ProtocolArg::Batched => Protocol::Batched,
            ProtocolArg::Goldmane => Protocol::Goldmane,
        },
        sender: format!("simulator-{}", args.seed),
        tls: match (args.tls_ca, args.tls_cert, args.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(caracal_sim::ClientTls {
                ca,
                cert,
                key,
                domain: args.tls_domain,
            }),
            _ => None,
        },
    };
    crate::runtime()?.block_on(async move {
        eprintln!(
            "sending simulated traffic to {} at up to {} updates/s (seed {}, {} nodes)",
            config.server, config.rate, config.seed, config.nodes
        );
        let report = caracal_sim::send(config, crate::shutdown_signal()).await?;
        println!(
            "sent {} updates: {} accepted, {} rejected",
            report.sent, report.accepted, report.rejected
        );
        Ok(())
    })
}
