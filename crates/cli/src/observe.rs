//! `caracal observe`: flows from a server's HTTP API as a compact table, JSON or JSON lines,
//! once or following the live stream. Flags compose into one filter expression that is
//! checked locally with the same parser the server uses.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use caracal_flow::filter::parse;
use caracal_flow::{Action, FlowRecord, PolicyHit, PolicyKind};
use clap::{Args, ValueEnum};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// A compact table.
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
}

/// Flags of `caracal observe`.
#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// Flows from or to this namespace
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Source pod or workload name contains this ([NS/]NAME)
    #[arg(long, value_name = "[NS/]POD")]
    pub from_pod: Option<String>,
    /// Destination pod or workload name contains this ([NS/]NAME)
    #[arg(long, value_name = "[NS/]POD")]
    pub to_pod: Option<String>,
    /// Source namespace
    #[arg(long, value_name = "NS")]
    pub from_namespace: Option<String>,
    /// Destination namespace
    #[arg(long, value_name = "NS")]
    pub to_namespace: Option<String>,
    /// Either end carries this label (KEY=VALUE); repeat to require several
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Destination port
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Protocol (tcp, udp, icmp, ...)
    #[arg(long, value_name = "PROTO")]
    pub protocol: Option<String>,
    /// Verdict
    #[arg(long, value_enum)]
    pub action: Option<ActionArg>,
    /// A policy name in the enforced or pending trace
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// A filter expression, e.g. 'dest_port IN (80, 443) AND NOT source_namespace = test'
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Only flows of the last duration (e.g. 5m, 1h)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "D")]
    pub since: Option<Duration>,
    /// The newest N flows
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub last: usize,
    /// Keep printing flows as buckets close
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// Server HTTP address
    #[arg(long, default_value = "http://127.0.0.1:8081", value_name = "URL")]
    pub server: String,
    /// File with the server's API token
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ActionArg {
    Allow,
    Deny,
}

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The filter the flags describe.
pub fn compose_filter(args: &ObserveArgs) -> anyhow::Result<String> {
    let mut terms: Vec<String> = Vec::new();
    if let Some(namespace) = &args.namespace {
        terms.push(format!(
            "(source_namespace = {0} OR dest_namespace = {0})",
            quoted(namespace)
        ));
    }
    for (side, pod) in [("source", &args.from_pod), ("dest", &args.to_pod)] {
        if let Some(pod) = pod {
            match pod.split_once('/') {
                Some((namespace, name)) => {
                    terms.push(format!("{side}_namespace = {}", quoted(namespace)));
                    terms.push(format!("{side}_name ~ {}", quoted(name)));
                }
                None => terms.push(format!("{side}_name ~ {}", quoted(pod))),
            }
        }
    }
    if let Some(namespace) = &args.from_namespace {
        terms.push(format!("source_namespace = {}", quoted(namespace)));
    }
    if let Some(namespace) = &args.to_namespace {
        terms.push(format!("dest_namespace = {}", quoted(namespace)));
    }
    for label in &args.label {
        let Some((key, value)) = label.split_once('=') else {
            bail!("--label {label}: expected KEY=VALUE")
        };
        terms.push(format!(
            "(source_label {0} = {1} OR dest_label {0} = {1})",
            quoted(key),
            quoted(value)
        ));
    }
    if let Some(port) = args.port {
        terms.push(format!("dest_port = {port}"));
    }
    if let Some(protocol) = &args.protocol {
        terms.push(format!("proto = {}", quoted(protocol)));
    }
    if let Some(action) = args.action {
        terms.push(format!(
            "action = {}",
            if matches!(action, ActionArg::Allow) {
                "allow"
            } else {
                "deny"
            }
        ));
    }
    if let Some(policy) = &args.policy {
        terms.push(format!("policy.name = {}", quoted(policy)));
    }
    if let Some(filter) = &args.filter {
        parse(filter).map_err(|error| anyhow::anyhow!("--filter: {error}"))?;
        terms.push(format!("({filter})"));
    }
    let filter = terms.join(" AND ");
    parse(&filter)
        .map_err(|error| anyhow::anyhow!("the flags make an invalid filter `{filter}`: {error}"))?;
    Ok(filter)
}

#[derive(Deserialize)]
struct Page {
    items: Vec<FlowRecord>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

fn get(url: &str, token: Option<&str>) -> anyhow::Result<ureq::Response> {
    let mut request = ureq::get(url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    match request.call() {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, response)) => {
            let message = response
                .into_json::<ErrorBody>()
                .map(|body| body.error)
                .unwrap_or_default();
            bail!("server answered {status}: {message}")
        }
        Err(error) => Err(anyhow::anyhow!(error)).with_context(|| format!("cannot reach {url}")),
    }
}

pub fn run(args: ObserveArgs) -> anyhow::Result<()> {
    let filter = compose_filter(&args)?;
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token-file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let encoded: String = url_encode(&filter);
    let base = args.server.trim_end_matches('/');
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let since = args
        .since
        .map(|since| format!("&start=-{}", since.as_secs().max(1)))
        .unwrap_or_default();
    let url = format!(
        "{base}/api/v1/flows?filter={encoded}&page_size={}{since}",
        args.last
    );
    let mut items = get(&url, token.as_deref())?
        .into_json::<Page>()
        .context("the server's answer is not a flow page")?
        .items;
    items.reverse();
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?,
        Output::Jsonl => {
            for item in &items {
                writeln!(out, "{}", serde_json::to_string(item)?)?;
            }
        }
        Output::Table => {
            writeln!(out, "{}", table_header())?;
            for item in &items {
                writeln!(out, "{}", table_row(item))?;
            }
        }
    }
    out.flush()?;
    if !args.follow {
        return Ok(());
    }
    let response = get(
        &format!("{base}/api/v1/flows/stream?filter={encoded}"),
        token.as_deref(),
    )?;
    let mut event = String::new();
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.context("the live stream broke")?;
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            if event == "lagged" {
                bail!(
                    "the server dropped this stream because it fell behind: {}",
                    data.trim()
                );
            }
            let record: FlowRecord =
                serde_json::from_str(data.trim()).context("a streamed flow is not valid JSON")?;
            match args.output {
                Output::Table => writeln!(out, "{}", table_row(&record))?,
                Output::Json | Output::Jsonl => {
                    writeln!(out, "{}", serde_json::to_string(&record)?)?
                }
            }
            out.flush()?;
        } else if line.is_empty() {
            event.clear();
        }
    }
    Ok(())
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Strings from the network are escaped so they cannot drive the terminal.
fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn clock(seconds: i64) -> String {
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes}B"),
        1_000..=999_999 => format!("{:.1}K", bytes as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", bytes as f64 / 1e6),
        _ => format!("{:.1}G", bytes as f64 / 1e9),
    }
}

fn hit_text(hit: &PolicyHit) -> String {
    match (&hit.kind, &hit.trigger) {
        (PolicyKind::EndOfTier, Some(trigger)) => {
            format!("{}/end-of-tier({})", hit.tier, trigger.name)
        }
        (PolicyKind::Profile, _) => format!("profile/{}", hit.name),
        _ if hit.namespace.is_empty() => format!("{}/{}:{}", hit.tier, hit.kind, hit.name),
        _ => format!("{}/{}:{}/{}", hit.tier, hit.kind, hit.namespace, hit.name),
    }
}

fn table_header() -> String {
    format!(
        "{:<8}  {:<36}  {:<36}  {:>5}  {:<5}  {:<6}  {:<3}  {:>15}  POLICY",
        "TIME", "SOURCE", "DESTINATION", "PORT", "PROTO", "ACTION", "RPT", "BYTES OUT/IN"
    )
}

/// One flow as a table row; the policy column shows the deciding hit, and the pending verdict
/// when staged policies would change it.
pub fn table_row(record: &FlowRecord) -> String {
    let endpoint = |namespace: &str, name: &str| {
        if namespace == "-" || namespace.is_empty() {
            escape(name)
        } else {
            format!("{}/{}", escape(namespace), escape(name))
        }
    };
    let deciding = record
        .policies
        .enforced
        .last()
        .map(hit_text)
        .unwrap_or_else(|| "-".into());
    let pending = record.policies.pending.last().filter(|hit| {
        let verdict = hit.action.as_str();
        verdict
            != if record.action == Action::Allow {
                "allow"
            } else {
                "deny"
            }
    });
    let policy = match pending {
        Some(hit) => format!("{deciding}  [pending {} by {}]", hit.action, hit_text(hit)),
        None => deciding,
    };
    format!(
        "{:<8}  {:<36}  {:<36}  {:>5}  {:<5}  {:<6}  {:<3}  {:>15}  {}",
        clock(record.start_time),
        endpoint(&record.source_namespace, &record.source_name),
        endpoint(&record.dest_namespace, &record.dest_name),
        record.dest_port,
        escape(&record.proto),
        record.action,
        record.reporter,
        format!(
            "{}/{}",
            human_bytes(record.bytes_out),
            human_bytes(record.bytes_in)
        ),
        escape(&policy),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ObserveArgs,
    }

    #[test]
    fn flags_compose_into_one_valid_filter() {
        let wrapper = Wrapper::parse_from([
            "observe",
            "-n",
            "shop",
            "--from-pod",
            "shop/frontend",
            "--label",
            "app=cart",
            "--port",
            "8080",
            "--protocol",
            "tcp",
            "--action",
            "deny",
            "--policy",
            "allow-web",
            "--filter",
            "bytes_out > 10",
        ]);
        let filter = compose_filter(&wrapper.args).unwrap();
        assert_eq!(
            filter,
            "(source_namespace = \"shop\" OR dest_namespace = \"shop\") AND source_namespace = \"shop\" AND source_name ~ \"frontend\" AND (source_label \"app\" = \"cart\" OR dest_label \"app\" = \"cart\") AND dest_port = 8080 AND proto = \"tcp\" AND action = deny AND policy.name = \"allow-web\" AND (bytes_out > 10)"
        );
    }

    #[test]
    fn bad_filters_name_the_column() {
        let wrapper = Wrapper::parse_from(["observe", "--filter", "dest_prt = 1"]);
        let error = compose_filter(&wrapper.args).unwrap_err().to_string();
        assert!(
            error.contains("column 1") && error.contains("unknown field `dest_prt`"),
            "{error}"
        );
    }

    #[test]
    fn control_characters_from_the_network_are_escaped() {
        assert_eq!(escape("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
    }
}
