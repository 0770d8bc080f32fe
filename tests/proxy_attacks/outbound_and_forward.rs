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
