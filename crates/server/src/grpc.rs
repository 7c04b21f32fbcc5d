//! gRPC: Goldmane's `Flows`, `FlowCollector` and `Statistics` services, wire-compatible with
//! Calico's, and Caracal's batched `Ingest`. Each handler converts at the edge, works on the
//! hub, and answers bad input with `InvalidArgument` naming the field.

use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use caracal_flow::filter::{Comparison, Expr};
use caracal_flow::Flow;
use caracal_proto::caracal::v1 as caracal;
use caracal_proto::goldmane as wire;
use caracal_proto::{filter_to_expr, hit_to_wire, PolicyMatch};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::hub::{bump, Hub};
use crate::live::{stream_flows, StreamEvent};
use crate::ring::{
    HintField, ListQuery, SortOrder, StatisticType, StatisticsGroup, StatisticsQuery,
};
use crate::time_range;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Every gRPC service of the server, sharing one hub.
#[derive(Clone)]
pub struct GrpcApi {
    hub: Arc<Hub>,
}

impl GrpcApi {
    /// Services over `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The tonic router with all services. With a token, the query services (`Flows`,
    /// `Statistics`) require `authorization: Bearer <token>`; ingest is authenticated by the
    /// client certificate when TLS is on.
    pub fn router(self, token: Option<Arc<str>>) -> tonic::service::Routes {
        let max = 64 * 1024 * 1024;
        let check = move |request: Request<()>| -> Result<Request<()>, Status> {
            let Some(expected) = &token else {
                return Ok(request);
            };
            let presented = request
                .metadata()
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            match presented {
                Some(presented) if crate::http::token_matches(presented, expected) => Ok(request),
                _ => Err(Status::unauthenticated(
                    "this API needs `authorization: Bearer <token>`",
                )),
            }
        };
        tonic::service::Routes::new(wire::flows_server::FlowsServer::with_interceptor(
            self.clone(),
            check.clone(),
        ))
        .add_service(
            wire::flow_collector_server::FlowCollectorServer::new(self.clone())
                .max_decoding_message_size(max),
        )
        .add_service(wire::statistics_server::StatisticsServer::with_interceptor(
            self.clone(),
            check,
        ))
        .add_service(caracal::ingest_server::IngestServer::new(self).max_decoding_message_size(max))
    }

    fn bad_request(&self, message: impl Into<String>) -> Status {
        bump(&self.hub.metrics.grpc_bad_requests);
        Status::invalid_argument(message)
    }

    fn range(&self, start_gte: i64, start_lt: i64) -> Result<(i64, i64), Status> {
        let oldest = self.hub.ring().oldest_bucket();
        time_range::resolve(start_gte, start_lt, self.hub.now(), oldest)
            .map_err(|error| self.bad_request(error.to_string()))
    }
}

/// The peer identity for replay de-duplication: the client certificate when TLS is on,
/// else the client address without its port, so a replay over a new connection is still
/// recognised.
fn peer_identity<T>(request: &Request<T>) -> u64 {
    let state = foldhash::fast::FixedState::with_seed(0x9ee7);
    if let Some(certificates) = request.peer_certs() {
        if let Some(leaf) = certificates.first() {
            return state.hash_one(leaf.as_ref());
        }
    }
    match request.remote_addr() {
        Some(address) => state.hash_one(address.ip()),
        None => state.hash_one("local"),
    }
}

fn sort_order(options: &[wire::SortOption]) -> Result<SortOrder, String> {
    match options {
        [] => Ok(SortOrder::Time),
        [option] => Ok(match wire::SortBy::try_from(option.sort_by) {
            Ok(wire::SortBy::Time) => SortOrder::Time,
            Ok(wire::SortBy::DestName) => SortOrder::DestName,
            Ok(wire::SortBy::DestNamespace) => SortOrder::DestNamespace,
            Ok(wire::SortBy::DestType) => SortOrder::DestType,
            Ok(wire::SortBy::SourceName) => SortOrder::SourceName,
            Ok(wire::SortBy::SourceNamespace) => SortOrder::SourceNamespace,
            Ok(wire::SortBy::SourceType) => SortOrder::SourceType,
            Err(_) => return Err(format!("unknown sort_by {}", option.sort_by)),
        }),
        _ => Err(format!(
            "at most one sort option is supported, got {}",
            options.len()
        )),
    }
}

fn non_negative(field: &str, value: i64) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("{field} must not be negative, got {value}"))
}

/// The comparisons of a statistics `PolicyMatch`, all on the same hit.
fn hit_comparisons(policy_match: Option<&PolicyMatch>) -> Vec<Comparison> {
    match policy_match.and_then(caracal_proto::policy_match_to_expr) {
        Some(Expr::Hit(_, comparisons)) => comparisons,
        _ => Vec::new(),
    }
}

#[tonic::async_trait]
impl wire::flows_server::Flows for GrpcApi {
    async fn list(
        &self,
        request: Request<wire::FlowListRequest>,
    ) -> Result<Response<wire::FlowListResult>, Status> {
        let request = request.into_inner();
        let (start, end) = self.range(request.start_time_gte, request.start_time_lt)?;
        let query = ListQuery {
            start,
            end,
            filter: request
                .filter
                .as_ref()
                .map(filter_to_expr)
                .unwrap_or(Expr::All),
            sort: sort_order(&request.sort_by).map_err(|message| self.bad_request(message))?,
            page: non_negative("page", request.page)
                .map_err(|message| self.bad_request(message))?,
            page_size: non_negative("page_size", request.page_size)
                .map_err(|message| self.bad_request(message))?,
            interval: request.aggregation_interval.max(0),
        };
        let result = self.hub.ring().list(&query);
        let mut response = Response::new(wire::FlowListResult {
            meta: Some(wire::ListMetadata {
                total_pages: result.total_pages as i64,
                total_results: result.total_results as i64,
            }),
            flows: result
                .flows
                .into_iter()
                .map(|(id, flow)| wire::FlowResult {
                    id,
                    flow: Some(wire::Flow::from(flow)),
                })
                .collect(),
        });
        if result.capped {
            if let Ok(value) = result.page_size.to_string().parse() {
                response
                    .metadata_mut()
                    .insert("caracal-page-size-capped", value);
            }
        }
        Ok(response)
    }

    type StreamStream = BoxStream<wire::FlowResult>;

    async fn stream(
        &self,
        request: Request<wire::FlowStreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let request = request.into_inner();
        let filter = request
            .filter
            .as_ref()
            .map(filter_to_expr)
            .unwrap_or(Expr::All);
        let start = time_range::resolve_stream_start(request.start_time_gte, self.hub.now());
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(stream_flows(self.hub.clone(), filter, start, sender));
        let results = ReceiverStream::new(receiver).map(|event| match event {
            StreamEvent::Flow(id, flow) => Ok(wire::FlowResult { id, flow: Some(wire::Flow::from(*flow)) }),
            StreamEvent::Lagged(missed) => Err(Status::resource_exhausted(format!(
                "stream dropped: the client fell {missed} buckets behind; reconnect with start_time_gte to backfill"
            ))),
        });
        Ok(Response::new(Box::pin(results)))
    }

    async fn filter_hints(
        &self,
        request: Request<wire::FilterHintsRequest>,
    ) -> Result<Response<wire::FilterHintsResult>, Status> {
        let request = request.into_inner();
        let field = match wire::FilterType::try_from(request.r#type) {
            Ok(wire::FilterType::DestName) => HintField::DestName,
            Ok(wire::FilterType::SourceName) => HintField::SourceName,
            Ok(wire::FilterType::DestNamespace) => HintField::DestNamespace,
            Ok(wire::FilterType::SourceNamespace) => HintField::SourceNamespace,
            Ok(wire::FilterType::PolicyTier) => HintField::PolicyTier,
            Ok(wire::FilterType::PolicyName) => HintField::PolicyName,
            Ok(wire::FilterType::PolicyKind) => HintField::PolicyKind,
            Ok(wire::FilterType::PolicyNamespace) => HintField::PolicyNamespace,
            _ => {
                return Err(
                    self.bad_request(format!("filter hints need a type, got {}", request.r#type))
                )
            }
        };
        let (start, end) = self.range(request.start_time_gte, request.start_time_lt)?;
        let filter = request
            .filter
            .as_ref()
            .map(filter_to_expr)
            .unwrap_or(Expr::All);
        let page =
            non_negative("page", request.page).map_err(|message| self.bad_request(message))?;
        let page_size = non_negative("page_size", request.page_size)
            .map_err(|message| self.bad_request(message))?;
        let hints = self
            .hub
            .ring()
            .hints(field, start, end, &filter, page, page_size);
        Ok(Response::new(wire::FilterHintsResult {
            meta: Some(wire::ListMetadata {
                total_pages: hints.pages as i64,
                total_results: hints.total as i64,
            }),
            hints: hints
                .values
                .into_iter()
                .map(|value| wire::FilterHint { value })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl wire::flow_collector_server::FlowCollector for GrpcApi {
    type ConnectStream = BoxStream<wire::FlowReceipt>;

    async fn connect(
        &self,
        request: Request<Streaming<wire::FlowUpdate>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let peer = peer_identity(&request);
        let updates = request.into_inner();
        let hub = self.hub.clone();
        // Each update is merged as the response stream polls for its receipt: no task hop and
        // no channel between reading an update and answering it, which is what a lock-step
        // client (Felix) waits on.
        let receipts = updates.map(move |message| {
            let update = match message {
                Ok(update) => update,
                Err(status) => {
                    hub.count_invalid("malformed_message");
                    tracing::debug!(%status, "flow collector stream ended with an error");
                    return Err(status);
                }
            };
            bump(&hub.metrics.received_goldmane);
            match update.flow.map(Flow::try_from) {
                Some(Ok(flow)) => {
                    // Out-of-window updates are counted by the ring and still receipted: Felix
                    // waits for each receipt, and resending would not help.
                    let _ = hub.ingest_one(&flow, Some(peer));
                }
                Some(Err(error)) => hub.count_invalid(&error.metric_reason()),
                None => hub.count_invalid("missing_flow"),
            }
            Ok(wire::FlowReceipt {})
        });
        let closing = self.hub.closing();
        Ok(Response::new(Box::pin(
            futures_util::StreamExt::take_until(receipts, closing),
        )))
    }
}

#[tonic::async_trait]
impl wire::statistics_server::Statistics for GrpcApi {
    type ListStream = BoxStream<wire::StatisticsResult>;

    async fn list(
        &self,
        request: Request<wire::StatisticsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let request = request.into_inner();
        let (start, end) = self.range(request.start_time_gte, request.start_time_lt)?;
        let kind = match wire::StatisticType::try_from(request.r#type) {
            Ok(wire::StatisticType::PacketCount) => StatisticType::Packets,
            Ok(wire::StatisticType::ByteCount) => StatisticType::Bytes,
            Ok(wire::StatisticType::LiveConnectionCount) => StatisticType::LiveConnections,
            Err(_) => {
                return Err(self.bad_request(format!("unknown statistic type {}", request.r#type)))
            }
        };
        let group = match wire::StatisticsGroupBy::try_from(request.group_by) {
            Ok(wire::StatisticsGroupBy::Policy) => StatisticsGroup::Policy,
            Ok(wire::StatisticsGroupBy::PolicyRule) => StatisticsGroup::PolicyRule,
            Err(_) => {
                return Err(self.bad_request(format!("unknown group_by {}", request.group_by)))
            }
        };
        let query = StatisticsQuery {
            start,
            end,
            kind,
            group,
            policy: hit_comparisons(request.policy_match.as_ref()),
            time_series: request.time_series,
        };
        let rows = self.hub.ring().statistics(&query);
        let mut results: Vec<Result<wire::StatisticsResult, Status>> = rows
            .into_iter()
            .map(|row| {
                Ok(wire::StatisticsResult {
                    policy: Some(hit_to_wire(&row.policy)),
                    direction: if row.direction == "ingress" {
                        wire::RuleDirection::Ingress
                    } else {
                        wire::RuleDirection::Egress
                    } as i32,
                    group_by: request.group_by,
                    r#type: request.r#type,
                    allowed_in: row.allowed_in,
                    allowed_out: row.allowed_out,
                    denied_in: row.denied_in,
                    denied_out: row.denied_out,
                    passed_in: row.passed_in,
                    passed_out: row.passed_out,
                    x: row.x,
                })
            })
            .collect();
        if results.is_empty() {
            results.push(Ok(wire::StatisticsResult::default()));
            results.push(Err(Status::not_found("no statistics match the request")));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(results))))
    }
}

#[tonic::async_trait]
impl caracal::ingest_server::Ingest for GrpcApi {
    type PushStream = BoxStream<caracal::BatchAck>;

    async fn push(
        &self,
        request: Request<Streaming<caracal::FlowBatch>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let peer = format!("{:x}", peer_identity(&request));
        let batches = request.into_inner();
        let hub = self.hub.clone();
        let acks = batches.map(move |message| {
            let batch = match message {
                Ok(batch) => batch,
                Err(status) => {
                    hub.count_invalid("malformed_message");
                    return Err(status);
                }
            };
            bump(&hub.metrics.batches);
            hub.metrics
                .received_batched
                .fetch_add(batch.flows.len() as u64, Ordering::Relaxed);
            let decoded: Vec<Result<Flow, String>> = batch
                .flows
                .into_iter()
                .map(|flow| {
                    Flow::try_from(flow).map_err(|error| {
                        hub.count_invalid(&error.metric_reason());
                        error.to_string()
                    })
                })
                .collect();
            let sender_id = if batch.sender.is_empty() {
                String::new()
            } else {
                format!("{}@{}", batch.sender, peer)
            };
            let outcome = hub.ingest_batch(&sender_id, batch.sequence, decoded);
            Ok(caracal::BatchAck {
                sequence: batch.sequence,
                accepted: outcome.accepted,
                rejected: outcome.rejections.len() as u32,
                rejections: outcome
                    .rejections
                    .into_iter()
                    .map(|(index, reason)| caracal::Rejection { index, reason })
                    .collect(),
                duplicate: outcome.duplicate,
            })
        });
        let closing = self.hub.closing();
        Ok(Response::new(Box::pin(
            futures_util::StreamExt::take_until(acks, closing),
        )))
    }
}
