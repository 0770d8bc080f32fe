//! Forward-proxy mode through real `HTTP_PROXY` clients (reqwest with a proxy,
//! and raw sockets where a client would not misbehave on purpose): the token
//! goes to mapped hosts only, unmatched hosts keep the app's own headers or are
//! refused, `CONNECT` tunnels only where no token is due, and `upstream_tls`
//! reaches a TLS upstream the app called over plain http.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::Duration;
use support::config::{Cred, SidecarConfig, quote};
use support::echo::Echo;
use support::sidecar::Sidecar;
use support::token_server::TokenServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `localhost` is mapped (any port); `127.0.0.1` is the same machine but unmatched.
async fn setup(unmatched: &str, route_extra: &str, top_extra: &str) -> (TokenServer, Sidecar) {
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .raw(&format!(
            "[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = {}\n{top_extra}\n[[forward_proxy.routes]]\nhost = \"localhost\"\ncredential = \"orders\"\n{route_extra}",
            quote(unmatched)
        ));
    let sidecar = Sidecar::start(&config).await;
    (idp, sidecar)
}

fn proxy_url(s: &Sidecar) -> String {
    format!("http://{}", s.handle.forward_proxy_addr.unwrap())
}

/// A client configured as a service with `HTTP_PROXY` set would be.
fn proxied(s: &Sidecar) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(proxy_url(s))
                .unwrap()
                .basic_auth("app", "proxy-password"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Send `head` on a raw connection to the proxy; the whole answer (until the
/// proxy closes or `until` appears) as text.
async fn raw(s: &Sidecar, head: &str) -> String {
    let mut c = TcpStream::connect(s.handle.forward_proxy_addr.unwrap())
        .await
        .unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn the_token_goes_to_mapped_hosts_only() {
    let echo = Echo::start().await;
    let (idp, sidecar) = setup("pass", "", "").await;
    let client = proxied(&sidecar);
    let port = echo.addr.port();

    // Mapped: the sidecar's token replaces the app's Authorization.
    let resp = client
        .get(format!("http://localhost:{port}/orders/1?x=1"))
        .header("authorization", "Basic app-own")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = echo.seen().pop().unwrap();
    let token = &idp.issued()[0].token;
    assert_eq!(
        seen.authorization(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(seen.uri, "/orders/1?x=1", "origin-form upstream");
    assert_eq!(seen.headers["host"], format!("localhost:{port}"));
    assert!(seen.headers.get("proxy-authorization").is_none());

    // Unmatched: the app's own headers, unchanged, and no token.
    let resp = client
        .get(format!("http://127.0.0.1:{port}/elsewhere"))
        .header("authorization", "Basic app-own")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.authorization(), Some("Basic app-own"));
    assert!(seen.headers.get("proxy-authorization").is_none());

    // A redirect comes back to the app, never followed by the proxy.
    let resp = client
        .get(format!("http://localhost:{port}/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);

    // A Host header naming another host than the URI is refused, nothing forwarded.
    let before = echo.seen().len();
    let answer = raw(
        &sidecar,
        &format!("GET http://localhost:{port}/x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Host header disagrees"), "{answer}");
    // Origin-form (not an HTTP_PROXY client) is refused too.
    let answer = raw(
        &sidecar,
        &format!("GET /x HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(echo.seen().len(), before);
    sidecar.stop().await;
}

#[tokio::test]
async fn deny_mode_refuses_unmatched_hosts() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup("deny", "", "").await;
    let client = proxied(&sidecar);
    let port = echo.addr.port();
    let resp = client
        .get(format!("http://127.0.0.1:{port}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "host_not_allowed");
    assert!(echo.seen().is_empty(), "nothing forwarded");
    // CONNECT to an unmatched host is refused as well.
    let answer = raw(
        &sidecar,
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // Mapped hosts still work.
    let resp = client
        .get(format!("http://localhost:{port}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sidecar.stop().await;
}

#[tokio::test]
async fn connect_tunnels_unmatched_hosts_and_refuses_mapped_ones() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup("pass", "", "").await;
    let port = echo.addr.port();

    let answer = raw(
        &sidecar,
        &format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("a token cannot be added inside a TLS tunnel")
            && answer.contains("upstream_tls"),
        "{answer}"
    );

    // Unmatched: a byte tunnel; the app's bytes reach the host unchanged.
    let mut c = TcpStream::connect(sidecar.handle.forward_proxy_addr.unwrap())
        .await
        .unwrap();
    c.write_all(
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Authorization: Basic eDp5\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "proxy closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    c.write_all(
        format!("GET /through-tunnel HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic app-own\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.uri, "/through-tunnel");
    assert_eq!(seen.authorization(), Some("Basic app-own"));
    assert!(seen.headers.get("proxy-authorization").is_none());
    sidecar.stop().await;
}

#[tokio::test]
async fn upstream_tls_reaches_a_tls_upstream_the_app_called_over_http() {
    let pki = support::tls::pki();
    let echo = Echo::start_tls(pki.server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (idp, sidecar) = setup(
        "deny",
        "upstream_tls = true",
        &format!("ca_file = {}", quote(ca.to_str().unwrap())),
    )
    .await;
    let port = echo.addr.port();
    let resp = proxied(&sidecar)
        .get(format!("http://localhost:{port}/tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let seen = echo.seen().pop().unwrap();
    let token = &idp.issued()[0].token;
    assert_eq!(
        seen.authorization(),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(seen.uri.ends_with("/tls"), "{}", seen.uri);
    sidecar.stop().await;
}

#[tokio::test]
async fn a_route_with_a_port_matches_only_that_port() {
    let echo = Echo::start().await;
    let other = Echo::start().await;
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .raw(&format!(
            "[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = \"deny\"\n[[forward_proxy.routes]]\nhost = \"LOCALHOST:{}\"\ncredential = \"orders\"\n",
            echo.addr.port()
        ));
    let sidecar = Sidecar::start(&config).await;
    let client = proxied(&sidecar);
    let resp = client
        .get(format!("http://localhost:{}/mapped", echo.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        echo.seen()
            .pop()
            .unwrap()
            .authorization()
            .unwrap()
            .starts_with("Bearer ")
    );
    let resp = client
        .get(format!("http://localhost:{}/other-port", other.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "same host, another port: not mapped");
    assert!(other.seen().is_empty());
    // Host names match in any case.
    let port = echo.addr.port();
    let answer = raw(
        &sidecar,
        &format!("GET http://LocalHost:{port}/mixed HTTP/1.1\r\nHost: LocalHost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.uri, "/mixed");
    assert!(seen.authorization().unwrap().starts_with("Bearer "));
    sidecar.stop().await;
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_body_idle_timeout() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup("pass", "", "body_idle_timeout = \"1s\"").await;
    let port = echo.addr.port();
    let mut c = TcpStream::connect(sidecar.handle.forward_proxy_addr.unwrap())
        .await
        .unwrap();
    c.write_all(
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Nothing sent either way: the tunnel ends within the idle timeout (bounded here).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle tunnel was not closed");
    sidecar.stop().await;
}

#[tokio::test]
async fn an_open_tunnel_counts_toward_the_connection_cap() {
    let echo = Echo::start().await;
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .raw("[limits]\nmax_connections = 1\n[forward_proxy]\nlisten = \"127.0.0.1:0\"\n");
    let sidecar = Sidecar::start(&config).await;
    let proxy = sidecar.handle.forward_proxy_addr.unwrap();
    let port = echo.addr.port();
    let mut tunnel = TcpStream::connect(proxy).await.unwrap();
    tunnel
        .write_all(
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tunnel.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The tunnel holds the only place: another connection is closed at once.
    let mut other = TcpStream::connect(proxy).await.unwrap();
    let _ = other
        .write_all(
            format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), other.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok() && buf.is_empty(),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // The tunnel ends: room again.
    drop(tunnel);
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
        .build()
        .unwrap();
    support::http::until_ok(
        &client,
        &format!("http://127.0.0.1:{port}/again"),
        Duration::from_secs(20),
    )
    .await;
    sidecar.stop().await;
}

#[tokio::test]
async fn every_spelling_of_a_mapped_address_is_that_address() {
    let echo = Echo::start().await;
    let idp = TokenServer::start().await;
    let port = echo.addr.port();
    // The route is written one way, the app spells the address others; `pass`
    // mode, where an unmatched spelling would go on with the app's own header.
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .raw(&format!(
            "[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = \"pass\"\n[[forward_proxy.routes]]\nhost = \"0x7f.0.0.1:{port}\"\ncredential = \"orders\"\n",
        ));
    let sidecar = Sidecar::start(&config).await;
    for alias in [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7F.0.0.1",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::FFFF:7f00:1]",
        "[127.0.0.1]",
    ] {
        let answer = raw(
            &sidecar,
            &format!("GET http://{alias}:{port}/alias HTTP/1.1\r\nHost: {alias}:{port}\r\nAuthorization: Basic app-own\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{alias}: {answer}");
        let seen = echo.seen().pop().unwrap();
        assert!(
            seen.authorization().unwrap().starts_with("Bearer "),
            "{alias}: the app's own header went on"
        );
        assert_eq!(
            seen.headers["host"],
            format!("127.0.0.1:{port}"),
            "{alias}: sent to the address the route names"
        );
        // A tunnel to the mapped address under any spelling would skip the token.
        let answer = raw(
            &sidecar,
            &format!("CONNECT {alias}:{port} HTTP/1.1\r\nHost: {alias}:{port}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{alias}: {answer}");
    }
    // A port spelled another way goes on as the number.
    for spelled in [format!("+{port}"), format!("0{port}")] {
        let answer = raw(
            &sidecar,
            &format!("GET http://127.0.0.1:{spelled}/port HTTP/1.1\r\nHost: 127.0.0.1:{spelled}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            let seen = echo.seen().pop().unwrap();
            assert_eq!(
                seen.headers["host"],
                format!("127.0.0.1:{port}"),
                "{spelled}"
            );
        } else {
            assert!(answer.starts_with("HTTP/1.1 400"), "{spelled}: {answer}");
        }
    }
    // Not an address: a name, passed on unmatched with the app's own header.
    let answer = raw(
        &sidecar,
        &format!("GET http://localhost:{port}/name HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Basic app-own\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        echo.seen().pop().unwrap().authorization(),
        Some("Basic app-own")
    );
    sidecar.stop().await;
}
