//! The outbound and forward proxies: nothing climbs above an outbound base
//! path, and user info is never forwarded.

use super::*;
use std::net::SocketAddr;
use support::config::Cred;
use support::token_server::TokenServer;

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
