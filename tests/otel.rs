//! OpenTelemetry traces (cargo feature `otel`): the binary, pointed at a local
//! OTLP/HTTP collector with `OTEL_EXPORTER_OTLP_ENDPOINT`, exports `token_fetch`
//! and `upstream` spans; the caller's W3C `traceparent` is continued, and the
//! upstream receives one naming the sidecar's span.
//! Run with `cargo test --features otel --test otel` (test.sh does).

#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use std::sync::{Arc, Mutex};
use support::config::{Cred, SidecarConfig};
use support::echo::Echo;
use support::process::{Running, sidecar, write_config};
use support::token_server::TokenServer;

/// An OTLP/HTTP collector that keeps the bodies POSTed to `/v1/traces`.
async fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    support::http::serve(listener, move |req| {
        let sink = sink.clone();
        async move {
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if path == "/v1/traces" {
                sink.lock().unwrap().push(body.to_vec());
            }
            hyper::Response::new(Full::new(Bytes::new()))
        }
    });
    (url, got)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn spans_are_exported_and_traceparent_is_continued() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    let (endpoint, exported) = collector().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders");
    let f = write_config(config.toml());
    let mut cmd = sidecar();
    cmd.args(["run", "--log-format", "json", "--config"])
        .arg(f.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let mut run = Running::spawn(cmd);
    let outbound = run.addr_of("outbound listener ready").await;
    run.ready().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = support::http::client()
        .get(format!("http://{outbound}/traced"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = echo.seen().pop().unwrap();
    let tp = seen.headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[1], trace_id, "the caller's trace continues");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the parent is the sidecar's span"
    );

    let id_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    support::until(support::LONG, "exported spans", async || {
        let all: Vec<u8> = exported.lock().unwrap().concat();
        contains(&all, b"token_fetch") && contains(&all, b"upstream") && contains(&all, &id_bytes)
    })
    .await;
    let status = run.terminate().await;
    assert_eq!(status.code(), Some(0));
}
