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

#[path = "../support/mod.rs"]
mod support;

mod claims;
mod headers;
mod methods;
mod outbound_and_forward;
mod paths;
mod upstream;

use serde_json::{Value, json};
use std::net::SocketAddr;
use support::config::{SidecarConfig, quote};
use support::jwt::{TestKey, claims, jwks};
use support::raw::{RawUpstream, send, status};
use support::sidecar::Sidecar;

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
    sidecar.ready().await;
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

/// The request went on as a plain one: no `Upgrade`, no `HTTP2-Settings`.
fn assert_not_upgrading(got: &support::raw::RawRequest, what: &str) {
    assert!(got.header("upgrade").is_empty(), "{what}: {}", got.head);
    assert!(
        got.header("http2-settings").is_empty(),
        "{what}: {}",
        got.head
    );
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
