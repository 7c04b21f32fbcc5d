//! The server component: its configuration (the same keys as the CLI flags and the YAML file),
//! binding, and the tasks it runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use caracal_flow::time::Clock;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::grpc::GrpcApi;
use crate::hub::Hub;
use crate::ring::{RingConfig, RingConfigError};

/// Server configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP API, console, SSE and `/metrics`.
    pub http: SocketAddr,
    /// Address of the gRPC API (Goldmane-compatible services and Caracal ingest).
    pub grpc: SocketAddr,
    /// Directory for server data; the hot window is saved there on shutdown and restored on start.
    pub data: PathBuf,
    /// Closed 15 s buckets kept hot (240 = one hour).
    pub hot_buckets: usize,
    /// Largest page a query returns, also for "all".
    pub max_page_size: usize,
    /// PEM certificate chain of the gRPC server; with `tls_key` and `tls_client_ca` it turns on
    /// TLS with mandatory client certificates (how Felix and agents connect outside the demo).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the gRPC server.
    pub tls_key: Option<PathBuf>,
    /// PEM certificate authority that client certificates must chain to.
    pub tls_client_ca: Option<PathBuf>,
    /// File holding the bearer token the HTTP API and the gRPC query services require;
    /// ingest (`FlowCollector`, `Ingest`) is authenticated by client certificates instead.
    pub api_token_file: Option<PathBuf>,
    /// The cluster's name, shown by the console and in `/api/v1/status`.
    pub cluster: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8081)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data: PathBuf::from("caracal-data"),
            hot_buckets: 240,
            max_page_size: 10_000,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            api_token_file: None,
            cluster: "default".into(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A bad configuration value.
    #[error("invalid configuration: {0}")]
    Config(#[from] RingConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {address} ({api}): {source}")]
    Bind {
        /// Which API.
        api: &'static str,
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    Data {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS settings are incomplete or unreadable.
    #[error("tls: {0}")]
    Tls(String),
    /// The API token file is unusable.
    #[error("api token file {path}: {reason}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A server task failed.
    #[error("server failed: {0}")]
    Serve(String),
}

/// A bound server, ready to run.
pub struct Server {
    config: ServerConfig,
    hub: Arc<Hub>,
    http: TcpListener,
    grpc: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    token: Option<Arc<str>>,
}

fn read_pem(what: &str, path: &std::path::Path) -> Result<Vec<u8>, ServerError> {
    let bytes = std::fs::read(path).map_err(|error| {
        ServerError::Tls(format!("cannot read {what} {}: {error}", path.display()))
    })?;
    if !bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        return Err(ServerError::Tls(format!(
            "{what} {} is not PEM (no -----BEGIN line)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// TLS with mandatory client certificates, or none; a partial setting is an error.
fn tls_config(
    config: &ServerConfig,
) -> Result<Option<tonic::transport::ServerTlsConfig>, ServerError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    match (&config.tls_cert, &config.tls_key, &config.tls_client_ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => {
            let identity =
                Identity::from_pem(read_pem("tls_cert", cert)?, read_pem("tls_key", key)?);
            let tls = ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(Certificate::from_pem(read_pem("tls_client_ca", ca)?))
                .client_auth_optional(false);
            Ok(Some(tls))
        }
        _ => Err(ServerError::Tls(
            "tls_cert, tls_key and tls_client_ca go together: set all three or none".into(),
        )),
    }
}

fn read_token(config: &ServerConfig) -> Result<Option<Arc<str>>, ServerError> {
    let Some(path) = &config.api_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|error| ServerError::Token {
        path: path.clone(),
        reason: error.to_string(),
    })?;
    let token = text.trim();
    if token.len() < 16 {
        return Err(ServerError::Token {
            path: path.clone(),
            reason: "the token must be at least 16 characters".into(),
        });
    }
    Ok(Some(Arc::from(token)))
}

impl Server {
    /// Validates the configuration, restores saved state and binds both listeners.
    pub async fn bind(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<Server, ServerError> {
        let ring = RingConfig {
            hot_buckets: config.hot_buckets,
            max_page_size: config.max_page_size,
        };
        let tls = tls_config(&config)?;
        let token = read_token(&config)?;
        let hub = Hub::new(ring, clock)?;
        hub.set_cluster(&config.cluster);
        std::fs::create_dir_all(&config.data).map_err(|source| ServerError::Data {
            path: config.data.clone(),
            source,
        })?;
        crate::snapshot::restore(&hub, &config.data).map_err(|source| ServerError::Data {
            path: config.data.clone(),
            source,
        })?;
        let http = TcpListener::bind(config.http)
            .await
            .map_err(|source| ServerError::Bind {
                api: "http",
                address: config.http,
                source,
            })?;
        let grpc = TcpListener::bind(config.grpc)
            .await
            .map_err(|source| ServerError::Bind {
                api: "grpc",
                address: config.grpc,
                source,
            })?;
        Ok(Server {
            config,
            hub,
            http,
            grpc,
            tls,
            token,
        })
    }

    /// The HTTP address actually bound.
    pub fn http_address(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.http)
    }

    /// The gRPC address actually bound.
    pub fn grpc_address(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc)
    }

    /// The shared state, for in-process use.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Serves until `shutdown` completes, then saves the hot window.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            config,
            hub,
            http,
            grpc,
            tls,
            token,
        } = self;
        let (stop, _) = tokio::sync::watch::channel(false);
        let ticker = {
            let hub = hub.clone();
            let mut stopped = stop.subscribe();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_secs(1));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = interval.tick() => hub.tick(),
                        _ = stopped.changed() => return,
                    }
                }
            })
        };
        let http_server = {
            let mut stopped = stop.subscribe();
            let app = crate::http::router(hub.clone(), token.clone());
            tokio::spawn(async move {
                axum::serve(http, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.changed().await;
                    })
                    .await
            })
        };
        let grpc_server = {
            let mut stopped = stop.subscribe();
            let routes = GrpcApi::new(hub.clone()).router(token);
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
            tokio::spawn(async move {
                // Batches of thousands of updates are hundreds of kilobytes: HTTP/2's default
                // 64 KiB windows would stall every sender on window updates.
                let mut builder = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .initial_stream_window_size(Some(8 << 20))
                    .initial_connection_window_size(Some(16 << 20));
                if let Some(tls) = tls {
                    builder = builder.tls_config(tls)?;
                }
                builder
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stopped.changed().await;
                    })
                    .await
            })
        };
        shutdown.await;
        hub.begin_shutdown();
        let _ = stop.send(true);
        let _ = ticker.await;
        // Streams never end on their own: give open ones a moment, then end the servers, so
        // nothing is ingested after the hot window is saved.
        let (mut http_server, mut grpc_server) = (http_server, grpc_server);
        if tokio::time::timeout(Duration::from_secs(3), &mut http_server)
            .await
            .is_err()
        {
            http_server.abort();
            let _ = http_server.await;
        }
        if tokio::time::timeout(Duration::from_secs(3), &mut grpc_server)
            .await
            .is_err()
        {
            grpc_server.abort();
            let _ = grpc_server.await;
        }
        crate::snapshot::save(&hub, &config.data).map_err(|source| ServerError::Data {
            path: config.data.clone(),
            source,
        })?;
        Ok(())
    }
}
