//! Every class of forged token is refused, and none reaches the upstream.

use super::*;
use support::jwt::{Forge, b64};

/// Every class of forged token, made from the valid token of `f` (RS256),
/// of `ec` (ES256) or by `attacker` (another key under the same kid).
fn forged(f: &Forge, ec: &Forge, attacker: &TestKey) -> Vec<(&'static str, String)> {
    let via = |header: serde_json::Value| f.signed_by(attacker, header);
    vec![
        ("alg none", f.unsigned(json!({"alg": "none", "kid": "k1"}))),
        ("alg None", f.unsigned(json!({"alg": "None"}))),
        ("HS256 with the RSA public key", f.hmac_with_public_key()),
        (
            "kid path traversal",
            f.with_header("kid", "../../../../dev/null".into()),
        ),
        (
            "kid SQL injection",
            f.with_header("kid", "x' OR '1'='1".into()),
        ),
        ("kid not a string", f.with_header("kid", json!(1))),
        (
            "jku to an attacker",
            via(json!({"alg": "RS256", "kid": "k1", "jku": "http://127.0.0.1:9/jwks"})),
        ),
        (
            "x5u to an attacker",
            via(json!({"alg": "RS256", "kid": "k1", "x5u": "http://127.0.0.1:9/cert"})),
        ),
        (
            "embedded jwk",
            via(json!({"alg": "RS256", "kid": "k1", "jwk": attacker.jwk()})),
        ),
        (
            "x5c",
            via(json!({"alg": "RS256", "kid": "k1", "x5c": ["MIIB"]})),
        ),
        ("unknown crit", f.with_header("crit", json!(["exp-ext"]))),
        (
            "RS256 key used as PS256",
            f.with_header("alg", "PS256".into()),
        ),
        ("expired", f.with_claim("exp", json!(now() - 60))),
        ("nbf in the future", f.with_claim("nbf", json!(now() + 600))),
        ("iat in the future", f.with_claim("iat", json!(now() + 600))),
        (
            "wrong iss",
            f.with_claim("iss", "https://evil.test/".into()),
        ),
        (
            "iss without its trailing slash",
            f.with_claim("iss", "https://issuer.test".into()),
        ),
        (
            "iss with an extra trailing slash",
            f.with_claim("iss", "https://issuer.test//".into()),
        ),
        (
            "wrong aud",
            f.with_claim("aud", "https://other.example.com".into()),
        ),
        (
            "aud array without ours",
            f.with_claim("aud", json!(["https://a", "https://b"])),
        ),
        ("exp as a string", f.with_claim("exp", "9999999999".into())),
        ("exp missing", f.without_claim("exp")),
        ("scope as a number", f.with_claim("scope", json!(5))),
        ("typ JOSE+json", f.with_header("typ", "JOSE+JSON".into())),
        ("truncated", f.truncated(10)),
        (
            "signature removed",
            f.reshaped(|[h, p, _]| format!("{h}.{p}.")),
        ),
        (
            "padded base64",
            f.reshaped(|[h, p, s]| format!("{h}=.{p}.{s}")),
        ),
        ("standard base64", f.standard_base64_signature()),
        ("non-canonical last char", f.last_char_changed()),
        (
            "JWE, five segments",
            f.reshaped(|[h, p, s]| format!("{h}.{p}.{s}.x.y")),
        ),
        ("two segments", f.reshaped(|[h, p, _]| format!("{h}.{p}"))),
        (
            "header not an object",
            f.reshaped(|[_, p, s]| format!("{}.{p}.{s}", b64(&json!([1])))),
        ),
        (
            "oversized",
            f.reshaped(|[h, _, s]| format!("{h}.{}.{s}", "A".repeat(9000))),
        ),
        ("ES256 r=0 s=0", ec.with_signature(&[0u8; 64])),
        ("ES256 DER signature", ec.der_signed()),
        ("signed by someone else", via(f.key.header())),
    ]
}

#[tokio::test]
async fn every_attack_class_is_refused() {
    let key = TestKey::rsa("k1", "RS256");
    let attacker = TestKey::rsa("k1", "RS256");
    let ec = TestKey::es256("ec1");
    let s = setup(&[&key, &ec], "").await;
    let good = claims(ISS, AUD, "orders:read");
    let (f, e) = (Forge::new(&key, good.clone()), Forge::new(&ec, good));
    let cases = forged(&f, &e, &attacker);
    assert_eq!(
        call(&s, "GET", "/orders/1", Some(&f.valid())).await.0,
        200,
        "the baseline token is fine"
    );
    for (what, token) in cases {
        let (status, _, body) = call(&s, "GET", "/orders/1", Some(&token)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            !body.contains(&token[..token.len().min(40)]),
            "{what}: token echoed"
        );
    }
    assert_eq!(
        s.echo.seen().len(),
        1,
        "nothing but the baseline reached the upstream"
    );
    s.sidecar.stop().await;
}
