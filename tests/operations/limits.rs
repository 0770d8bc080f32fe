//! The listener limits: slowloris, the connection cap, the header size.

use super::*;

async fn limited(limits: &str) -> (Sidecar, Echo, TokenServer) {
    let idp = TokenServer::start().await;
    let echo = Echo::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders")
        .raw(&format!("[limits]\n{limits}"));
    let sidecar = Sidecar::start(&config).await;
    sidecar.ready().await;
    (sidecar, echo, idp)
}

/// Read until the peer closes the connection (bounded); what it sent.
async fn read_to_close(c: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the connection was not closed");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let (sidecar, _echo, _idp) = limited("header_read_timeout = \"1s\"").await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        .await
        .unwrap();
    // Others are served meanwhile.
    let (status, _) = support::http::get(&format!("{}/fast", sidecar.outbound("orders"))).await;
    assert_eq!(status, 200);
    let answer = read_to_close(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn the_connection_cap_holds() {
    let (sidecar, _echo, _idp) = limited("max_connections = 2").await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    let url = sidecar.outbound("orders");
    // Two connections held open (a request each, kept alive).
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("GET /held/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    // A third is closed at once.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(read_to_close(&mut third).await, "");
    let (_, metrics) = support::http::get(&sidecar.admin_url("/metrics")).await;
    assert!(
        support::metric(
            &metrics,
            "m2m_listener_refused_connections_total{listener=\"orders\"}"
        ) >= 1,
        "{metrics}"
    );
    // One closed: room for a new connection again.
    drop(held.pop());
    let (c, again) = (reqwest::Client::new(), format!("{url}/again"));
    until(
        LONG,
        "a connection served again",
        async || matches!(c.get(&again).send().await, Ok(r) if r.status() == 200),
    )
    .await;
    sidecar.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let (sidecar, echo, _idp) = limited("max_header_bytes = 16384").await;
    let resp = client()
        .get(format!("{}/big", sidecar.outbound("orders")))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert!(echo.seen().is_empty());
    let resp = client()
        .get(format!("{}/small", sidecar.outbound("orders")))
        .header("x-small", "a".repeat(8_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sidecar.stop().await;
}
