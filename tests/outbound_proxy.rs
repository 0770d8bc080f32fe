//! The outbound reverse listener as a proxy: header rewriting, streaming both
//! ways, protocol upgrades, h2c, and redirects left to the app.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

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
async fn streams_a_50_mb_request_body_without_buffering() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let body = StreamBody::new(stream);
    let c: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/stream-in", sidecar.outbound("orders")))
        .body(body)
        .unwrap();
    let pending = tokio::spawn(c.request(req));
    const MB: usize = 1024 * 1024;
    // The first megabyte reaches the upstream while the rest is not even sent:
    // a proxy that buffered the whole body would never let it through.
    tx.send(Bytes::from(vec![b'a'; MB])).await.unwrap();
    until(LONG, "the first MB at the upstream", async || {
        echo.received() >= MB as u64
    })
    .await;
    for _ in 1..50 {
        tx.send(Bytes::from(vec![b'b'; MB])).await.unwrap();
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["body_len"], 50 * MB);
    sidecar.stop().await;
}

#[tokio::test]
async fn streams_the_response_body() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let resp = client()
        .get(format!(
            "{}/stream-out/{}",
            sidecar.outbound("orders"),
            8 * 1024 * 1024
        ))
        .send()
        .await
        .unwrap();
    let mut resp = resp;
    // The first chunk arrives while the upstream still holds the rest back.
    let first = tokio::time::timeout(LONG, resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    let total = first.len() + drain_released(&mut resp, &echo).await;
    assert_eq!(total, 8 * 1024 * 1024);
    sidecar.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(LONG, s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    tokio::time::timeout(LONG, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.authorization(), Some("Bearer tok-1"));
    assert_eq!(seen.headers["upgrade"], "websocket");
    sidecar.stop().await;
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let c: Client<_, http_body_util::Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = c
        .request(
            http::Request::get(format!("{}/h2", sidecar.outbound("orders")))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        echo.seen().pop().unwrap().authorization(),
        Some("Bearer tok-1")
    );
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

#[tokio::test]
async fn unreachable_upstream_is_a_502_and_metrics_count_it() {
    // A port that was free a moment ago: nothing listens there now.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (_idp, sidecar) = setup(&format!("http://{dead}")).await;
    let resp = client()
        .get(format!("{}/x", sidecar.outbound("orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    let (_, metrics) = support::http::get(&sidecar.admin_url("/metrics")).await;
    assert!(
        metrics.contains(r#"m2m_outbound_requests_total{route="orders",class="5xx"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"m2m_token_requests_total{credential="orders",outcome="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("m2m_token_expires_in_seconds{credential=\"orders\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("m2m_token_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("m2m_outbound_upstream_duration_seconds"),
        "{metrics}"
    );
    assert!(!metrics.contains("tok-1"));
    sidecar.stop().await;
}

#[tokio::test]
async fn https_upstream_with_ca_file_speaks_h2_by_alpn() {
    let pki = support::tls::pki();
    let echo = Echo::start_tls(pki.server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let idp = TokenServer::start().await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound_with(
            "orders",
            &upstream,
            "orders",
            &format!("ca_file = {}", support::config::quote(ca.to_str().unwrap())),
        )
        .outbound("untrusted", &upstream, "orders");
    let sidecar = Sidecar::start(&config).await;
    let resp = client()
        .get(format!("{}/tls", sidecar.outbound("orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_2, "h2 negotiated by ALPN");
    assert_eq!(seen.authorization(), Some("Bearer tok-1"));
    assert_eq!(
        seen.uri,
        format!("{upstream}/tls"),
        "h2 carries the upstream authority"
    );
    // Without the CA the certificate is not trusted: 502 and nothing sent.
    let resp = client()
        .get(format!("{}/tls", sidecar.outbound("untrusted")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(echo.seen().len(), 1);
    sidecar.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let url = format!("{}/stream-out/{}", sidecar.outbound("orders"), 1024 * 1024);
    let mut resp = client().get(&url).send().await.unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    // Shut down while the response is still streaming.
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    let stopping = tokio::spawn(sidecar.stop());
    until(LONG, "new connections refused", async || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    let total = first.len() + drain_released(&mut resp, &echo).await;
    assert_eq!(total, 1024 * 1024, "the in-flight response completed");
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_keep_alive_client_keeps_one_upstream_connection() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let c = client();
    for i in 0..20 {
        let url = format!("{}/seq/{i}", sidecar.outbound("orders"));
        assert_eq!(c.get(url).send().await.unwrap().status(), 200);
    }
    let peers: std::collections::HashSet<_> = echo.seen().iter().map(|s| s.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "one upstream connection for one client connection"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closes_its_connection_is_reconnected() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let c = client();
    for path in ["/close", "/after", "/close", "/close", "/after"] {
        let url = format!("{}{path}", sidecar.outbound("orders"));
        let resp = c.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().get("connection").is_none());
    }
    let peers: std::collections::HashSet<_> = echo.seen().iter().map(|s| s.peer).collect();
    assert_eq!(peers.len(), 4, "a new upstream connection after each close");
    sidecar.stop().await;
}

#[tokio::test]
async fn concurrent_h2c_streams_do_not_wait_for_each_other() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let c: Client<_, http_body_util::Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // One stream holds its response open; the others must complete meanwhile.
    let url = sidecar.outbound("orders");
    let held = c
        .request(
            http::Request::get(format!("{url}/stream-out/{}", 256 * 1024))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let req = http::Request::get(format!("{url}/h2/{i}"))
            .body(Default::default())
            .unwrap();
        c.request(req)
    }));
    for a in tokio::time::timeout(LONG, answers)
        .await
        .expect("not blocked by the held stream")
    {
        assert_eq!(a.unwrap().status(), 200);
    }
    echo.release();
    echo.release();
    echo.release();
    let body = held.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 256 * 1024);
    sidecar.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_after_body_idle_timeout() {
    let echo = Echo::start().await;
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound_with(
            "orders",
            &echo.url(),
            "orders",
            "body_idle_timeout = \"300ms\"",
        );
    let sidecar = Sidecar::start(&config).await;
    // Response: the upstream sends one chunk, then nothing.
    let url = format!("{}/stream-out/{}", sidecar.outbound("orders"), 1024 * 1024);
    let mut resp = client().get(&url).send().await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    let rest = tokio::time::timeout(LONG, async {
        loop {
            match resp.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the stalled response is cut, not held");
    assert!(
        rest.is_err(),
        "the body ends with an error, not as if complete"
    );

    // Request: the app sends one chunk of its upload, then nothing.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let c: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/stream-in", sidecar.outbound("orders")))
        .body(StreamBody::new(stream))
        .unwrap();
    let pending = tokio::spawn(c.request(req));
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    let answer = tokio::time::timeout(LONG, pending)
        .await
        .expect("the stalled upload is cut, not held");
    drop(tx);
    if let Ok(Ok(resp)) = answer {
        assert_ne!(
            resp.status(),
            200,
            "a cut upload is not answered as complete"
        );
    }
    sidecar.stop().await;
}
