//! Shared secrets and introspection: HS256 only with the configured secret,
//! following its rotation; an unreachable introspection endpoint denies or
//! allows as configured.

use super::*;
use std::time::Duration;
use support::until;

/// A compact JWS MACed with `secret` under `alg` (HS256/HS384).
fn hs(alg: &str, secret: &[u8], claims: &serde_json::Value) -> String {
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": "whatever"});
    support::jwt::hmac(&header, claims, secret)
}

#[tokio::test]
async fn hs256_works_only_with_the_configured_secret_and_follows_its_rotation() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hmac");
    let old: &[u8] = b"0123456789abcdef0123456789abcdef-old";
    let new: &[u8] = b"0123456789abcdef0123456789abcdef-new";
    std::fs::write(&secret_file, old).unwrap();
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\nalgorithms = [\"HS256\"]\nhmac_secret = {{ file = {} }}\njwks_refresh = \"1s\"\n{RULES}",
        quote(&echo.url()),
        quote(ISS),
        quote(AUD),
        quote(secret_file.to_str().unwrap()),
    );
    let sidecar = Sidecar::start(&SidecarConfig::new().raw(&inbound)).await;
    sidecar.ready().await;
    let s = Setup {
        url: sidecar.inbound(""),
        sidecar,
        echo,
        dir,
    };
    let c = claims(ISS, AUD, "orders:read");
    let good = hs("HS256", old, &c);
    assert_eq!(call(&s, "GET", "/orders/1", Some(&good)).await.0, 200);
    assert_eq!(
        s.echo.seen().pop().unwrap().headers["x-m2m-client-id"],
        "billing"
    );
    let refused = [
        (
            "another secret",
            hs("HS256", b"an-attacker-secret-of-32-bytes-or-more", &c),
        ),
        ("HS384 with the right secret", hs("HS384", old, &c)),
        ("an asymmetric token", {
            let k = TestKey::es256("k");
            k.sign(&k.header(), &c)
        }),
        (
            "a wrong audience",
            hs(
                "HS256",
                old,
                &claims(ISS, "https://other.example.com", "orders:read"),
            ),
        ),
    ];
    for (what, token) in &refused {
        let (status, headers, _) = call(&s, "GET", "/orders/1", Some(token)).await;
        assert_eq!(status, 401, "{what}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // Rotation: the secret file is re-read every jwks_refresh; the old secret's
    // tokens (cached ones too) stop working, the new secret's start.
    std::fs::write(&secret_file, new).unwrap();
    let fresh = hs("HS256", new, &c);
    until(Duration::from_secs(10), "the rotated secret", async || {
        call(&s, "GET", "/orders/1", Some(&fresh)).await.0 == 200
    })
    .await;
    assert_eq!(call(&s, "GET", "/orders/1", Some(&good)).await.0, 401);
    s.sidecar.stop().await;
}

#[tokio::test]
async fn an_unreachable_introspection_endpoint_denies_or_allows_as_configured() {
    // A port nothing listens on: the introspection call fails at once.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let key = TestKey::es256("k1");
    let token = key.sign(&key.header(), &claims(ISS, AUD, "orders:read"));
    for (on_error, want) in [("deny", 503), ("allow", 200)] {
        let extra = format!(
            "[inbound.introspection]\nurl = \"http://{dead}/introspect\"\nclient_id = \"api\"\nclient_secret = \"s3cret-value\"\non_error = \"{on_error}\"\ntimeout = \"2s\"\n"
        );
        let s = setup(&[&key], &extra).await;
        let (status, _, body) = call(&s, "GET", "/orders/1", Some(&token)).await;
        assert_eq!(status, want, "on_error = {on_error}: {body}");
        if want == 503 {
            assert!(body.contains("introspection_unavailable"), "{body}");
            assert!(!body.contains("s3cret"), "{body}");
        }
        let (_, metrics) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
        assert_eq!(
            support::metric(
                &metrics,
                "m2m_inbound_introspections_total{outcome=\"error\"}"
            ),
            1
        );
        s.sidecar.stop().await;
    }
}
