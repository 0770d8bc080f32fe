//! The outbound reverse listener as a proxy: header rewriting, streaming both
//! ways, protocol upgrades, h2c, and redirects left to the app.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod connections;
mod pool;
mod protocols;
mod streams;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use support::config::{Cred, SidecarConfig};
use support::echo::Echo;
use support::http::client;
use support::sidecar::Sidecar;
use support::token_server::TokenServer;
use support::{LONG, until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read the rest of a `/stream-out` body, releasing the upstream as we go.
async fn drain_released(resp: &mut reqwest::Response, echo: &Echo) -> usize {
    let mut total = 0;
    loop {
        echo.release();
        match tokio::time::timeout(LONG, resp.chunk())
            .await
            .unwrap()
            .unwrap()
        {
            Some(c) => total += c.len(),
            None => return total,
        }
    }
}

async fn setup(upstream: &str) -> (TokenServer, Sidecar) {
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", upstream, "orders");
    let sidecar = Sidecar::start(&config).await;
    (idp, sidecar)
}

#[tokio::test]
async fn rewrites_headers_for_the_upstream() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&format!("{}/base/", echo.url())).await;
    let resp = client()
        .post(format!(
            "{}/orders/42?expand=items&x=%20y",
            sidecar.outbound("orders")
        ))
        .header("authorization", "Bearer app-token")
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("connection", "x-private-hop")
        .header("x-private-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip")
        .header("x-app", "kept")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert!(
        h.get("x-upstream-hop").is_none(),
        "response hop-by-hop named in Connection removed"
    );
    assert!(h.get("keep-alive").is_none());
    let echoed: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/base/orders/42?expand=items&x=%20y");
    assert_eq!(seen.headers["host"], echo.addr.to_string());
    assert_eq!(
        seen.authorization(),
        Some("Bearer tok-1"),
        "the app's Authorization is replaced"
    );
    for gone in ["proxy-authorization", "x-private-hop", "keep-alive", "te"] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} must not reach the upstream"
        );
    }
    assert_eq!(seen.headers["x-app"], "kept");
    assert_eq!(echoed["body_len"], 5);
    sidecar.stop().await;
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let resp = client()
        .get(format!("{}/redirect", sidecar.outbound("orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/elsewhere");
    assert_eq!(echo.seen().len(), 1);
    sidecar.stop().await;
}
