//! Upstream connections: unreachable (502, counted), kept alive, reconnected
//! after a close; in-flight requests finish on shutdown.

use super::*;

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
