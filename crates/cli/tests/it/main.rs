//! End-to-end tests of the `caracal` binary: real processes, real ports (0), temp dirs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_caracal");

/// Whether lab tests can run here (root); on a workstation they skip with `why`, in CI they
/// must run.
fn can_build_labs(why: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs lab tests as root: {why}"
        );
        eprintln!("skipped: {why}");
    }
    root
}

/// A `caracal server` process on ephemeral ports, killed on drop.
struct ServerProcess {
    child: Child,
    http: String,
    grpc: String,
    _data: tempfile::TempDir,
}

impl ServerProcess {
    fn start() -> ServerProcess {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(BINARY)
            .args([
                "server",
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data.path())
            .env("CARACAL_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut http, mut grpc) = (String::new(), String::new());
        while Instant::now() < deadline && grpc.is_empty() {
            let Some(Ok(line)) = lines.next() else { break };
            let field = |name: &str| {
                line.split(&format!("{name}="))
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
            };
            if let (Some(h), Some(g)) = (field("http"), field("grpc")) {
                http = h;
                grpc = g;
            }
        }
        assert!(!grpc.is_empty(), "the server printed its addresses");
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            http,
            grpc,
            _data: data,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BINARY).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_config_file_names_the_file_line_and_key() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("caracal.yaml");
    std::fs::write(&path, "http: 127.0.0.1:0\nhot_bukets: 10\n").unwrap();
    let (code, _, stderr) = run(&["server", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("caracal.yaml")
            && stderr.contains("unknown field `hot_bukets`")
            && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::write(&path, "hot_buckets: 999\ndata: ").unwrap();
    let (code, _, stderr) = run(&[
        "server",
        "--config",
        path.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("hot_buckets must be between 1 and 254, got 999"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_say_which_and_why() {
    let (code, _, stderr) = run(&["server", "--http", "not-an-address"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--http") && stderr.contains("not-an-address"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["observe", "--filter", "dest_port = http"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("column 13") && stderr.contains("takes a whole number"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["simulate", "--duration", "soon"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--duration"), "{stderr}");
}

#[test]
fn simulated_traffic_is_visible_through_observe() {
    let server = ServerProcess::start();
    let (code, stdout, stderr) = run(&[
        "simulate",
        "--server",
        &server.grpc,
        "--rate",
        "3000",
        "--duration",
        "2s",
        "--seed",
        "9",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("accepted") && stdout.contains("0 rejected"),
        "{stdout}"
    );
    let url = format!("http://{}", server.http);
    let (code, stdout, stderr) = run(&["observe", "--server", &url, "--last", "5", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let flows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(flows.len(), 5);
    let (code, stdout, _) = run(&[
        "observe", "--server", &url, "--action", "deny", "--last", "50",
    ]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert!(!rows.is_empty(), "denied flows exist in simulated traffic");
    assert!(rows.iter().all(|row| row.contains(" deny ")), "{stdout}");
    assert!(
        stdout.lines().next().unwrap().starts_with("TIME"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&[
        "observe", "--server", &url, "-n", "data", "--port", "5432", "-o", "jsonl", "--last", "20",
    ]);
    assert_eq!(code, 0);
    for line in stdout.lines() {
        let flow: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(flow["dest_port"], 5432);
    }
}

/// The Goldmane client written in Python, generated from our .proto, against this binary.
#[test]
fn a_python_goldmane_client_gets_goldmane_answers() {
    let has_grpc = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_grpc {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install grpcio and grpcio-tools (see .ci/run)"
        );
        eprintln!("skipped: python3 with grpcio and grpcio-tools is not installed (pip install grpcio grpcio-tools)");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/goldmane-python/test_goldmane_client.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(BINARY)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("Ran 3 tests") && report.contains("OK"),
        "{report}"
    );
}

fn policy_testdata(name: &str) -> String {
    format!("{}/../policy/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn policy_check_reports_every_problem_with_its_place() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("a.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  tier: security\n  selector: app == 'x'\n",
    )
    .unwrap();
    std::fs::write(
        directory.path().join("b.yml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Sideways]\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["policy", "check", directory.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("b.yml: document 1 (NetworkPolicy shop/n): spec.policyTypes[0]: `Sideways` is not Ingress or Egress"), "{stderr}");
    std::fs::remove_file(directory.path().join("b.yml")).unwrap();
    let (code, _, stderr) = run(&["policy", "check", directory.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr
            .contains("a.yaml#1: policy g names tier `security`, which no Tier resource declares"),
        "{stderr}"
    );
    let (code, stdout, stderr) =
        run(&["policy", "check", &policy_testdata("kubernetes-docs.yaml")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ok: 1 policies (0 staged)"), "{stdout}");
}

#[test]
fn policy_trace_prints_both_traces_and_the_verdict_as_json() {
    let (policies, inventory) = (
        policy_testdata("kubernetes-docs.yaml"),
        policy_testdata("inventory.yaml"),
    );
    let args = [
        "policy",
        "trace",
        "--policies",
        &policies,
        "--inventory",
        &inventory,
        "--from",
        "other/stranger",
        "--to",
        "default/db-0",
        "--port",
        "6379/tcp",
        "-o",
        "json",
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let trace: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(trace["action"], "deny");
    assert_eq!(
        trace["enforced"].as_array().unwrap().len(),
        2,
        "egress profile, then ingress end of tier"
    );
    assert_eq!(trace["ingress"]["enforced"][0]["kind"], "eot");
    assert_eq!(
        trace["ingress"]["enforced"][0]["trigger"]["name"],
        "test-network-policy"
    );
    let (code, _, stderr) = run(&[
        "policy",
        "trace",
        "--policies",
        &policies,
        "--inventory",
        &inventory,
        "--from",
        "nowhere/x",
        "--to",
        "default/db-0",
        "--port",
        "6379/tcp",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--from nowhere/x: no such pod in the inventory"),
        "{stderr}"
    );
}

/// Sends SIGTERM to processes when dropped, so a failed assertion leaves none running.
struct StopOnDrop(Vec<u32>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `caracal lab down` for a prefix when dropped, so a failed assertion leaves no lab.
struct LabDown {
    prefix: String,
    state_dir: String,
}

impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = run(&[
            "lab",
            "down",
            "--prefix",
            &self.prefix,
            "--state",
            &self.state_dir,
        ]);
    }
}

#[test]
fn lab_up_exec_status_and_down() {
    if !can_build_labs("lab commands need root") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let prefix = format!("t{:05x}", std::process::id() & 0xfffff);
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/lab/shop.yaml");
    let (code, stdout, stderr) =
        run(&["lab", "up", spec, "--prefix", &prefix, "--state", state_dir]);
    let _guard = LabDown {
        prefix: prefix.clone(),
        state_dir: state_dir.to_string(),
    };
    let cleanup = || run(&["lab", "down", "--prefix", &prefix, "--state", state_dir]);
    if code != 0 {
        cleanup();
        panic!("lab up failed: {stderr}");
    }
    assert!(
        stdout.contains("(2 nodes, 13 pods, 2 externals)"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&[
        "lab",
        "exec",
        "data/redis",
        "--state",
        state_dir,
        "--",
        "ip",
        "route",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("default via 169.254.1.1"), "{stdout}");
    let (_, stdout, _) = run(&["lab", "status", "--state", state_dir]);
    assert!(stdout.contains("namespaces present: 18 of 18"), "{stdout}");
    let (code, stdout, stderr) = cleanup();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("removed 18 namespaces"), "{stdout}");
    let listing = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains(&format!("{prefix}-")),
        "nothing left behind"
    );
}

/// Starts `caracal demo` on ephemeral ports; returns the child and its HTTP base URL.
fn start_demo(
    extra: &[&str],
    data: &std::path::Path,
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BINARY)
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });
    let mut url = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while url.is_empty() && Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
            if let Some(rest) = line.trim_start().strip_prefix("HTTP API      http://") {
                url = format!("http://{}", rest.split('/').next().unwrap());
            }
        }
    }
    assert!(!url.is_empty(), "the demo printed its address");
    (child, url, lines)
}

fn get_flows(url: &str, filter: &str) -> Vec<serde_json::Value> {
    let encoded: String = filter
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let Ok(response) = ureq_get(&format!("{url}/api/v1/flows?page_size=0&filter={encoded}")) else {
        return Vec::new();
    };
    let page: serde_json::Value = serde_json::from_str(&response).unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

fn ureq_get(url: &str) -> Result<String, String> {
    let output = Command::new("curl")
        .args(["-sf", url])
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("curl {url} failed"))
    }
}

#[test]
fn the_demo_with_simulated_traffic_serves_flows() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, url, lines) = start_demo(&["--simulate", "--rate", "2000"], data.path());
    let banner: Vec<String> = lines.try_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut flows = Vec::new();
    while flows.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        flows = get_flows(&url, "action = deny");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !flows.is_empty(),
        "denied simulated flows are served ({banner:?})"
    );
}

#[test]
fn the_demo_as_root_shows_real_lab_traffic_and_cleans_up() {
    if !can_build_labs("the lab demo needs root") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (child, url, lines) = start_demo(&[], data.path());
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !banner.iter().any(|line: &String| line.starts_with("Try:"))
    {
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
            banner.push(line);
        }
    }
    let lab_line = banner
        .iter()
        .find(|line| line.contains("real packets in lab"))
        .cloned()
        .unwrap_or_default();
    let prefix = lab_line
        .split("in lab ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut allowed, mut denied) = (Vec::new(), Vec::new());
    while (allowed.is_empty() || denied.is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        allowed = get_flows(
            &url,
            "source_name ~ cart AND dest_service_name = redis AND reporter = dst",
        );
        denied = get_flows(&url, "dest_name ~ redis AND action = deny");
    }
    // The lab agents run in the demo's process; their metrics are on the server's /metrics.
    let scrape = ureq_get(&format!("{url}/metrics")).unwrap_or_default();
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let mut child = child;
    let _ = child.wait();
    assert!(!prefix.is_empty(), "the demo built a lab: {banner:?}");
    assert!(!allowed.is_empty(), "cart -> redis service flows arrived");
    assert_eq!(
        allowed[0]["policies"]["enforced"][0]["name"],
        "redis-from-cart"
    );
    assert!(!denied.is_empty() && denied[0]["policies"]["enforced"][0]["kind"] == "eot");
    assert!(
        scrape.contains("caracal_agent_flows_total{node=\"node-a\"}")
            && scrape.contains("caracal_agent_dns_answers_total{node=\"node-b\"}"),
        "{scrape}"
    );
    let listing = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains(&format!("{prefix}-")),
        "Ctrl-C removed the lab"
    );
}

#[test]
fn agents_serve_lab_nodes_and_follow_policy_changes() {
    if !can_build_labs("lab agents need root") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/lab");
    std::fs::create_dir_all(work.path().join("shop-policies")).unwrap();
    std::fs::copy(
        format!("{examples}/shop.yaml"),
        work.path().join("shop.yaml"),
    )
    .unwrap();
    for entry in std::fs::read_dir(format!("{examples}/shop-policies"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(
            entry.path(),
            work.path().join("shop-policies").join(entry.file_name()),
        )
        .unwrap();
    }
    let state_dir = work.path().join("state");
    let prefix = format!("a{:05x}", std::process::id() & 0xfffff);
    let spec = work.path().join("shop.yaml");
    let (code, _, stderr) = run(&[
        "lab",
        "up",
        spec.to_str().unwrap(),
        "--prefix",
        &prefix,
        "--state",
        state_dir.to_str().unwrap(),
    ]);
    let _guard = LabDown {
        prefix: prefix.clone(),
        state_dir: state_dir.to_str().unwrap().to_string(),
    };
    assert_eq!(code, 0, "{stderr}");
    let down = || {
        run(&[
            "lab",
            "down",
            "--prefix",
            &prefix,
            "--state",
            state_dir.to_str().unwrap(),
        ])
    };
    let state_file = state_dir.join(format!("{prefix}.json"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let pod = |workload: &str| {
        state["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pod| pod["workload"] == workload)
            .unwrap()
            .clone()
    };
    let server = ServerProcess::start();
    let mut agents: Vec<Child> = ["node-a", "node-b"]
        .iter()
        .map(|node| {
            Command::new(BINARY)
                .args([
                    "agent",
                    "--lab-state",
                    state_file.to_str().unwrap(),
                    "--node",
                    node,
                    "--server",
                    &server.grpc,
                    "--flush-interval",
                    "1",
                    "--metrics",
                    "127.0.0.1:0",
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let _stop_agents = StopOnDrop(agents.iter().map(Child::id).collect());
    // Each agent says where its metrics are; keep reading so it never blocks on stderr.
    let metrics_urls: Vec<String> = agents
        .iter_mut()
        .map(|agent| {
            let (found, receive) = std::sync::mpsc::channel();
            let stderr = BufReader::new(agent.stderr.take().unwrap());
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    if let Some((_, rest)) = line.split_once("metrics on ") {
                        let _ = found.send(rest.to_string());
                    }
                }
            });
            receive
                .recv_timeout(Duration::from_secs(10))
                .expect("agent metrics address")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let connect = |from: &str, to: &serde_json::Value, port: u16| {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{port}",
            to["address"].as_str().unwrap()
        );
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                pod(from)["netns"].as_str().unwrap(),
                "timeout",
                "1",
                "bash",
                "-c",
                &script,
            ])
            .output();
    };
    let url = format!("http://{}", server.http);
    let wait_for = |filter: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut flows = Vec::new();
        while flows.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            flows = get_flows(&url, filter);
        }
        flows
    };
    connect("frontend", &pod("cart"), 8080);
    connect("frontend", &pod("redis"), 6379);
    let allowed = wait_for(
        "source_name ~ frontend AND dest_name ~ cart AND reporter = dst AND action = allow",
    );
    let denied = wait_for("source_name ~ frontend AND dest_name ~ redis AND action = deny");
    // Now block frontend -> cart in the security tier, while everything runs.
    std::fs::write(
        work.path().join("shop-policies/40-block-cart.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.block-cart}\nspec:\n  tier: security\n  selector: app == 'cart'\n  types: [Ingress]\n  ingress:\n    - action: Deny\n      source: {selector: app == 'frontend'}\n    - action: Pass\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    connect("frontend", &pod("cart"), 8080);
    let blocked = wait_for("source_name ~ frontend AND dest_name ~ cart AND action = deny AND policy.name = security.block-cart");
    let scrape = ureq_get(&metrics_urls[0]).unwrap();
    let metric = |name: &str| -> u64 {
        scrape
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}{{node=\"node-a\"}} ")))
            .unwrap_or_else(|| panic!("{name} in {scrape}"))
            .parse()
            .unwrap()
    };
    assert!(metric("caracal_agent_verdicts_total") > 0, "{scrape}");
    assert!(
        metric("caracal_agent_upload_acknowledged_total") > 0,
        "{scrape}"
    );
    assert_eq!(metric("caracal_agent_upload_dropped_total"), 0);
    for agent in &mut agents {
        let _ = Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        let _ = agent.wait();
    }
    drop(server);
    let (code, _, _) = down();
    assert_eq!(code, 0);
    assert!(
        !allowed.is_empty(),
        "frontend -> cart reported at cart's node"
    );
    assert!(!denied.is_empty(), "frontend -> redis denied");
    assert_eq!(denied[0]["policies"]["enforced"][0]["kind"], "eot");
    assert!(
        !blocked.is_empty(),
        "after the policy change the new rule denied frontend -> cart"
    );
}
