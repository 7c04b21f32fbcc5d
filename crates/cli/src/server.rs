//! `caracal server`: flags and an optional YAML file with the same keys, flags winning.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use caracal_flow::time::SystemClock;
use caracal_server::{Server, ServerConfig};
use clap::Args;

/// Flags of `caracal server` (and of the demo's server).
#[derive(Args, Debug, Default, Clone)]
pub struct ServerArgs {
    /// HTTP API, console, SSE and /metrics [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// gRPC API: Goldmane-compatible services and Caracal ingest [default: 127.0.0.1:7443]
    #[arg(long, value_name = "ADDR")]
    pub grpc: Option<SocketAddr>,
    /// Data directory; the hot window is saved there on shutdown [default: ./caracal-data]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// YAML file with the same keys as the flags (http, grpc, data, hot_buckets, max_page_size,
    /// cluster, tls_cert, tls_key, tls_client_ca, api_token_file)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Closed 15 s buckets kept hot [default: 240, one hour]
    #[arg(long, value_name = "N")]
    pub hot_buckets: Option<usize>,
    /// Largest page a query returns [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_page_size: Option<usize>,
    /// PEM certificate of the gRPC server; with --tls-key and --tls-client-ca turns on TLS
    /// with mandatory client certificates
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the gRPC server
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM authority that client certificates (Felix, agents) must chain to
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// File with the bearer token the HTTP API and gRPC query services require
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// The cluster's name, shown by the console [default: default]
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

/// The configuration: defaults, then the file, then flags.
pub fn load_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            serde_yaml::from_str::<ServerConfig>(&text)
                .map_err(|error| anyhow::anyhow!("config file {}: {error}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(http) = args.http {
        config.http = http;
    }
    if let Some(grpc) = args.grpc {
        config.grpc = grpc;
    }
    if let Some(data) = &args.data {
        config.data = data.clone();
    }
    if let Some(hot_buckets) = args.hot_buckets {
        config.hot_buckets = hot_buckets;
    }
    if let Some(max_page_size) = args.max_page_size {
        config.max_page_size = max_page_size;
    }
    if let Some(cluster) = &args.cluster {
        config.cluster.clone_from(cluster);
    }
    for (flag, value) in [
        (&mut config.tls_cert, &args.tls_cert),
        (&mut config.tls_key, &args.tls_key),
        (&mut config.tls_client_ca, &args.tls_client_ca),
        (&mut config.api_token_file, &args.api_token_file),
    ] {
        if value.is_some() {
            flag.clone_from(value);
        }
    }
    Ok(config)
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    crate::runtime()?.block_on(async move {
        let server = Server::bind(config, Arc::new(SystemClock)).await?;
        tracing::info!(http = %server.http_address(), grpc = %server.grpc_address(), "caracal server listening");
        server.run(crate::shutdown_signal()).await?;
        Ok(())
    })
}
