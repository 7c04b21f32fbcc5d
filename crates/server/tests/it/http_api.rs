//! The HTTP surface: `/api/v1`, SSE, whisker-backend, metrics, OpenAPI, persistence.

use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;
use std::time::Duration;

use caracal_flow::time::bucket_start;
use caracal_flow::Action;

use crate::{update, TestServer, NOW};

fn seed(server: &TestServer) {
    let flows = [
        update("frontend-*", "cart-*", 8080, Action::Allow, NOW - 30, 300),
        update(
            "frontend-*",
            "catalog-*",
            8080,
            Action::Allow,
            NOW - 15,
            200,
        ),
        update("cart-*", "payment-*", 8443, Action::Deny, NOW, 60),
    ];
    for result in server.hub.ingest_many(&flows, None) {
        result.unwrap();
    }
}

#[tokio::test]
async fn flows_take_the_filter_language_sort_and_paging() {
    let server = TestServer::start().await;
    seed(&server);
    let page = server.get_json("/api/v1/flows?filter=action%20%3D%20allow%20AND%20dest_port%20IN%20(8080)&sort=dest_name&page_size=1").await;
    assert_eq!(page["meta"]["total_results"], 2);
    assert_eq!(page["meta"]["total_pages"], 2);
    assert_eq!(page["items"][0]["dest_name"], "cart-*");
    assert_eq!(
        page["items"][0]["source_labels"],
        serde_json::json!(["app=frontend-*", "team=web"])
    );
    assert_eq!(
        page["items"][0]["policies"]["enforced"][1]["name"],
        "allow-web"
    );
    assert_eq!(page["items"][0]["policies"]["pending"][0]["action"], "deny");
    let labelled = server
        .get_json("/api/v1/flows?filter=source_label%20app%20%3D%20cart-*")
        .await;
    assert_eq!(labelled["meta"]["total_results"], 1);
}

#[tokio::test]
async fn bad_input_gets_a_json_error_that_says_what_to_fix() {
    let server = TestServer::start().await;
    seed(&server);
    for (path, needle) in [
        (
            "/api/v1/flows?filter=dest_port%20%3D%20http",
            "column 13: `dest_port` takes a whole number",
        ),
        ("/api/v1/flows?page_size=-1", "bad query parameters"),
        ("/api/v1/flows?colour=red", "unknown field `colour`"),
        ("/api/v1/flows?sort=size", "unknown order `size`"),
        ("/api/v1/flows?start=2000&end=1000", "must be before"),
        (
            "/api/v1/filter-hints?field=colour",
            "unknown hint field `colour`",
        ),
        ("/api/v1/statistics?type=volts", "unknown `volts`"),
        (
            "/whisker-backend/flows?filters={\"bogus\":1}",
            "unknown field `bogus`",
        ),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }
    let metrics = server.get("/metrics").await.1;
    assert!(
        metrics.contains("caracal_bad_requests_total{api=\"http\"}"),
        "{metrics}"
    );
    // Nothing already accepted was disturbed.
    assert_eq!(
        server.get_json("/api/v1/flows").await["meta"]["total_results"],
        3
    );
}

#[tokio::test]
async fn the_live_stream_sends_each_closed_bucket_with_the_filter() {
    let server = TestServer::start().await;
    let url = format!("{}/api/v1/flows/stream?filter=action%3Ddeny", server.http);
    let (lines_sender, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let response = ureq::get(&url).call().unwrap();
        for line in BufReader::new(response.into_reader()).lines() {
            let Ok(line) = line else { return };
            if lines_sender.send(line).is_err() {
                return;
            }
        }
    });
    let opened = tokio::time::timeout(Duration::from_secs(10), async {
        while server.hub.metrics.streams.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(opened.is_ok(), "the stream subscribed");
    let current = bucket_start(NOW);
    server.hub.ingest_many(
        &[
            update("cart-*", "payment-*", 8443, Action::Deny, current, 60),
            update("a-*", "b-*", 1, Action::Allow, current, 1),
        ],
        None,
    );
    server.clock.advance(30);
    server.hub.tick();
    let data = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.recv().await.expect("stream open");
            if let Some(data) = line.strip_prefix("data: ") {
                return data.to_string();
            }
        }
    })
    .await
    .expect("a flow within the timeout");
    let record: caracal_flow::FlowRecord = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (
            record.source_name.as_str(),
            record.action,
            record.start_time
        ),
        ("cart-*", Action::Deny, current)
    );
}

#[tokio::test]
async fn whisker_backend_surface() {
    let server = TestServer::start().await;
    seed(&server);
    // The UI sends raw JSON, unencoded, with upper-case protocols.
    let body = server
        .get_json(r#"/whisker-backend/flows?watch=false&sortBy=DestName&filters={"protocols":[{"type":"Exact","value":"TCP"}],"actions":["Allow"]}"#)
        .await;
    assert_eq!(body["total"]["totalPages"], 1);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["dest_name"], "cart-*");
    assert_eq!(items[0]["action"], "Allow");
    assert_eq!(items[0]["reporter"], "Dst");
    assert_eq!(items[0]["source_labels"], "app=frontend-* | team=web");
    assert_eq!(items[0]["policies"]["enforced"][1]["kind"], "NetworkPolicy");
    assert!(items[0]["start_time"].as_str().unwrap().ends_with('Z'));
    let hints = server
        .get_json("/whisker-backend/flows-filter-hints?type=DestName&page=0&pageSize=20")
        .await;
    assert_eq!(hints["total"]["totalResults"], 3);
    assert_eq!(hints["items"][0]["value"], "cart-*");
}

#[tokio::test]
async fn graph_statistics_hints_status_and_metrics() {
    let server = TestServer::start().await;
    seed(&server);
    let graph = server.get_json("/api/v1/graph?group=workload").await;
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3);
    assert!(graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|node| node["id"] == "ns:shop" && node["kind"] == "namespace"));
    let statistics = server
        .get_json("/api/v1/statistics?type=bytes&name=allow-web")
        .await;
    assert_eq!(
        statistics["items"][0]["allowed_in"],
        serde_json::json!([500])
    );
    let hints = server
        .get_json("/api/v1/filter-hints?field=dest_name&filter=action%3Dallow")
        .await;
    assert_eq!(
        hints["items"],
        serde_json::json!([{"value": "cart-*"}, {"value": "catalog-*"}])
    );
    let status = server.get_json("/api/v1/status").await;
    assert_eq!(status["keys"], 3);
    assert_eq!(server.get("/healthz").await, (200, "ok\n".to_string()));
    let metrics = server.get("/metrics").await.1;
    assert!(
        metrics.contains("# TYPE caracal_ring_keys gauge\ncaracal_ring_keys 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let server = TestServer::start().await;
    let document = server.get_json("/api/v1/openapi.json").await;
    let paths = document["paths"].as_object().unwrap();
    for route in [
        "/api/v1/flows",
        "/api/v1/flows/stream",
        "/api/v1/filter-hints",
        "/api/v1/statistics",
        "/api/v1/graph",
        "/api/v1/status",
        "/api/v1/openapi.json",
        "/whisker-backend/flows",
        "/whisker-backend/flows-filter-hints",
        "/metrics",
        "/healthz",
    ] {
        assert!(paths.contains_key(route), "{route} is documented");
        let query = match route {
            "/api/v1/flows/stream" => continue,
            "/api/v1/filter-hints" => "?field=dest_name",
            "/whisker-backend/flows-filter-hints" => "?type=DestName",
            _ => "",
        };
        let (status, body) = server.get(&format!("{route}{query}")).await;
        assert_eq!(status, 200, "{route} answers: {body}");
    }
}

#[tokio::test]
async fn the_hot_window_survives_a_restart() {
    let server = TestServer::start().await;
    seed(&server);
    let data = server.stop().await;
    let restarted = TestServer::start_in(data).await;
    let flows = restarted.get_json("/api/v1/flows").await;
    assert_eq!(flows["meta"]["total_results"], 3);
}
