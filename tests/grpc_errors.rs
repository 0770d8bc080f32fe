//! The sidecar's own refusals as gRPC clients see them: every listener answers
//! a `content-type: application/grpc*` request it cannot serve with HTTP 200
//! and `grpc-status`/`grpc-message` (as inbound always did), and everyone else
//! with the JSON body of before.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::Duration;
use support::config::{Cred, SidecarConfig};
use support::http::client;
use support::sidecar::Sidecar;
use support::token_server::TokenServer;

/// An address where nothing listens (free a moment ago).
async fn dead_address() -> std::net::SocketAddr {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A gRPC client: HTTP/2 without TLS (prior knowledge), as tonic does.
fn grpc_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", resp.headers()))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn outbound_answers_grpc_clients_with_a_grpc_status() {
    let idp = TokenServer::start().await;
    let dead = dead_address().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &format!("http://{dead}"), "orders");
    let sidecar = Sidecar::start(&config).await;
    let url = format!("{}/orders.v1.Orders/Get", sidecar.outbound("orders"));

    // gRPC: 200, UNAVAILABLE, the code and reason in grpc-message, no body.
    let resp = grpc_client()
        .post(&url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/grpc");
    assert_eq!(header(&resp, "grpc-status"), "14");
    assert!(
        header(&resp, "grpc-message").starts_with("upstream_unavailable: cannot connect"),
        "{:?}",
        resp.headers()
    );
    assert!(resp.bytes().await.unwrap().is_empty());

    // Anyone else: today's 502 with its JSON body.
    let resp = client().post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "content-type"), "application/json");
    assert_eq!(header(&resp, "cache-control"), "no-store");
    assert!(resp.headers().get("grpc-status").is_none());
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["error", "reason", "route"], "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
    assert_eq!(body["route"], "orders");
    sidecar.stop().await;
}

#[tokio::test]
async fn forward_proxy_answers_grpc_clients_with_a_grpc_status() {
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .raw("[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = \"deny\"\n[[forward_proxy.routes]]\nhost = \"localhost\"\ncredential = \"orders\"\n");
    let sidecar = Sidecar::start(&config).await;
    let proxied = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(format!(
                "http://{}",
                sidecar.handle.forward_proxy_addr.unwrap()
            ))
            .unwrap(),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let dead = dead_address().await;
    let denied = format!("http://{dead}/orders.v1.Orders/Get");

    // gRPC to an unmapped host: PERMISSION_DENIED, nothing forwarded.
    let resp = proxied
        .post(&denied)
        .header("content-type", "application/grpc+proto")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "grpc-status"), "7");
    assert_eq!(
        header(&resp, "grpc-message"),
        "host_not_allowed: this proxy forwards only to mapped hosts (forward_proxy.unmatched = \"deny\")"
    );

    // JSON, exactly as before.
    let resp = proxied.post(&denied).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "content-type"), "application/json");
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"host_not_allowed","error_description":"this proxy forwards only to mapped hosts (forward_proxy.unmatched = \"deny\")","host":"127.0.0.1"}"#
    );

    // A mapped host whose upstream is down: UNAVAILABLE for gRPC, 502 JSON otherwise.
    let mapped = format!("http://localhost:{}/orders.v1.Orders/Get", dead.port());
    let resp = proxied
        .post(&mapped)
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "grpc-status"), "14");
    let resp = proxied.post(&mapped).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    sidecar.stop().await;
}
