//! `caracal`: the one binary. Parses flags, wires the crates, prints. Errors print as one
//! line with their causes and exit with status 2.

mod agent;
mod demo;
mod lab;
mod observe;
mod policy;
mod server;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Flow updates decode into many small strings; mimalloc's per-thread free lists cost a
/// fraction of glibc malloc's consolidation for that pattern (bench/RESULTS.md, gRPC ingest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Network flow visibility for Kubernetes: flow logs with Kubernetes metadata and policy traces.
#[derive(Parser)]
#[command(name = "caracal", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server on its defaults with simulated cluster traffic (loopback only).
    Demo(demo::DemoArgs),
    /// Run the node agent for a lab node: nftables from policy, kernel verdicts and counters, upload.
    Agent(agent::AgentArgs),
    /// Run the server: ingest, hot window, gRPC and HTTP APIs.
    Server(server::ServerArgs),
    /// Send seeded, realistic cluster traffic to a server through its gRPC ingest.
    Simulate(simulate::SimulateArgs),
    /// Show flows from a server, like `hubble observe`.
    Observe(observe::ObserveArgs),
    /// Build, inspect and remove labs: clusters of network namespaces on this host.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Validate network policies, or trace one connection through them.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CARACAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Server(args) => server::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Observe(args) => observe::run(args),
        Command::Policy(command) => policy::run(command),
        Command::Lab(command) => lab::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A multi-threaded runtime for commands that serve or send.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
