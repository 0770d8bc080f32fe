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

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_two_connections() {
    let (up_addr, closed) = endless_upstream().await;
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &format!("http://{up_addr}"), "orders")
        .raw("[limits]\nidle_timeout = \"1s\"");
    let sidecar = Sidecar::start(&config).await;
    sidecar.ready().await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    stop_reading_and_see_both_closed(&sidecar, addr, &closed, "orders").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_a_public_inbound_route_is_closed_too() {
    let (up_addr, closed) = endless_upstream().await;
    let key = support::jwt::TestKey::es256("k");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, support::jwt::jwks(&[&key])).unwrap();
    let config = SidecarConfig::new().raw(&format!(
        "[limits]\nidle_timeout = \"1s\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{up_addr}\"\nissuer = \"https://issuer.test/\"\njwks_file = {}\naudiences = [\"https://orders.example.com\"]\n[[inbound.rules]]\npath = \"/*\"\npublic = true\n",
        support::config::quote(jwks.to_str().unwrap())
    ));
    let sidecar = Sidecar::start(&config).await;
    sidecar.ready().await;
    let addr = sidecar.handle.inbound_addr.unwrap();
    stop_reading_and_see_both_closed(&sidecar, addr, &closed, "inbound").await;
}

/// An upstream that answers its first request with an endless body, and says
/// when the sidecar has closed its connection (a write fails).
async fn endless_upstream() -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let seen = closed.clone();
    tokio::spawn(async move {
        let (mut s, _) = up.accept().await.unwrap();
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head).await;
        let chunk = vec![b'x'; 64 * 1024];
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
            .await;
        while s.write_all(&chunk).await.is_ok() {}
        seen.store(true, Ordering::SeqCst);
    });
    (up_addr, closed)
}

/// The app asks `addr` for the endless body, then never reads: the sidecar
/// closes the upstream connection and the app's.
async fn stop_reading_and_see_both_closed(
    sidecar: &Sidecar,
    addr: std::net::SocketAddr,
    closed: &AtomicBool,
    listener: &str,
) {
    let mut app = TcpStream::connect(addr).await.unwrap();
    app.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    until(
        LONG,
        "the sidecar closes the upstream connection",
        async || closed.load(Ordering::SeqCst),
    )
    .await;
    let metrics = support::http::get(&sidecar.admin_url("/metrics")).await.1;
    let gauge = format!("m2m_listener_open_connections{{listener=\"{listener}\"}}");
    assert!(metrics.contains(&gauge), "no {gauge} in /metrics");
    let open = support::metric(&metrics, &gauge);
    assert_eq!(open, 0, "the app's connection is closed too");
    drop(app);
}
