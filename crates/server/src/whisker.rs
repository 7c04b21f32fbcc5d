//! whisker-backend's HTTP surface under `/whisker-backend/`, so Calico's Whisker UI can read
//! from Caracal. The UI sends its `filters` JSON without URL-encoding (braces, colons, `+`
//! arrive raw), so the query string is split by hand here and decoded without turning `+`
//! into a space; flows use Whisker's JSON shape (RFC 3339 times, CamelCase enum names).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use caracal_flow::filter::Expr;
use caracal_flow::{Action, Flow, HitAction, PolicyHit, Reporter};
use caracal_proto::goldmane as wire;
use caracal_proto::{filter_to_expr, PolicyMatch};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::{hint_field, parse_sort_order, sse_stream, ApiError};
use crate::hub::{bump, Hub};
use crate::live::stream_flows;
use crate::ring::ListQuery;
use crate::time_range;

pub fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/whisker-backend/flows", get(flows))
        .route("/whisker-backend/flows-filter-hints", get(hints))
}

/// Splits a raw query string into (key, value) pairs, percent-decoding but keeping `+`.
fn raw_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(text)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(key), decode(value))
        })
        .collect()
}

fn get_param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

fn int_param(pairs: &[(String, String)], key: &str) -> Result<i64, ApiError> {
    match get_param(pairs, key) {
        None | Some("") => Ok(0),
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(format!("parameter `{key}`: `{text}` is not a whole number"))
        }),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StringMatchJson {
    value: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyMatchJson {
    kind: String,
    tier: Option<StringMatchJson>,
    namespace: Option<StringMatchJson>,
    name: Option<StringMatchJson>,
    action: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PortMatchJson {
    port: i64,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FilterJson {
    source_names: Vec<StringMatchJson>,
    source_namespaces: Vec<StringMatchJson>,
    dest_names: Vec<StringMatchJson>,
    dest_namespaces: Vec<StringMatchJson>,
    protocols: Vec<StringMatchJson>,
    dest_ports: Vec<PortMatchJson>,
    actions: Vec<String>,
    policies: Vec<PolicyMatchJson>,
    reporter: String,
    pending_actions: Vec<String>,
}

fn string_match(json: &StringMatchJson) -> wire::StringMatch {
    let fuzzy = json.kind.eq_ignore_ascii_case("fuzzy");
    wire::StringMatch {
        value: json.value.clone(),
        r#type: if fuzzy {
            wire::MatchType::Fuzzy
        } else {
            wire::MatchType::Exact
        } as i32,
    }
}

fn action(text: &str) -> Result<i32, ApiError> {
    wire::Action::from_str_name(text)
        .or_else(|| match text.to_ascii_lowercase().as_str() {
            "allow" => Some(wire::Action::Allow),
            "deny" => Some(wire::Action::Deny),
            "pass" => Some(wire::Action::Pass),
            _ => None,
        })
        .map(|action| action as i32)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "filters: unknown action `{text}`; use Allow, Deny or Pass"
            ))
        })
}

fn parse_filters(hub: &Hub, text: Option<&str>) -> Result<Expr, ApiError> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Expr::All);
    }
    let json: FilterJson = serde_json::from_str(text).map_err(|error| {
        bump(&hub.metrics.http_bad_requests);
        ApiError::bad_request(format!(
            "parameter `filters` is not a valid filter: {error}"
        ))
    })?;
    let strings = |list: &[StringMatchJson]| list.iter().map(string_match).collect::<Vec<_>>();
    let mut policies = Vec::new();
    for policy in &json.policies {
        let kind = if policy.kind.is_empty() {
            0
        } else {
            wire::PolicyKind::from_str_name(&policy.kind).ok_or_else(|| {
                ApiError::bad_request(format!("filters: unknown policy kind `{}`", policy.kind))
            })? as i32
        };
        policies.push(PolicyMatch {
            kind,
            tier: policy.tier.as_ref().map(string_match),
            namespace: policy.namespace.as_ref().map(string_match),
            name: policy.name.as_ref().map(string_match),
            action: if policy.action.is_empty() {
                0
            } else {
                action(&policy.action)?
            },
        });
    }
    let reporter = match json.reporter.to_ascii_lowercase().as_str() {
        "" | "reporterunspecified" => 0,
        "src" => wire::Reporter::Src as i32,
        "dst" => wire::Reporter::Dst as i32,
        other => {
            return Err(ApiError::bad_request(format!(
                "filters: unknown reporter `{other}`; use Src or Dst"
            )))
        }
    };
    let filter = wire::Filter {
        source_names: strings(&json.source_names),
        source_namespaces: strings(&json.source_namespaces),
        dest_names: strings(&json.dest_names),
        dest_namespaces: strings(&json.dest_namespaces),
        protocols: strings(&json.protocols),
        dest_ports: json
            .dest_ports
            .iter()
            .map(|port| wire::PortMatch { port: port.port })
            .collect(),
        actions: json
            .actions
            .iter()
            .map(|text| action(text))
            .collect::<Result<_, _>>()?,
        policies,
        reporter,
        pending_actions: json
            .pending_actions
            .iter()
            .map(|text| action(text))
            .collect::<Result<_, _>>()?,
    };
    Ok(filter_to_expr(&filter))
}

fn rfc3339(seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn hit_json(hit: &PolicyHit) -> Value {
    json!({
        "kind": hit.kind.long_name(),
        "namespace": hit.namespace,
        "name": hit.name,
        "tier": hit.tier,
        "action": match hit.action { HitAction::Allow => "Allow", HitAction::Deny => "Deny", HitAction::Pass => "Pass" },
        "policy_index": hit.policy_index,
        "rule_index": hit.rule_index,
        "trigger": hit.trigger.as_deref().map(hit_json),
    })
}

/// A flow in whisker-backend's JSON shape.
pub fn whisker_flow(flow: &Flow) -> Value {
    let key = &flow.key;
    json!({
        "start_time": rfc3339(flow.start_time),
        "end_time": rfc3339(flow.end_time),
        "action": match key.action { Action::Allow => "Allow", Action::Deny => "Deny" },
        "source_name": key.source.name,
        "source_namespace": key.source.namespace,
        "source_labels": flow.source_labels.as_slice().join(" | "),
        "dest_name": key.dest.name,
        "dest_namespace": key.dest.namespace,
        "dest_labels": flow.dest_labels.as_slice().join(" | "),
        "protocol": key.proto,
        "dest_port": key.dest_port,
        "reporter": match key.reporter { Reporter::Src => "Src", Reporter::Dst => "Dst" },
        "policies": {
            "enforced": key.policies.enforced.iter().map(hit_json).collect::<Vec<_>>(),
            "pending": key.policies.pending.iter().map(hit_json).collect::<Vec<_>>(),
        },
        "packets_in": flow.counters.packets_in,
        "packets_out": flow.counters.packets_out,
        "bytes_in": flow.counters.bytes_in,
        "bytes_out": flow.counters.bytes_out,
    })
}

async fn flows(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let pairs = raw_pairs(raw.as_deref());
    let filter = parse_filters(&hub, get_param(&pairs, "filters"))?;
    let start_gte = int_param(&pairs, "startTimeGte")?;
    if get_param(&pairs, "watch") == Some("true") {
        let start = time_range::resolve_stream_start(start_gte, hub.now());
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(stream_flows(hub, filter, start, sender));
        return Ok(sse_stream(receiver, |_, flow| whisker_flow(flow).to_string()).into_response());
    }
    let oldest = hub.ring().oldest_bucket();
    let (start, end) = time_range::resolve(
        start_gte,
        int_param(&pairs, "startTimeLt")?,
        hub.now(),
        oldest,
    )
    .map_err(|error| {
        ApiError::bad_request(format!("parameters `startTimeGte`/`startTimeLt`: {error}"))
    })?;
    let sort = parse_sort_order(get_param(&pairs, "sortBy").unwrap_or(""))?;
    let query = ListQuery {
        start,
        end,
        filter,
        sort,
        page: 0,
        page_size: 0,
        interval: 0,
    };
    let result = hub.ring().list(&query);
    Ok(Json(json!({
        "total": { "totalPages": result.total_pages, "totalResults": result.total_results },
        "items": result.flows.iter().map(|(_, flow)| whisker_flow(flow)).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn hints(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let pairs = raw_pairs(raw.as_deref());
    let field = hint_field(get_param(&pairs, "type").unwrap_or(""))?;
    let filter = parse_filters(&hub, get_param(&pairs, "filters"))?;
    let page = usize::try_from(int_param(&pairs, "page")?).unwrap_or(0);
    let page_size = usize::try_from(int_param(&pairs, "pageSize")?).unwrap_or(0);
    let oldest = hub.ring().oldest_bucket();
    let (start, end) = time_range::resolve(0, 0, hub.now(), oldest)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let hints = hub
        .ring()
        .hints(field, start, end, &filter, page, page_size);
    Ok(Json(json!({
        "total": { "totalPages": hints.pages, "totalResults": hints.total },
        "items": hints.values.into_iter().map(|value| json!({ "value": value })).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_filters_keep_plus_and_unescaped_json() {
        let pairs = raw_pairs(Some(
            r#"watch=false&filters={"source_names":[{"value":"a+b","type":"Exact"}]}&page=0"#,
        ));
        assert_eq!(
            get_param(&pairs, "filters"),
            Some(r#"{"source_names":[{"value":"a+b","type":"Exact"}]}"#)
        );
        let pairs = raw_pairs(Some("filters=%7B%22protocols%22%3A%5B%5D%7D"));
        assert_eq!(get_param(&pairs, "filters"), Some(r#"{"protocols":[]}"#));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
