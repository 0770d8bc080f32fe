//! The inbound listener: valid tokens pass with the identity added, every class
//! of bad token is refused, rules and answers follow RFC 6750, keys come from a
//! JWKS file or the built-in issuer through discovery.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod answers;
mod attacks;
mod keys;
mod secrets;

use serde_json::json;
use support::config::{SidecarConfig, quote};
use support::echo::Echo;
use support::http::client;
use support::jwt::{TestKey, claims, jwks, now};
use support::sidecar::Sidecar;

const ISS: &str = "https://issuer.test/";
const AUD: &str = "https://orders.example.com";

const RULES: &str = r#"
[[inbound.rules]]
path = "/healthz"
public = true
[[inbound.rules]]
path = "/orders/*"
methods = ["GET"]
scopes = ["orders:read"]
[[inbound.rules]]
path = "/orders/*"
methods = ["POST"]
scopes = ["orders:write"]
"#;

struct Setup {
    sidecar: Sidecar,
    echo: Echo,
    url: String,
    dir: tempfile::TempDir,
}

/// An inbound listener in front of an echo upstream, keys from a JWKS file.
async fn setup(keys: &[&TestKey], extra: &str) -> Setup {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(keys)).unwrap();
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\njwks_file = {}\naudiences = [{}]\njwks_cooldown = \"0s\"\n{}\n{RULES}",
        quote(&echo.url()),
        quote(ISS),
        quote(file.to_str().unwrap()),
        quote(AUD),
        if extra.contains("leeway") {
            extra.to_owned()
        } else {
            format!("leeway = \"5s\"\n{extra}")
        }
    );
    let sidecar = Sidecar::start(&SidecarConfig::new().raw(&inbound)).await;
    sidecar.ready().await;
    Setup {
        url: sidecar.inbound(""),
        sidecar,
        echo,
        dir,
    }
}

async fn call(
    s: &Setup,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().request(method.parse().unwrap(), format!("{}{path}", s.url));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap())
}
