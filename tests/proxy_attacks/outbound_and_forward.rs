//! The outbound and forward proxies: nothing climbs above an outbound base
//! path, user info is never forwarded, and the app's own bad or stalled body
//! is answered as the app's fault.

use super::*;
use std::time::Duration;
use support::config::Cred;
use support::http::get;
use support::token_server::TokenServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn nothing_climbs_above_an_outbound_base_path() {
    let idp = TokenServer::start().await;
    let up = RawUpstream::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &format!("{}/v2", up.url()), "orders");
    let sidecar = Sidecar::start(&config).await;
    let addr: SocketAddr = sidecar
        .outbound("orders")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    for target in traversals("", "admin").iter().chain(&[
        "/..".to_owned(),
        "/../admin".to_owned(),
        "/x/../../admin".to_owned(),
        "/%2e%2e".to_owned(),
        "/.%2e/admin".to_owned(),
    ]) {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = send(addr, req.as_bytes()).await;
        let got = up.requests();
        // Refused, or forwarded below /v2 and nowhere else.
        assert!(
            status(&answer) == 400 || got.iter().all(|r| r.target().starts_with("/v2/")),
            "{target}: {answer} / {:?}",
            got.iter()
                .map(|r| r.target().to_owned())
                .collect::<Vec<_>>()
        );
        up.clear();
    }
    let answer = send(
        addr,
        b"GET /a/../b?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(up.requests()[0].target(), "/v2/b?x=1");
}

#[tokio::test]
async fn forward_proxy_never_forwards_user_info() {
    let idp = TokenServer::start().await;
    let up = RawUpstream::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .raw("[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = \"pass\"\n[[forward_proxy.routes]]\nhost = \"localhost\"\ncredential = \"orders\"\n");
    let sidecar = Sidecar::start(&config).await;
    let proxy = sidecar.handle.forward_proxy_addr.unwrap();
    let port = up.addr.port();
    // Unmatched (127.0.0.1) and mapped (localhost) hosts alike.
    for host in ["127.0.0.1", "localhost"] {
        for userinfo in ["user:pass@", "user@", ":pass@", "a%40b:c@"] {
            up.clear();
            let req = format!(
                "GET http://{userinfo}{host}:{port}/x HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            );
            let answer = send(proxy, req.as_bytes()).await;
            let got = up.requests();
            if status(&answer) == 200 {
                assert_eq!(got.len(), 1);
                assert_eq!(
                    got[0].header("host"),
                    [format!("{host}:{port}").as_str()],
                    "{userinfo}"
                );
                assert!(
                    !got[0].head.contains("pass") && !got[0].head.contains("user"),
                    "{}",
                    got[0].head
                );
            } else {
                assert!(got.is_empty(), "{userinfo}{host}: {answer}");
            }
        }
    }
    // Two Host headers through the forward proxy: refused.
    up.clear();
    let req = format!(
        "GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil\r\nConnection: close\r\n\r\n"
    );
    let answer = send(proxy, req.as_bytes()).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(up.requests().is_empty());
}

/// An outbound listener in front of `up`; its address.
async fn outbound_to(up: &RawUpstream, idp: &TokenServer) -> (Sidecar, SocketAddr) {
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &up.url(), "orders");
    let sidecar = Sidecar::start(&config).await;
    let addr = sidecar
        .outbound("orders")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    (sidecar, addr)
}

#[tokio::test]
async fn connect_is_refused_at_an_outbound_listener() {
    let idp = TokenServer::start().await;
    let up = RawUpstream::start().await;
    let (_sidecar, addr) = outbound_to(&up, &idp).await;
    for target in ["orders.example.com:443", "127.0.0.1:80", "/"] {
        let req = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nAuthorization: Basic app-own\r\nConnection: close\r\n\r\n"
        );
        let answer = send(addr, req.as_bytes()).await;
        assert_eq!(status(&answer), 405, "{target}: {answer}");
    }
    assert!(up.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn outbound_never_splices_h2c_nor_a_switch_it_did_not_ask_for() {
    let idp = TokenServer::start().await;
    // An upstream that switches to h2c whatever it is asked.
    let up = RawUpstream::answering(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let (_sidecar, addr) = outbound_to(&up, &idp).await;
    for upgrade in ["h2c", "H2C", "websocket, h2c", "foo"] {
        up.clear();
        let req = format!(
            "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close, Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        let answer = send(addr, req.as_bytes()).await;
        // Never a 101: the switch was to a protocol not offered, or not allowed.
        assert_eq!(status(&answer), 502, "{upgrade}: {answer}");
        let got = up.requests();
        assert_eq!(got.len(), 1, "{upgrade}");
        let lower = upgrade.to_ascii_lowercase();
        if lower.contains("h2c") {
            // h2c is never offered on: the request went as a plain one.
            assert_not_upgrading(&got[0], upgrade);
        } else {
            assert_eq!(
                got[0].header("upgrade"),
                [lower.as_str()],
                "{}",
                got[0].head
            );
        }
    }
}

#[tokio::test]
async fn the_apps_own_bad_or_stalled_body_is_not_blamed_on_the_upstream() {
    let idp = TokenServer::start().await;
    let up = RawUpstream::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound_with("orders", &up.url(), "orders", "body_idle_timeout = \"1s\"");
    let sidecar = Sidecar::start(&config).await;
    sidecar.ready().await;
    let addr: SocketAddr = sidecar
        .outbound("orders")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    for (case, body) in [
        (
            "a chunk size that overflows",
            "ffffffffffffffffff1\r\nx\r\n0\r\n\r\n",
        ),
        (
            "a chunk size that is not hex",
            "5\r\nhello\r\nzz\r\nx\r\n0\r\n\r\n",
        ),
        ("a leading space", " 5\r\nhello\r\n0\r\n\r\n"),
        (
            "a chunk missing its CRLF",
            "5\r\nhelloXX5\r\nhello\r\n0\r\n\r\n",
        ),
        ("a bare LF in an extension", "5;a=\nb\r\nhello\r\n0\r\n\r\n"),
    ] {
        let answer = send(addr, format!("{head}{body}").as_bytes()).await;
        assert_eq!(status(&answer), 400, "{case}: {answer}");
        assert!(answer.contains("\"bad_request\""), "{case}: {answer}");
    }
    // A stalled upload: 5 of 10 bytes, then nothing.
    let mut app = TcpStream::connect(addr).await.unwrap();
    app.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), app.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the stalled upload was never answered");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    // The upstream never got a whole request, and the route counts no 5xx.
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    let metrics = get(&sidecar.admin_url("/metrics")).await.1;
    assert!(
        metrics.contains(r#"m2m_outbound_requests_total{route="orders",class="5xx"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"m2m_outbound_requests_total{route="orders",class="4xx"} 6"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn outbound_wants_one_host_and_drops_the_apps_m2m_headers() {
    let idp = TokenServer::start().await;
    let up = RawUpstream::start().await;
    let (_sidecar, addr) = outbound_to(&up, &idp).await;
    for req in [
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nhost: a\r\nConnection: close\r\n\r\n",
    ] {
        let answer = send(addr, req.as_bytes()).await;
        assert_eq!(status(&answer), 400, "{req:?}: {answer}");
        assert!(answer.contains("Host"), "{answer}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    // HTTP/1.0 needs none.
    let answer = send(addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
    up.clear();
    let answer = send(
        addr,
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-M2M-Client-Id: spoof\r\nx_m2m_subject: spoof\r\nX-m2m-Scopes: admin\r\nx-m2m-anything: spoof\r\nX-Other: kept\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    let seen = &up.requests()[0];
    let names = seen.header_names();
    assert!(
        !names.iter().any(|n| n
            .to_ascii_lowercase()
            .replace('_', "-")
            .starts_with("x-m2m-")),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("x-other"), ["kept"]);
}
