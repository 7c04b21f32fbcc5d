//! HTTP: the `/api/v1` JSON API (flows with the filter language, live SSE, hints, statistics,
//! graph, status), whisker-backend's surface, `/metrics`, `/healthz` and the OpenAPI document.
//! Every bad parameter is answered 400 with a JSON message naming the parameter and the fix.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use caracal_flow::filter::{parse, Expr, HitField};
use caracal_flow::FlowRecord;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::hub::{bump, Hub};
use crate::live::{stream_flows, StreamEvent};
use crate::ring::{
    GraphGroup, HintField, ListQuery, SortOrder, StatisticType, StatisticsGroup, StatisticsQuery,
};
use crate::time_range;

/// The OpenAPI document of `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// A 400 with a message that says what to fix.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Parses a query string into `T`, naming the parameter at fault.
pub fn query_params<T: DeserializeOwned>(hub: &Hub, raw: Option<String>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).map_err(|error| {
        bump(&hub.metrics.http_bad_requests);
        ApiError::bad_request(format!("bad query parameters: {error}"))
    })
}

fn parse_filter(hub: &Hub, text: Option<&str>) -> Result<Expr, ApiError> {
    parse(text.unwrap_or("")).map_err(|error| {
        bump(&hub.metrics.http_bad_requests);
        ApiError::bad_request(format!("parameter `filter`: {error}"))
    })
}

fn resolve_range(hub: &Hub, start: Option<i64>, end: Option<i64>) -> Result<(i64, i64), ApiError> {
    let oldest = hub.ring().oldest_bucket();
    time_range::resolve(start.unwrap_or(0), end.unwrap_or(0), hub.now(), oldest).map_err(|error| {
        bump(&hub.metrics.http_bad_requests);
        ApiError::bad_request(format!("parameters `start`/`end`: {error}"))
    })
}

/// Compares a presented token with the expected one in time independent of where they differ.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

async fn require_token(
    State(token): State<Arc<str>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token_matches(presented, &token) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "this API needs the header `Authorization: Bearer <token>`" })),
        )
            .into_response(),
    }
}

/// The router of every HTTP route; with a token, everything but `/healthz` requires it.
pub fn router(hub: Arc<Hub>, token: Option<Arc<str>>) -> Router {
    let router = routes(hub);
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, require_token)),
        None => router,
    }
}

fn routes(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/v1", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/flows", get(list_flows))
        .route("/api/v1/flows/stream", get(stream))
        .route("/api/v1/filter-hints", get(filter_hints))
        .route("/api/v1/statistics", get(statistics))
        .route("/api/v1/graph", get(graph))
        .merge(crate::whisker::router())
        .merge(crate::console::router())
        .with_state(hub)
}

async fn index() -> impl IntoResponse {
    Json(json!({
        "name": "caracal",
        "api": "/api/v1/openapi.json",
        "flows": "/api/v1/flows",
        "stream": "/api/v1/flows/stream",
        "graph": "/api/v1/graph",
        "metrics": "/metrics",
    }))
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    hub.refresh_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
}

async fn status(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let ring = hub.ring();
    let stats = ring.stats();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "cluster": hub.cluster(),
        "now": hub.now(),
        "started": hub.started(),
        "oldest_bucket": ring.oldest_bucket(),
        "current_bucket": ring.current_bucket(),
        "keys": ring.key_count(),
        "windows": ring.window_count(),
        "memory_bytes": ring.memory_bytes(),
        "merged": stats.merged,
        "duplicates": stats.duplicates,
        "rejected_too_old": stats.rejected_too_old,
        "rejected_too_new": stats.rejected_too_new,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsParams {
    filter: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
    sort: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
    interval: Option<i64>,
}

#[derive(Serialize)]
struct Page<T> {
    meta: PageMeta,
    items: Vec<T>,
}

#[derive(Serialize)]
struct PageMeta {
    total_results: usize,
    total_pages: usize,
    page: usize,
    page_size: usize,
    page_size_capped: bool,
}

pub(crate) fn parse_sort_order(text: &str) -> Result<SortOrder, ApiError> {
    Ok(match text.to_ascii_lowercase().replace('_', "").as_str() {
        "" | "time" => SortOrder::Time,
        "destname" => SortOrder::DestName,
        "destnamespace" => SortOrder::DestNamespace,
        "desttype" => SortOrder::DestType,
        "sourcename" => SortOrder::SourceName,
        "sourcenamespace" => SortOrder::SourceNamespace,
        "sourcetype" => SortOrder::SourceType,
        _ => {
            return Err(ApiError::bad_request(format!(
                "parameter `sort`: unknown order `{text}`; use time, source_name, source_namespace, source_type, dest_name, dest_namespace or dest_type"
            )))
        }
    })
}

async fn list_flows(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let params: FlowsParams = query_params(&hub, raw)?;
    let (start, end) = resolve_range(&hub, params.start, params.end)?;
    let query = ListQuery {
        start,
        end,
        filter: parse_filter(&hub, params.filter.as_deref())?,
        sort: parse_sort_order(params.sort.as_deref().unwrap_or(""))?,
        page: params.page.unwrap_or(0),
        page_size: params.page_size.unwrap_or(100),
        interval: params.interval.unwrap_or(0).max(0),
    };
    let result = hub.ring().list(&query);
    Ok(Json(Page {
        meta: PageMeta {
            total_results: result.total_results,
            total_pages: result.total_pages,
            page: query.page,
            page_size: result.page_size,
            page_size_capped: result.capped,
        },
        items: result
            .flows
            .iter()
            .map(|(id, flow)| FlowRecord::new(*id, flow))
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    filter: Option<String>,
    start: Option<i64>,
}

/// Turns stream events into SSE events with `render`; lag becomes an `event: lagged`.
pub fn sse_stream<F>(
    receiver: mpsc::Receiver<StreamEvent>,
    render: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(i64, &caracal_flow::Flow) -> String + Send + 'static,
{
    let events = ReceiverStream::new(receiver).map(move |event| {
        Ok(match event {
            StreamEvent::Flow(id, flow) => Event::default().data(render(id, &flow)),
            StreamEvent::Lagged(missed) => Event::default()
                .event("lagged")
                .data(json!({ "error": format!("stream dropped: the client fell {missed} buckets behind"), "missed_buckets": missed }).to_string()),
        })
    });
    Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(10))
            .text("ping"),
    )
}

async fn stream(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let params: StreamParams = query_params(&hub, raw)?;
    let filter = parse_filter(&hub, params.filter.as_deref())?;
    let start = params
        .start
        .and_then(|start| time_range::resolve_stream_start(start, hub.now()));
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(stream_flows(hub, filter, start, sender));
    Ok(sse_stream(receiver, |id, flow| {
        serde_json::to_string(&FlowRecord::new(id, flow)).unwrap_or_default()
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HintParams {
    field: String,
    filter: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
    page: Option<usize>,
    page_size: Option<usize>,
}

/// The hint field named `text` (snake_case or Whisker's CamelCase).
pub fn hint_field(text: &str) -> Result<HintField, ApiError> {
    Ok(match text.to_ascii_lowercase().replace('_', "").as_str() {
        "sourcename" => HintField::SourceName,
        "destname" => HintField::DestName,
        "sourcenamespace" => HintField::SourceNamespace,
        "destnamespace" => HintField::DestNamespace,
        "policytier" => HintField::PolicyTier,
        "policyname" => HintField::PolicyName,
        "policykind" => HintField::PolicyKind,
        "policynamespace" => HintField::PolicyNamespace,
        _ => {
            return Err(ApiError::bad_request(format!(
                "unknown hint field `{text}`; use source_name, dest_name, source_namespace, dest_namespace, policy_tier, policy_name, policy_kind or policy_namespace"
            )))
        }
    })
}

async fn filter_hints(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let params: HintParams = query_params(&hub, raw)?;
    let field = hint_field(&params.field)?;
    let (start, end) = resolve_range(&hub, params.start, params.end)?;
    let filter = parse_filter(&hub, params.filter.as_deref())?;
    let page = params.page.unwrap_or(0);
    let page_size = params.page_size.unwrap_or(100);
    let hints = hub
        .ring()
        .hints(field, start, end, &filter, page, page_size);
    Ok(Json(Page {
        meta: PageMeta {
            total_results: hints.total,
            total_pages: hints.pages,
            page,
            page_size,
            page_size_capped: false,
        },
        items: hints
            .values
            .into_iter()
            .map(|value| json!({ "value": value }))
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatisticsParams {
    r#type: Option<String>,
    group_by: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
    tier: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    kind: Option<String>,
    action: Option<String>,
    time_series: Option<bool>,
}

async fn statistics(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let params: StatisticsParams = query_params(&hub, raw)?;
    let (start, end) = resolve_range(&hub, params.start, params.end)?;
    let kind = match params.r#type.as_deref().unwrap_or("bytes") {
        "packets" => StatisticType::Packets,
        "bytes" => StatisticType::Bytes,
        "live_connections" => StatisticType::LiveConnections,
        other => {
            return Err(ApiError::bad_request(format!(
                "parameter `type`: unknown `{other}`; use packets, bytes or live_connections"
            )))
        }
    };
    let group = match params.group_by.as_deref().unwrap_or("policy") {
        "policy" => StatisticsGroup::Policy,
        "policy_rule" => StatisticsGroup::PolicyRule,
        other => {
            return Err(ApiError::bad_request(format!(
                "parameter `group_by`: unknown `{other}`; use policy or policy_rule"
            )))
        }
    };
    let mut policy = Vec::new();
    for (field, value) in [
        (HitField::Tier, &params.tier),
        (HitField::Name, &params.name),
        (HitField::Namespace, &params.namespace),
        (HitField::Kind, &params.kind),
        (HitField::Action, &params.action),
    ] {
        if let Some(value) = value {
            let comparison = format!(
                "policy({} = \"{}\")",
                field_name(field),
                value.replace('"', "\\\"")
            );
            match parse(&comparison) {
                Ok(Expr::Hit(_, mut comparisons)) => policy.append(&mut comparisons),
                Ok(_) => {}
                Err(error) => {
                    return Err(ApiError::bad_request(format!(
                        "parameter `{}`: {}",
                        field_name(field),
                        error.message
                    )))
                }
            }
        }
    }
    let query = StatisticsQuery {
        start,
        end,
        kind,
        group,
        policy,
        time_series: params.time_series.unwrap_or(false),
    };
    Ok(Json(json!({ "items": hub.ring().statistics(&query) })))
}

fn field_name(field: HitField) -> &'static str {
    match field {
        HitField::Tier => "tier",
        HitField::Name => "name",
        HitField::Namespace => "namespace",
        HitField::Kind => "kind",
        HitField::Action => "action",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphParams {
    filter: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
    group: Option<GraphGroup>,
    max_edges: Option<usize>,
}

async fn graph(
    State(hub): State<Arc<Hub>>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let params: GraphParams = query_params(&hub, raw)?;
    let (start, end) = resolve_range(&hub, params.start, params.end)?;
    let filter = parse_filter(&hub, params.filter.as_deref())?;
    let max_edges = params.max_edges.unwrap_or(10_000).min(100_000);
    Ok(Json(hub.ring().graph(
        start,
        end,
        &filter,
        params.group.unwrap_or_default(),
        max_edges,
    )))
}
