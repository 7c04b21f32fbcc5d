//! Outside the demo: gRPC over TLS with mandatory client certificates (replays recognised by
//! certificate), and a bearer token on the query APIs.

use std::path::Path;

use caracal_flow::Action;
use caracal_proto::goldmane as wire;
use caracal_server::{Server, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::{update, TestServer, NOW};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, issuer: &Issuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        (certificate.pem(), key.serialize_pem())
    };
    let other_key = KeyPair::generate().unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_issuer = Issuer::new(other_params, other_key);
    Pki {
        ca: ca.pem(),
        server: leaf("localhost", &issuer),
        client: leaf("felix-node-1", &issuer),
        stranger: leaf("intruder", &other_issuer),
    }
}

fn write(directory: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn channel(
    server: &TestServer,
    pki: &Pki,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((certificate, key)) = identity {
        tls = tls.identity(Identity::from_pem(certificate, key));
    }
    Channel::from_shared(server.grpc.clone())
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn secured() -> (TestServer, Pki) {
    let pki = pki();
    let data = tempfile::tempdir().unwrap();
    let directory = data.path().to_path_buf();
    let server = TestServer::start_configured(data, |config| {
        config.tls_cert = Some(write(&directory, "server.pem", &pki.server.0));
        config.tls_key = Some(write(&directory, "server.key", &pki.server.1));
        config.tls_client_ca = Some(write(&directory, "ca.pem", &pki.ca));
        config.api_token_file = Some(write(&directory, "token", &format!("{TOKEN}\n")));
    })
    .await;
    (server, pki)
}

async fn push(channel: Channel, flow: wire::Flow) -> Result<usize, tonic::Status> {
    let mut client = wire::flow_collector_client::FlowCollectorClient::new(channel);
    let mut receipts = client
        .connect(tokio_stream::iter([wire::FlowUpdate { flow: Some(flow) }]))
        .await?
        .into_inner();
    let mut count = 0;
    while let Some(receipt) = receipts.next().await {
        receipt?;
        count += 1;
    }
    Ok(count)
}

#[tokio::test]
async fn ingest_needs_a_client_certificate_from_the_trusted_authority() {
    let (server, pki) = secured().await;
    let flow = wire::Flow::from(&update("felix-*", "api-*", 80, Action::Allow, NOW, 7));
    let trusted = channel(&server, &pki, Some(&pki.client)).await.unwrap();
    assert_eq!(push(trusted, flow.clone()).await.unwrap(), 1);
    // A replay over a new connection with the same certificate is recognised.
    let again = channel(&server, &pki, Some(&pki.client)).await.unwrap();
    assert_eq!(push(again, flow.clone()).await.unwrap(), 1);
    assert_eq!(server.hub.ring().stats().duplicates, 1);
    for identity in [None, Some(&pki.stranger)] {
        let refused = match channel(&server, &pki, identity).await {
            Err(_) => true,
            Ok(channel) => push(channel, flow.clone()).await.is_err(),
        };
        assert!(refused, "a client without a trusted certificate is refused");
    }
    assert_eq!(server.hub.ring().stats().merged, 1);
}

#[tokio::test]
async fn query_apis_need_the_token() {
    let (server, pki) = secured().await;
    let trusted = channel(&server, &pki, Some(&pki.client)).await.unwrap();
    let mut flows = wire::flows_client::FlowsClient::new(trusted.clone());
    let error = flows
        .list(wire::FlowListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(wire::FlowListRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert!(flows.list(request).await.is_ok());
    let (status, body) = server.get("/api/v1/flows").await;
    assert_eq!(status, 401);
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert_eq!(server.get("/healthz").await.0, 200);
    let url = format!("{}/api/v1/flows", server.http);
    let status = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap()
            .status()
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn partial_or_unreadable_security_settings_are_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let partial = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: "127.0.0.1:0".parse().unwrap(),
        data: data.path().to_path_buf(),
        tls_cert: Some(write(
            data.path(),
            "server.pem",
            "-----BEGIN CERTIFICATE-----\n",
        )),
        ..ServerConfig::default()
    };
    let clock = std::sync::Arc::new(caracal_flow::time::ManualClock::new(NOW));
    let error = Server::bind(partial.clone(), clock.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("set all three or none"), "{error}");
    let not_pem = ServerConfig {
        tls_key: Some(write(data.path(), "server.key", "not a key")),
        tls_client_ca: Some(data.path().join("missing-ca.pem")),
        ..partial.clone()
    };
    let error = Server::bind(not_pem, clock.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("server.key") && error.contains("not PEM"),
        "{error}"
    );
    let short_token = ServerConfig {
        tls_cert: None,
        api_token_file: Some(write(data.path(), "token", "short")),
        ..partial
    };
    let error = Server::bind(short_token, clock)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("at least 16 characters"), "{error}");
}
