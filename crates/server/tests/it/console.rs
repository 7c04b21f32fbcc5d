//! The embedded console in real headless Chromium: a server on the wall clock fed by the
//! simulator (and one flow whose names are HTML and script injections) runs
//! `web/tests/console.mjs`, which drives Debian's Chromium with playwright-core and saves a
//! screenshot of each page.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use caracal_flow::time::{Clock, SystemClock};
use caracal_flow::*;
use caracal_server::{Server, ServerConfig};
use caracal_sim::{Protocol, SimulateConfig};

/// A flow whose every network string is an injection attempt.
fn hostile_flow(start: i64) -> Flow {
    let mut flow = crate::update("web", "db", 5432, Action::Allow, start, 4096);
    flow.key.source.namespace = "xss".into();
    flow.key.source.name = "\"><img src=x onerror=window.__xss=2>".into();
    flow.source_labels = Labels::new(vec![
        "app=<script>window.__xss=1</script>".into(),
        "note=\"><img src=x onerror=window.__xss=2>".into(),
    ]);
    flow.dest_domains =
        DomainSet::from_members(["<script>window.__xss=3</script>.example".to_string()]);
    flow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Debian's chromium for the browser tests"
        );
        eprintln!(
            "skipped the browser tests: {chromium} is not installed (apt-get install chromium)"
        );
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: "127.0.0.1:0".parse().unwrap(),
        data: data.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let server = Server::bind(config, Arc::new(SystemClock)).await.unwrap();
    let (http, grpc, hub) = (server.http_address(), server.grpc_address(), server.hub());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let now = SystemClock.now();
    for result in hub.ingest_many(&[hostile_flow(now - now.rem_euclid(15) - 15)], None) {
        result.unwrap();
    }
    let (stop_simulator, simulator_stopped) = tokio::sync::oneshot::channel::<()>();
    let simulator = tokio::spawn(caracal_sim::send(
        SimulateConfig {
            server: grpc.to_string(),
            rate: 200,
            duration: Some(Duration::from_secs(600)),
            seed: 5,
            nodes: 3,
            protocol: Protocol::Batched,
            sender: "browser-test".into(),
            tls: None,
        },
        async {
            let _ = simulator_stopped.await;
        },
    ));
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");
    // Screenshots go under target/ unless CARACAL_SCREENSHOTS (relative to the workspace)
    // names a folder, e.g. docs/screenshots to refresh the README's pictures.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let screenshots = workspace
        .join(
            std::env::var("CARACAL_SCREENSHOTS")
                .unwrap_or_else(|_| "target/console-screenshots".into()),
        )
        .to_string_lossy()
        .into_owned();
    let base = format!("http://{http}");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["tests/console.mjs", &base, &screenshots])
            .current_dir(web)
            .env("CHROMIUM", chromium)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs the browser tests");
    let _ = stop_simulator.send(());
    let _ = simulator.await;
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(output.status.success(), "browser tests failed:\n{report}");
}
