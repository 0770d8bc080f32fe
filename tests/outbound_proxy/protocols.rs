//! Upgrades, h2c (streams concurrent) and an HTTPS upstream speaking h2 by ALPN.

use super::*;

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
