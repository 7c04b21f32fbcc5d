//! Goldmane wire compatibility (goldmane-api.md §5) over real gRPC.

use caracal_flow::time::bucket_start;
use caracal_flow::{Action, Flow};
use caracal_proto::caracal::v1 as caracal;
use caracal_proto::goldmane as wire;
use caracal_proto::PolicyMatch;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::{update, TestServer, NOW};

async fn channel(server: &TestServer) -> Channel {
    Channel::from_shared(server.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Sends updates over one `Connect` stream, lock-step, and returns how many receipts came.
async fn connect_and_send(server: &TestServer, flows: &[wire::Flow]) -> usize {
    let mut client = wire::flow_collector_client::FlowCollectorClient::new(channel(server).await);
    let (sender, receiver) = mpsc::channel(1);
    let mut receipts = client
        .connect(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    for flow in flows {
        sender
            .send(wire::FlowUpdate {
                flow: Some(flow.clone()),
            })
            .await
            .unwrap();
        receipts
            .next()
            .await
            .expect("a receipt per update")
            .unwrap();
        received += 1;
    }
    received
}

fn to_wire(flow: &Flow) -> wire::Flow {
    wire::Flow::from(flow)
}

async fn list(server: &TestServer, request: wire::FlowListRequest) -> wire::FlowListResult {
    let mut client = wire::flows_client::FlowsClient::new(channel(server).await);
    client.list(request).await.unwrap().into_inner()
}

fn names(result: &wire::FlowListResult) -> Vec<String> {
    result
        .flows
        .iter()
        .map(|flow| {
            flow.flow
                .as_ref()
                .unwrap()
                .key
                .as_ref()
                .unwrap()
                .source_name
                .clone()
        })
        .collect()
}

#[tokio::test]
async fn connect_receipts_every_update_and_replays_over_a_new_connection_count_once() {
    let server = TestServer::start().await;
    let first = to_wire(&update(
        "cart-*",
        "redis-*",
        6379,
        Action::Allow,
        NOW - 20,
        100,
    ));
    let second = to_wire(&update(
        "frontend-*",
        "cart-*",
        8080,
        Action::Allow,
        NOW - 20,
        50,
    ));
    assert_eq!(connect_and_send(&server, &[first.clone(), second]).await, 2);
    // Felix replays its last minutes after a reconnect: same peer address, new connection.
    assert_eq!(connect_and_send(&server, &[first]).await, 1);
    let result = list(&server, wire::FlowListRequest::default()).await;
    assert_eq!(result.meta.unwrap().total_results, 2);
    let cart = result
        .flows
        .iter()
        .map(|r| r.flow.as_ref().unwrap())
        .find(|f| f.key.as_ref().unwrap().source_name == "cart-*")
        .unwrap();
    assert_eq!(cart.bytes_in, 100, "the replay was not counted twice");
    let metrics = server.get("/metrics").await.1;
    assert!(
        metrics.contains("caracal_ingest_duplicates_total{unit=\"update\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn list_sorts_pages_and_filters_like_goldmane() {
    let server = TestServer::start().await;
    let flows: Vec<wire::Flow> = [
        update("b-*", "api-*", 80, Action::Allow, NOW - 60, 1),
        update("a-*", "api-*", 443, Action::Allow, NOW - 45, 1),
        update("d-*", "payment-*", 8443, Action::Deny, NOW - 30, 1),
        update("c-*", "api-*", 80, Action::Allow, NOW - 15, 1),
    ]
    .iter()
    .map(to_wire)
    .collect();
    connect_and_send(&server, &flows).await;
    let newest_first = list(&server, wire::FlowListRequest::default()).await;
    assert_eq!(names(&newest_first), ["c-*", "d-*", "a-*", "b-*"]);
    let page = list(
        &server,
        wire::FlowListRequest {
            sort_by: vec![wire::SortOption {
                sort_by: wire::SortBy::SourceName as i32,
            }],
            page: 1,
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        page.meta,
        Some(wire::ListMetadata {
            total_pages: 2,
            total_results: 4
        })
    );
    assert_eq!(names(&page), ["d-*"]);
    let exact = |value: &str| wire::StringMatch {
        value: value.into(),
        r#type: wire::MatchType::Exact as i32,
    };
    let filtered = list(
        &server,
        wire::FlowListRequest {
            filter: Some(wire::Filter {
                dest_names: vec![wire::StringMatch {
                    value: "api".into(),
                    r#type: wire::MatchType::Fuzzy as i32,
                }],
                dest_ports: vec![wire::PortMatch { port: 80 }],
                protocols: vec![exact("TCP")],
                actions: vec![wire::Action::Allow as i32],
                policies: vec![PolicyMatch {
                    tier: Some(exact("default")),
                    name: Some(exact("allow-web")),
                    ..Default::default()
                }],
                reporter: wire::Reporter::Dst as i32,
                pending_actions: vec![wire::Action::Deny as i32],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&filtered), ["c-*", "b-*"]);
    let end_of_tier = list(
        &server,
        wire::FlowListRequest {
            filter: Some(wire::Filter {
                policies: vec![PolicyMatch {
                    kind: wire::PolicyKind::EndOfTier as i32,
                    name: Some(exact("payment-ingress")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        names(&end_of_tier),
        ["d-*"],
        "end-of-tier hits match by their trigger's name"
    );
    let mut client = wire::flows_client::FlowsClient::new(channel(&server).await);
    let error = client
        .list(wire::FlowListRequest {
            start_time_gte: NOW,
            start_time_lt: NOW - 100,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("must be before"),
        "{}",
        error.message()
    );
}

/// Calico v3.30/3.31 `PolicyMatch`: `name` (field 4) as a plain string.
#[derive(Clone, PartialEq, prost::Message)]
struct OldPolicyMatch {
    #[prost(string, tag = "4")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OldFilter {
    #[prost(message, repeated, tag = "8")]
    policies: Vec<OldPolicyMatch>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OldListRequest {
    #[prost(message, optional, tag = "6")]
    filter: Option<OldFilter>,
}

#[tokio::test]
async fn old_clients_plain_string_policy_matches_are_understood() {
    let server = TestServer::start().await;
    connect_and_send(
        &server,
        &[
            to_wire(&update("a-*", "api-*", 80, Action::Allow, NOW, 1)),
            to_wire(&update("d-*", "payment-*", 8443, Action::Deny, NOW, 1)),
        ],
    )
    .await;
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    grpc.ready().await.unwrap();
    let request = OldListRequest {
        filter: Some(OldFilter {
            policies: vec![OldPolicyMatch {
                name: "allow-web".into(),
            }],
        }),
    };
    let codec = tonic_prost::ProstCodec::<OldListRequest, wire::FlowListResult>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/goldmane.Flows/List");
    let result = grpc
        .unary(tonic::Request::new(request), path, codec)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&result), ["a-*"]);
}

#[tokio::test]
async fn stream_backfills_bucket_by_bucket_then_sends_each_closed_bucket() {
    let server = TestServer::start().await;
    let current = bucket_start(NOW);
    connect_and_send(
        &server,
        &[
            to_wire(&update(
                "old-*",
                "api-*",
                80,
                Action::Allow,
                current - 60,
                1,
            )),
            to_wire(&update(
                "old-*",
                "api-*",
                80,
                Action::Allow,
                current - 45,
                1,
            )),
        ],
    )
    .await;
    let mut client = wire::flows_client::FlowsClient::new(channel(&server).await);
    let mut stream = client
        .stream(wire::FlowStreamRequest {
            start_time_gte: -300,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(first.flow.as_ref().unwrap().start_time, current - 60);
    assert_eq!(second.flow.as_ref().unwrap().start_time, current - 45);
    assert_eq!(first.id, second.id, "one key keeps its id across buckets");
    connect_and_send(
        &server,
        &[to_wire(&update(
            "new-*",
            "api-*",
            80,
            Action::Allow,
            current,
            1,
        ))],
    )
    .await;
    server.clock.advance(30);
    server.hub.tick();
    let live = stream.next().await.unwrap().unwrap();
    let flow = live.flow.unwrap();
    assert_eq!(
        (
            flow.key.unwrap().source_name.as_str(),
            flow.start_time,
            flow.end_time
        ),
        ("new-*", current, current + 15)
    );
}

#[tokio::test]
async fn filter_hints_and_statistics() {
    let server = TestServer::start().await;
    connect_and_send(
        &server,
        &[
            to_wire(&update("b-*", "api-*", 80, Action::Allow, NOW, 10)),
            to_wire(&update("a-*", "payment-*", 8443, Action::Deny, NOW, 20)),
        ],
    )
    .await;
    let mut flows = wire::flows_client::FlowsClient::new(channel(&server).await);
    let hints = |kind: wire::FilterType| wire::FilterHintsRequest {
        r#type: kind as i32,
        ..Default::default()
    };
    let values = |result: wire::FilterHintsResult| {
        result
            .hints
            .into_iter()
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values(
            flows
                .filter_hints(hints(wire::FilterType::SourceName))
                .await
                .unwrap()
                .into_inner()
        ),
        ["a-*", "b-*"]
    );
    assert_eq!(
        values(
            flows
                .filter_hints(hints(wire::FilterType::PolicyName))
                .await
                .unwrap()
                .into_inner()
        ),
        [
            "allow-web",
            "payment-ingress",
            "security.pass-internal",
            "security.staged-lockdown"
        ]
    );
    assert_eq!(
        values(
            flows
                .filter_hints(hints(wire::FilterType::PolicyKind))
                .await
                .unwrap()
                .into_inner()
        ),
        [
            "GlobalNetworkPolicy",
            "NetworkPolicy",
            "StagedGlobalNetworkPolicy"
        ]
    );
    let mut statistics = wire::statistics_client::StatisticsClient::new(channel(&server).await);
    let request = wire::StatisticsRequest {
        r#type: wire::StatisticType::ByteCount as i32,
        ..Default::default()
    };
    let rows: Vec<_> = statistics
        .list(request)
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    let allow_web = rows
        .iter()
        .filter_map(|row| row.as_ref().ok())
        .find(|row| row.policy.as_ref().unwrap().name == "allow-web")
        .unwrap();
    assert_eq!(allow_web.allowed_in, [10]);
    assert_eq!(allow_web.direction, wire::RuleDirection::Ingress as i32);
    let missing = wire::StatisticsRequest {
        policy_match: Some(PolicyMatch {
            name: Some(wire::StringMatch {
                value: "nope".into(),
                r#type: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rows: Vec<_> = statistics
        .list(missing)
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].as_ref().unwrap(),
        &wire::StatisticsResult::default()
    );
    assert_eq!(rows[1].as_ref().unwrap_err().code(), tonic::Code::NotFound);
}

/// A `FlowUpdate` whose field 1 has the wrong wire type: not a valid protobuf for the server.
#[derive(Clone, PartialEq, prost::Message)]
struct MalformedUpdate {
    #[prost(int64, tag = "1")]
    flow: i64,
}

#[tokio::test]
async fn bad_records_are_counted_and_never_disturb_accepted_ones() {
    let server = TestServer::start().await;
    let mut invalid = to_wire(&update("bad-*", "api-*", 80, Action::Allow, NOW, 1));
    invalid.key.as_mut().unwrap().reporter = 0;
    let too_old = to_wire(&update("old-*", "api-*", 80, Action::Allow, NOW - 7200, 1));
    let good = to_wire(&update("good-*", "api-*", 80, Action::Allow, NOW, 1));
    assert_eq!(
        connect_and_send(&server, &[good, invalid, too_old]).await,
        3
    );
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<MalformedUpdate, wire::FlowReceipt>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/goldmane.FlowCollector/Connect");
    let outcome = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter([MalformedUpdate { flow: 7 }])),
            path,
            codec,
        )
        .await;
    let failed = match outcome {
        Err(status) => status.code() != tonic::Code::Ok,
        Ok(response) => response
            .into_inner()
            .next()
            .await
            .is_some_and(|item| item.is_err()),
    };
    assert!(failed, "a malformed message ends that stream with an error");
    let result = list(&server, wire::FlowListRequest::default()).await;
    assert_eq!(names(&result), ["good-*"]);
    let metrics = server.get("/metrics").await.1;
    assert!(
        metrics.contains("caracal_ingest_rejected_total{reason=\"bad_reporter\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caracal_ingest_rejected_total{reason=\"too_old\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caracal_ingest_rejected_total{reason=\"malformed_message\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn batched_ingest_acknowledges_by_sequence_and_skips_replayed_batches() {
    let server = TestServer::start().await;
    let batch = caracal::FlowBatch {
        sequence: 1,
        sender: "node-a".into(),
        flows: vec![
            to_wire(&update("a-*", "api-*", 80, Action::Allow, NOW, 5)),
            to_wire(&update("b-*", "api-*", 80, Action::Allow, NOW - 7200, 5)),
        ],
    };
    for expected_duplicate in [false, true] {
        let mut client = caracal::ingest_client::IngestClient::new(channel(&server).await);
        let mut acks = client
            .push(tokio_stream::iter([batch.clone()]))
            .await
            .unwrap()
            .into_inner();
        let ack = acks.next().await.unwrap().unwrap();
        assert_eq!(ack.sequence, 1);
        assert_eq!(ack.duplicate, expected_duplicate);
        if !expected_duplicate {
            assert_eq!((ack.accepted, ack.rejected), (1, 1));
            assert_eq!(ack.rejections[0].index, 1);
            assert_eq!(ack.rejections[0].reason, "too_old");
        }
    }
    let result = list(&server, wire::FlowListRequest::default()).await;
    assert_eq!(result.flows[0].flow.as_ref().unwrap().bytes_in, 5);
}
