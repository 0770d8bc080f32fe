//! Keys: unusable ones not loaded, a rotated one picked up, none at all
//! answered 503; verified tokens cached until they expire or their key goes.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::Duration;
use support::until;

#[tokio::test]
async fn small_rsa_keys_and_encryption_keys_are_not_loaded() {
    let good = TestKey::es256("good");
    let s = setup(&[&good], "").await;
    // Rewrite the JWKS: an RSA-1024 key and a use=enc key beside the good one.
    let mut small = json!({"kty": "RSA", "kid": "small", "alg": "RS256", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode([0xC1u8; 128])});
    small["use"] = "sig".into();
    let mut enc = good.jwk();
    enc["kid"] = "enc".into();
    enc["use"] = "enc".into();
    let doc = json!({"keys": [good.jwk(), small, enc]}).to_string();
    std::fs::write(s.dir.path().join("jwks.json"), doc).unwrap();
    let mut h = good.header();
    h["kid"] = "enc".into();
    let token = good.sign(&h, &claims(ISS, AUD, "orders:read"));
    assert_eq!(
        call(&s, "GET", "/orders/1", Some(&token)).await.0,
        401,
        "a use=enc key never verifies"
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_restart() {
    let old = TestKey::es256("old");
    let s = setup(&[&old], "").await;
    let new = TestKey::es256("new");
    std::fs::write(s.dir.path().join("jwks.json"), jwks(&[&old, &new])).unwrap();
    let token = new.sign(&new.header(), &claims(ISS, AUD, "orders:read"));
    // The unknown kid triggers a refetch (cooldown 0 here) and the token passes.
    assert_eq!(call(&s, "GET", "/orders/1", Some(&token)).await.0, 200);
    s.sidecar.stop().await;
}

#[tokio::test]
async fn without_keys_requests_get_503_and_readyz_says_so() {
    let echo = Echo::start().await;
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\njwks_file = \"/nonexistent/jwks.json\"\naudiences = [{}]\n",
        quote(&echo.url()),
        quote(ISS),
        quote(AUD)
    );
    let sidecar = Sidecar::start(&SidecarConfig::new().raw(&inbound)).await;
    let url = sidecar.inbound("/x");
    let key = TestKey::es256("k");
    let token = key.sign(&key.header(), &claims(ISS, AUD, ""));
    let resp = client().get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("keys_unavailable"));
    let (status, body) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["inbound"]["keys"], 0);
    sidecar.stop().await;
}

#[tokio::test]
async fn the_verified_token_cache_serves_repeats_until_exp_or_key_removal() {
    let key = TestKey::es256("k1");
    let s = setup(&[&key], "leeway = \"0s\"\njwks_refresh = \"1s\"").await;
    // A token that expires in 2 s: cached, then refused once expired.
    let mut c = claims(ISS, AUD, "orders:read");
    c["exp"] = (now() + 2).into();
    let short = key.sign(&key.header(), &c);
    for _ in 0..5 {
        assert_eq!(call(&s, "GET", "/orders/1", Some(&short)).await.0, 200);
    }
    let (_, metrics) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
    assert_eq!(
        support::metric(&metrics, "m2m_inbound_token_cache_total{outcome=\"hit\"}"),
        4,
        "{metrics}"
    );
    assert_eq!(
        support::metric(&metrics, "m2m_inbound_token_cache_total{outcome=\"miss\"}"),
        1
    );
    let what = "an expired cached token to be refused";
    until(Duration::from_secs(10), what, async || {
        call(&s, "GET", "/orders/1", Some(&short)).await.0 == 401
    })
    .await;
    // A cached token whose key leaves the JWKS is refused after the next refresh.
    let long = key.sign(&key.header(), &claims(ISS, AUD, "orders:read"));
    assert_eq!(call(&s, "GET", "/orders/1", Some(&long)).await.0, 200);
    let other = TestKey::es256("k2");
    std::fs::write(s.dir.path().join("jwks.json"), jwks(&[&other])).unwrap();
    let what = "a token of a removed key to be refused";
    until(Duration::from_secs(10), what, async || {
        call(&s, "GET", "/orders/1", Some(&long)).await.0 == 401
    })
    .await;
    let (_, metrics) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
    assert!(
        support::metric(
            &metrics,
            "m2m_inbound_jwks_fetches_total{outcome=\"success\"}"
        ) >= 2,
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "m2m_inbound_verifications_total{outcome=\"rejected\",reason=\"token expired\"}"
        ),
        "{metrics}"
    );
    s.sidecar.stop().await;
}
