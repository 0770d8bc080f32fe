//! The outbound flow against an authorization server no one here wrote: the npm
//! package `oidc-provider` 8.x (tests/peers/oidc-provider), issuing JWT access
//! tokens through its clientCredentials and resourceIndicators features.
//!
//! `.ci/run` installs it with `npm ci`; without it this test says so and skips,
//! except under CI (`CI` set), where a missing peer is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use support::config::{Cred, SidecarConfig, quote};
use support::echo::Echo;
use support::sidecar::Sidecar;

const RESOURCE: &str = "https://orders.example.com";

struct Peer {
    child: Child,
    issuer: String,
    token_endpoint: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer() -> Option<Peer> {
    start_peer_env(&[])
}

fn start_peer_env(env: &[(&str, &str)]) -> Option<Peer> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oidc-provider");
    if !dir.join("node_modules/oidc-provider").is_dir() {
        let msg = "oidc-provider is not installed: run `npm ci --prefix tests/peers/oidc-provider` (.ci/run does)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let mut child = Command::new("node")
        .arg(dir.join("server.js"))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    // The peer prints one JSON line once it listens; read it on a thread with a bound.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("oidc-provider starts within 30 s");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    Some(Peer {
        child,
        issuer: v["issuer"].as_str().unwrap().to_owned(),
        token_endpoint: v["token_endpoint"].as_str().unwrap().to_owned(),
    })
}

/// Verify the token the upstream received against the peer's JWKS.
async fn verify(peer: &Peer, bearer: &str) -> serde_json::Value {
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let (_, jwks) = support::http::get_json(&format!("{}/jwks", peer.issuer)).await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[RESOURCE]);
    validation.set_issuer(&[&peer.issuer]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims
}

async fn flow(method: &str, client_id: &str, secret: &str) {
    let Some(peer) = start_peer() else { return };
    let echo = Echo::start().await;
    let cred = Cred::new("orders", &peer.token_endpoint)
        .text("auth_method", method)
        .text("client_id", client_id)
        .text("client_secret", secret)
        .text("resource", RESOURCE)
        .with("scopes", &format!("[{}]", quote("orders:read")));
    let sidecar = Sidecar::start(&SidecarConfig::new().credential(cred).outbound(
        "orders",
        &echo.url(),
        "orders",
    ))
    .await;
    let (status, body) =
        support::http::get(&format!("{}/orders/1", sidecar.outbound("orders"))).await;
    assert_eq!(status, 200, "{body}");
    let seen = echo.seen().pop().unwrap();
    let claims = verify(&peer, seen.authorization().unwrap()).await;
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["aud"], RESOURCE);
    let (status, ready) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    sidecar.stop().await;
}

#[tokio::test]
async fn client_secret_basic_against_oidc_provider() {
    flow(
        "client_secret_basic",
        "basic-client",
        "s3cr3t: +%/with spaces&=?",
    )
    .await;
}

#[tokio::test]
async fn client_secret_post_against_oidc_provider() {
    flow("client_secret_post", "post-client", "p0st s3cr3t: +%/&=?~").await;
}

#[tokio::test]
async fn a_wrong_secret_is_reported_by_readyz() {
    let Some(peer) = start_peer() else { return };
    let cred = Cred::new("orders", &peer.token_endpoint)
        .text("client_id", "basic-client")
        .text("client_secret", "not-the-secret-0123456789")
        .text("resource", RESOURCE);
    let sidecar = Sidecar::start(&SidecarConfig::new().credential(cred)).await;
    let e = support::until(support::LONG, "the error on /readyz", async || {
        let (status, body) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
        assert_eq!(status, 503);
        let e = body["credentials"]["orders"]["last_error"].as_str();
        e.map(str::to_owned).ok_or(body)
    })
    .await;
    assert!(e.contains("401: invalid_client"), "{e}");
    assert!(!e.contains("not-the-secret"));
    sidecar.stop().await;
}

#[tokio::test]
async fn private_key_jwt_against_oidc_provider() {
    use support::jwt::{TestKey, jwks};
    let keys = [
        TestKey::es256("jwt-es"),
        TestKey::rsa("jwt-ps", "PS256"),
        TestKey::eddsa("jwt-ed"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("client-jwks.json");
    std::fs::write(&jwks_file, jwks(&keys.iter().collect::<Vec<_>>())).unwrap();
    let Some(peer) = start_peer_env(&[("JWT_CLIENT_JWKS", jwks_file.to_str().unwrap())]) else {
        return;
    };
    let echo = Echo::start().await;
    let mut config = SidecarConfig::new();
    for key in &keys {
        let pem = dir.path().join(format!("{}.pem", key.kid));
        std::fs::write(&pem, key.private_pem()).unwrap();
        let cred = Cred::new(&key.kid, &peer.token_endpoint)
            .remove("client_secret")
            .text("client_id", "jwt-client")
            .text("auth_method", "private_key_jwt")
            .with(
                "private_key",
                &format!("{{ file = {} }}", quote(pem.to_str().unwrap())),
            )
            .text("key_id", &key.kid)
            .text("assertion_alg", key.alg)
            .text("resource", RESOURCE);
        config = config.credential(cred);
    }
    // Through discovery: the assertion's aud is then the issuer identifier.
    let pem = dir.path().join("discovered.pem");
    std::fs::write(&pem, keys[0].private_pem()).unwrap();
    let discovered = Cred::new("discovered", "unused")
        .remove("token_url")
        .remove("client_secret")
        .text("issuer", &peer.issuer)
        .text("client_id", "jwt-client")
        .text("auth_method", "private_key_jwt")
        .with(
            "private_key",
            &format!("{{ file = {} }}", quote(pem.to_str().unwrap())),
        )
        .text("key_id", &keys[0].kid)
        .text("resource", RESOURCE);
    let config = config
        .credential(discovered)
        .outbound("orders", &echo.url(), "discovered");
    let sidecar = Sidecar::start(&config).await;
    let body = sidecar.ready().await;
    let (status, answer) =
        support::http::get(&format!("{}/orders/1", sidecar.outbound("orders"))).await;
    assert_eq!(status, 200, "{answer} / {body}");
    let claims = verify(&peer, echo.seen().pop().unwrap().authorization().unwrap()).await;
    assert_eq!(claims["client_id"], "jwt-client");
    sidecar.stop().await;
}
