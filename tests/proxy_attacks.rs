//! Attacks on the request path, by class, against real listeners in front of
//! a raw-recording upstream: every case asserts what the upstream *received*
//! (nothing, or exactly the checked request), not only the status.
//!
//! Classes: path confusion (every encoding of `.`, `/`, `\`, `;`, case,
//! double encoding, absolute-form), method case and forms, header tricks
//! (`Connection` nominating protected headers, underscore variants, two
//! `Authorization`s, `Host` count), hostile token claims (control characters,
//! scope grammar), upgrades (h2c, unasked `101`), hostile upstream framing
//! (`Transfer-Encoding` with `Content-Length`), user info in forward-proxy
//! requests, and `..` above an outbound base path.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use support::config::{Cred, SidecarConfig, quote};
use support::jwt::{TestKey, claims, jwks, now};
use support::raw::{RawUpstream, send, status};
use support::sidecar::Sidecar;
use support::token_server::TokenServer;

const ISS: &str = "https://issuer.test/";
const AUD: &str = "https://orders.example.com";

const RULES: &str = r#"
[[inbound.rules]]
path = "/public/*"
public = true
[[inbound.rules]]
path = "/admin/*"
scopes = ["admin"]
[[inbound.rules]]
path = "/orders/*"
methods = ["GET"]
scopes = ["orders:read"]
[[inbound.rules]]
path = "/orders/*"
methods = ["POST"]
scopes = ["orders:write"]
"#;

struct Inbound {
    _sidecar: Sidecar,
    up: RawUpstream,
    addr: SocketAddr,
    key: TestKey,
    _dir: tempfile::TempDir,
}

/// An inbound listener (keys from a JWKS file) in front of a raw upstream.
async fn inbound(default: &str, extra: &str, up: RawUpstream) -> Inbound {
    let key = TestKey::es256("k1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&key])).unwrap();
    let toml = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\njwks_file = {}\naudiences = [{}]\ndefault = {}\nforward_token = true\n{extra}\n{RULES}",
        quote(&up.url()),
        quote(ISS),
        quote(file.to_str().unwrap()),
        quote(AUD),
        quote(default),
    );
    let sidecar = Sidecar::start(&SidecarConfig::new().raw(&toml)).await;
    support::http::wait_for_status(
        &sidecar.admin_url("/readyz"),
        200,
        std::time::Duration::from_secs(10),
    )
    .await;
    let addr = sidecar.handle.inbound_addr.unwrap();
    Inbound {
        _sidecar: sidecar,
        up,
        addr,
        key,
        _dir: dir,
    }
}

impl Inbound {
    fn token(&self, scope: &str) -> String {
        self.key.sign(&self.key.header(), &claims(ISS, AUD, scope))
    }

    fn token_with(&self, extra: Value) -> String {
        let mut c = claims(ISS, AUD, "orders:read");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.key.sign(&self.key.header(), &c)
    }

    /// `method target` with `headers` (and `Host`, `Connection: close`).
    async fn raw(&self, method: &str, target: &str, headers: &str) -> String {
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n{headers}\r\n"
        );
        send(self.addr, req.as_bytes()).await
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Every spelling of `..` and of a separator an attacker might try.
fn traversals(from: &str, to: &str) -> Vec<String> {
    let dots = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%2E.",
        ".%2E",
        "%252e%252e",
        "%25%32%65%25%32%65",
        "..;",
        "..;x",
        "%2e%2e;",
        "..%00",
        "..%0d%0a",
        "..%c0%af",
        "%u002e%u002e",
        "..%2500",
    ];
    let seps = [
        "/",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "//",
        "%252f",
        "/./",
        "%2f%2e%2f",
        ";/",
    ];
    let mut out = Vec::new();
    for d in dots {
        for s in seps {
            out.push(format!("{from}/{d}{s}{to}"));
            out.push(format!("{from}{s}{d}{s}{to}"));
        }
    }
    for extra in [
        "/public/./../admin/secret.txt",
        "/public//../admin/secret.txt",
        "/%70ublic/../admin/secret.txt",
        "/public/%2e%2e/admin/secret.txt",
        "/public/..%2fadmin/secret.txt",
        "/public/%2e%2e%2fadmin%2fsecret.txt",
        "/public/x/../../admin/secret.txt",
        "/public/../../admin/secret.txt",
        "/public/..%5cadmin%5csecret.txt",
        "/public/%2e%2e%5c%2e%2e%5cadmin/secret.txt",
        "/public/..;/admin/secret.txt",
        "/public;/../admin/secret.txt",
        "/public/%3b/../admin/secret.txt",
        "/public/%c0%ae%c0%ae/admin/secret.txt",
    ] {
        out.push(extra.to_owned());
    }
    out
}

#[tokio::test]
async fn no_spelling_of_dot_dot_leaves_a_public_prefix() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    let cases = traversals("/public", "admin/secret.txt");
    assert!(cases.len() > 300, "{} cases", cases.len());
    for target in &cases {
        let answer = s.raw("GET", target, "").await;
        let st = status(&answer);
        let forwarded = s.up.requests();
        // Either refused as unnormalisable (400), or normalised to /admin/…,
        // which needs a token (401); never forwarded.
        assert!(
            forwarded.is_empty() && (st == 400 || st == 401),
            "{target}: {st}, upstream got {:?}",
            forwarded
                .iter()
                .map(|r| r.target().to_owned())
                .collect::<Vec<_>>()
        );
        // And the same through absolute-form.
        let answer = s.raw("GET", &format!("http://svc{target}"), "").await;
        let st = status(&answer);
        assert!(
            s.up.requests().is_empty() && (st == 400 || st == 401),
            "absolute-form {target}: {st}"
        );
    }
    // A fragment never carries a traversal along: cut, or refused.
    for target in [
        "/public/x#/../../admin/secret.txt",
        "/public/x%23/../../admin/secret.txt",
    ] {
        let answer = s.raw("GET", target, "").await;
        let got = s.up.requests();
        assert!(
            got.iter().all(|r| r.target() == "/public/x"),
            "{target}: {answer} / {:?}",
            got.iter()
                .map(|r| r.target().to_owned())
                .collect::<Vec<_>>()
        );
        s.up.clear();
    }
    // The control: the public route itself passes, as it was checked.
    let answer = s.raw("GET", "/public/a/./b/../c", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].target(), "/public/a/c");
}

#[tokio::test]
async fn a_token_without_the_scope_never_reaches_a_protected_prefix() {
    let s = inbound("authenticated", "", RawUpstream::start().await).await;
    let token = s.token("orders:read");
    let auth = bearer(&token);
    for target in [
        "//admin/secret",
        "///admin/secret",
        "/./admin/secret",
        "/ADMIN/secret",
        "/Admin/secret",
        "/aDmIn/secret",
        "/%41DMIN/secret",
        "/%61dmin/secret",
        "/%61%64%6d%69%6e/secret",
        "/%2e/admin/secret",
        "/admin;x/secret",
        "/admin;/secret",
        "/admin%3bx/secret",
        "/admin%2fsecret",
        "/admin%2Fsecret",
        "/admin%5csecret",
        "/admin\\secret",
        "/admin/./secret",
        "/x/../admin/secret",
        "/x/%2e%2e/admin/secret",
        "/admin",
        "/ADMIN",
        "/admin/",
        "/admin%252fsecret",
        "/admin%2",
        "/admin%zzsecret",
        "/admin%00/secret",
        "/admin%09/secret",
        "http://svc/admin/secret",
        "http://svc//ADMIN/secret",
        "HTTP://SVC/%61dmin/secret",
        // Windows spellings of the same name.
        "/admin./secret",
        "/admin../secret",
        "/admin%2e/secret",
        "/admin%20/secret",
        "/admin.%20./secret",
        "/admin::$DATA/secret",
        "/ADMIN::%24data/secret",
        "/admin.",
        "/admin%20",
    ] {
        let answer = s.raw("GET", target, &auth).await;
        let st = status(&answer);
        assert!(
            s.up.requests().is_empty() && (st == 400 || st == 403),
            "{target}: {st}: {answer}"
        );
    }
    // With the scope, a non-normal spelling reaches the service in normal form.
    let admin = bearer(&s.token("admin"));
    for (target, received) in [
        ("/%61dmin/secret", "/admin/secret"),
        ("//admin//secret", "/admin/secret"),
        ("/x/../admin/./secret?q=%2F", "/admin/secret?q=%2F"),
        ("/ADMIN/secret", "/ADMIN/secret"),
        ("/admin/caf%c3%a9", "/admin/caf%C3%A9"),
    ] {
        s.up.clear();
        let answer = s.raw("GET", target, &admin).await;
        assert_eq!(status(&answer), 200, "{target}: {answer}");
        let got = s.up.requests();
        assert_eq!(got.len(), 1, "{target}");
        assert_eq!(got[0].target(), received, "{target}");
    }
}

#[tokio::test]
async fn public_rules_match_their_exact_case_only() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    for target in ["/PUBLIC/x", "/Public/x", "/pUBLIC/x", "/%50ublic/x"] {
        let answer = s.raw("GET", target, "").await;
        assert_eq!(status(&answer), 401, "{target}: {answer}");
    }
    assert!(s.up.requests().is_empty());
    let answer = s.raw("GET", "/%70ublic/x", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].target(), "/public/x");
}

#[tokio::test]
async fn methods_are_case_sensitive_and_forms_refused() {
    let s = inbound("authenticated", "", RawUpstream::start().await).await;
    let read_only = bearer(&s.token("orders:read"));
    for method in [
        "post", "Post", "pOST", "get", "Get", "put", "delete", "patch", "options", "head", "trace",
    ] {
        let answer = s.raw(method, "/orders/1", &read_only).await;
        assert_eq!(status(&answer), 400, "{method}: {answer}");
    }
    // HEAD is covered by a protecting GET rule.
    let none = bearer(&s.token("other"));
    let answer = s.raw("HEAD", "/orders/1", &none).await;
    assert_eq!(status(&answer), 403, "{answer}");
    // CONNECT and OPTIONS *.
    let answer = s.raw("CONNECT", "svc:80", &read_only).await;
    assert_eq!(status(&answer), 405, "{answer}");
    let answer = s.raw("OPTIONS", "*", &read_only).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(s.up.requests().is_empty());
    // Upper-case POST is what a POST rule sees.
    let answer = s
        .raw(
            "POST",
            "/orders/1",
            &format!("{read_only}Content-Length: 0\r\n"),
        )
        .await;
    assert_eq!(status(&answer), 403, "{answer}");
    // Unknown methods are not standard ones: they pass to the rules as they are.
    let answer = s.raw("PURGE", "/orders/1", &read_only).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].method(), "PURGE");
}

#[tokio::test]
async fn header_tricks_never_remove_or_forge_identity() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    let token = s.token("orders:read");
    let auth = bearer(&token);
    for connection in [
        "x-m2m-client-id, x-m2m-scopes, x-m2m-subject",
        "X-M2M-Client-Id",
        "authorization",
        "Authorization, host",
        "close, x-m2m-scopes",
        "keep-alive, x_m2m_client_id",
    ] {
        s.up.clear();
        let headers = format!(
            "{auth}Connection: {connection}\r\nx_m2m_client_id: admin\r\nX_M2M_SCOPES: admin\r\nx-m2m_subject: root\r\nx-M2M-client-ID: forged\r\nx-m2m-actor: forged\r\n"
        );
        let answer = s.raw("GET", "/orders/1", &headers).await;
        assert_eq!(status(&answer), 200, "{connection}: {answer}");
        let got = &s.up.requests()[0];
        assert_eq!(
            got.header("x-m2m-client-id"),
            ["billing"],
            "{connection}: {}",
            got.head
        );
        assert_eq!(got.header("x-m2m-scopes"), ["orders:read"], "{connection}");
        assert_eq!(
            got.header("x-m2m-subject"),
            ["billing@client"],
            "{connection}"
        );
        assert_eq!(
            got.header("authorization"),
            [format!("Bearer {token}").as_str()]
        );
        assert_eq!(got.header("host"), ["svc"], "{connection}");
        let forged: Vec<_> = got
            .header_names()
            .into_iter()
            .filter(|n| {
                n.to_ascii_lowercase()
                    .replace('_', "-")
                    .starts_with("x-m2m-")
            })
            .filter(|n| !["x-m2m-client-id", "x-m2m-scopes", "x-m2m-subject"].contains(n))
            .collect();
        assert!(forged.is_empty(), "{connection}: {forged:?}");
    }
    // Path-override headers never reach the service.
    s.up.clear();
    let answer = s
        .raw(
            "GET",
            "/public/x",
            "X-Original-URL: /admin/x\r\nx_rewrite_url: /admin/x\r\nX-REWRITE-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nx_http_method: DELETE\r\nX-Method-Override: PUT\r\n",
        )
        .await;
    assert_eq!(status(&answer), 200);
    let got = &s.up.requests()[0];
    assert!(
        got.header("x-original-url").is_empty()
            && got.header("x-rewrite-url").is_empty()
            && got.header("x_rewrite_url").is_empty()
            && got.header("x-http-method-override").is_empty()
            && got.header("x_http_method").is_empty()
            && got.header("x-method-override").is_empty(),
        "{}",
        got.head
    );
    // Absolute-form: Host comes from the target, never with user info.
    for (target, host) in [
        ("http://svc2/public/x", "svc2"),
        ("http://u:p@svc3:81/public/x", "svc3:81"),
    ] {
        s.up.clear();
        let answer = s.raw("GET", target, "").await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert_eq!(s.up.requests()[0].header("host"), [host], "{target}");
    }
    // Underscore variants never reach a public route either.
    s.up.clear();
    let answer = s
        .raw(
            "GET",
            "/public/x",
            "x_m2m_client_id: admin\r\nX-M2M-SCOPES: admin\r\n",
        )
        .await;
    assert_eq!(status(&answer), 200);
    let got = &s.up.requests()[0];
    assert!(
        got.header("x_m2m_client_id").is_empty() && got.header("x-m2m-scopes").is_empty(),
        "{}",
        got.head
    );

    // A second Authorization (forged after a valid one), in any order or case.
    s.up.clear();
    let forged = s.token("admin").replace('.', "x");
    for headers in [
        format!("{auth}Authorization: Bearer {forged}\r\n"),
        format!("Authorization: Bearer {forged}\r\n{auth}"),
        format!("{auth}authorization: Bearer {forged}\r\n"),
        format!("{auth}{auth}"),
    ] {
        let answer = s.raw("GET", "/orders/1", &headers).await;
        assert_eq!(status(&answer), 400, "{answer}");
        assert!(answer.contains("invalid_request"), "{answer}");
    }
    assert!(s.up.requests().is_empty());
}

#[tokio::test]
async fn host_must_be_there_once() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    for req in [
        "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a\r\nhost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: user:pw@a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a:99999\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n".to_owned(),
        "GET ftp://a/public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET http://a:99999/public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET http://svc/public/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let answer = send(s.addr, req.as_bytes()).await;
        assert_eq!(status(&answer), 400, "{req:?}: {answer}");
    }
    assert!(s.up.requests().is_empty());
    // HTTP/1.0 needs none.
    let answer = send(s.addr, b"GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
}

#[tokio::test]
async fn hostile_identity_claims_are_refused() {
    let s = inbound("authenticated", "", RawUpstream::start().await).await;
    let mut cases: Vec<Value> = Vec::new();
    for bad in [
        "a\r\nx-m2m-scopes: admin",
        "a\nb",
        "a\rb",
        "a\u{0}b",
        "a\tb",
        "a\u{7f}",
        "a\u{85}b",
        "a\u{1b}[31m",
        "",
        " ",
        "admin ",
        " admin",
        "a\u{2028}b",
        "a\u{200b}",
        "\u{feff}admin",
        "a\u{202e}b",
    ] {
        for claim in ["client_id", "sub"] {
            let mut m = serde_json::Map::new();
            m.insert(claim.to_owned(), json!(bad));
            cases.push(Value::Object(m));
        }
        cases.push(json!({ "client_id": null, "cid": bad }));
        // Beside a clean identity claim that would be used, too.
        cases.push(json!({ "cid": bad }));
        cases.push(json!({ "azp": bad }));
    }
    for scp in [
        json!(["orders:read admin"]),
        json!(["orders:read", "a\"b"]),
        json!(["orders:read", ""]),
        json!(["orders:read", "a\\b"]),
        json!(["caf\u{e9}"]),
        json!(["a\u{0}"]),
    ] {
        cases.push(json!({ "scope": null, "scp": scp }));
    }
    for scope in [
        "orders:read  admin",
        " orders:read",
        "orders:read ",
        "orders:read\tadmin",
        "a\"b",
        "orders:read\nadmin",
    ] {
        cases.push(json!({ "scope": scope }));
    }
    for extra in &cases {
        // `null` means: leave the claim out.
        let mut c = claims(ISS, AUD, "orders:read");
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }

        let token = s.key.sign(&s.key.header(), &c);
        let answer = s.raw("GET", "/anything", &bearer(&token)).await;
        assert_eq!(status(&answer), 401, "{extra}: {answer}");
    }
    assert!(s.up.requests().is_empty());
    // The control: a clean token passes with its identity.
    let answer = s
        .raw(
            "GET",
            "/anything",
            &bearer(&s.token_with(json!({"sub": "svc@clients"}))),
        )
        .await;
    assert_eq!(status(&answer), 200, "{answer}");
}

#[tokio::test]
async fn only_configured_upgrades_are_spliced() {
    // An upstream that switches to whatever it is asked for, asked or not.
    let up = RawUpstream::answering(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let s = inbound("deny", "", up).await;
    for upgrade in ["h2c", "H2C", "h2c, websocket", "websocket, h2c", "foo"] {
        s.up.clear();
        let headers = format!(
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        );
        let answer = s.raw("GET", "/public/x", &headers).await;
        // The request went on as a plain one; the upstream's unasked 101 is a 502.
        assert_eq!(status(&answer), 502, "{upgrade}: {answer}");
        let got = s.up.requests();
        assert_eq!(got.len(), 1, "{upgrade}");
        assert!(
            got[0].header("upgrade").is_empty(),
            "{upgrade}: {}",
            got[0].head
        );
        assert!(
            got[0].header("http2-settings").is_empty(),
            "{upgrade}: {}",
            got[0].head
        );
    }
    // A websocket request that the upstream answers with a switch to h2c.
    s.up.clear();
    let headers = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let answer = s.raw("GET", "/public/ws", headers).await;
    assert_eq!(status(&answer), 502, "{answer}");
    assert_eq!(s.up.requests()[0].header("upgrade"), ["websocket"]);
}

#[tokio::test]
async fn an_upstream_answer_with_both_framings_is_relayed_by_its_chunks() {
    let up = RawUpstream::answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let s = inbound("deny", "", up).await;
    let answer = s.raw("GET", "/public/x", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("content-length: 3"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.contains("hello") && body.contains(" world"),
        "{answer}"
    );
}

#[tokio::test]
async fn path_knobs_unescape_keep_and_strip() {
    let s = inbound(
        "deny",
        "escaped_slashes = \"unescape\"\npath_parameters = \"strip\"",
        RawUpstream::start().await,
    )
    .await;
    // Unescaped, the traversal is resolved and lands on /admin: a token is needed.
    let answer = s.raw("GET", "/public/..%2fadmin/x", "").await;
    assert_eq!(status(&answer), 401, "{answer}");
    let answer = s.raw("GET", "/public/..;x/admin/x", "").await;
    assert_eq!(status(&answer), 401, "{answer}");
    assert!(s.up.requests().is_empty());
    // An encoded `;` is ambiguous under either policy: refused.
    let answer = s.raw("GET", "/public/a%3bx", "").await;
    assert_eq!(status(&answer), 400, "{answer}");
    let answer = s.raw("GET", "/public/a%2Fb;jsessionid=1/c", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].target(), "/public/a/b/c");

    let k = inbound(
        "deny",
        "escaped_slashes = \"keep\"",
        RawUpstream::start().await,
    )
    .await;
    let answer = k.raw("GET", "/public/..%2fadmin", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(k.up.requests()[0].target(), "/public/..%2Fadmin");
}

// ---- outbound and forward proxy -------------------------------------------

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
    let _ = now();
}
