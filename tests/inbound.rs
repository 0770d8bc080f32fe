//! The inbound listener: valid tokens pass with the identity added, every class
//! of bad token is refused, rules and answers follow RFC 6750, keys come from a
//! JWKS file or the built-in issuer through discovery.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use support::config::{SidecarConfig, quote};
use support::echo::Echo;
use support::http::client;
use support::jwt::{TestKey, b64, claims, jwks, now};
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
    let url = format!("http://{}", sidecar.handle.inbound_addr.unwrap());
    support::http::wait_for_status(
        &format!("{}/healthz", sidecar.admin_url("").trim_end_matches('/'))
            .replace("/healthz", "/readyz"),
        200,
        std::time::Duration::from_secs(10),
    )
    .await;
    Setup {
        sidecar,
        echo,
        url,
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

#[tokio::test]
async fn a_valid_token_passes_with_its_identity() {
    let key = TestKey::es256("k1");
    let s = setup(&[&key], "").await;
    let token = key.sign(&key.header(), &claims(ISS, AUD, "orders:read orders:write"));
    let resp = client()
        .get(format!("{}/orders/7", s.url))
        .header("authorization", format!("Bearer {token}"))
        .header("x-m2m-client-id", "spoofed")
        .header("x-m2m-scopes", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.echo.seen().pop().unwrap();
    assert_eq!(seen.headers["x-m2m-client-id"], "billing");
    assert_eq!(seen.headers["x-m2m-subject"], "billing@client");
    assert_eq!(seen.headers["x-m2m-scopes"], "orders:read orders:write");
    assert_eq!(
        seen.headers.get_all("x-m2m-client-id").iter().count(),
        1,
        "spoofed header removed"
    );
    assert!(
        seen.headers.get("authorization").is_none(),
        "the token is not forwarded by default"
    );
    assert_eq!(
        seen.headers["host"],
        s.url.trim_start_matches("http://"),
        "the service sees the Host it was called by"
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn every_algorithm_the_jwks_binds_is_accepted() {
    let keys = [
        TestKey::es256("ec"),
        TestKey::eddsa("ed"),
        TestKey::rsa("rs", "RS256"),
        TestKey::rsa("ps", "PS256"),
    ];
    let refs: Vec<&TestKey> = keys.iter().collect();
    let s = setup(&refs, "").await;
    for k in &keys {
        let token = k.sign(&k.header(), &claims(ISS, AUD, "orders:read"));
        assert_eq!(
            call(&s, "GET", "/orders/1", Some(&token)).await.0,
            200,
            "{}",
            k.alg
        );
    }
    s.sidecar.stop().await;
}

#[tokio::test]
async fn answers_follow_rfc_6750() {
    let key = TestKey::es256("k1");
    let s = setup(&[&key], "").await;
    let read = key.sign(&key.header(), &claims(ISS, AUD, "orders:read"));
    // No token: 401 with a bare challenge.
    let (status, h, body) = call(&s, "GET", "/orders/1", None).await;
    assert_eq!(
        (status, h["www-authenticate"].to_str().unwrap()),
        (401, "Bearer")
    );
    assert!(body.contains("invalid_token"));
    // A bad token: invalid_token in the challenge, the token never echoed.
    let (status, h, body) = call(&s, "GET", "/orders/1", Some("abc.def.ghi")).await;
    assert_eq!(status, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    assert!(!body.contains("abc.def"));
    // Missing scope: 403 naming it.
    let (status, h, body) = call(&s, "POST", "/orders/1", Some(&read)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        h["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"orders:write\""
    );
    // No rule, default deny: 403 access_denied after the token is checked.
    let (status, _, body) = call(&s, "GET", "/elsewhere", Some(&read)).await;
    assert_eq!((status, body.contains("access_denied")), (403, true));
    assert_eq!(
        call(&s, "GET", "/elsewhere", None).await.0,
        401,
        "no token is still 401"
    );
    // Public: no token needed.
    assert_eq!(call(&s, "GET", "/healthz", None).await.0, 200);
    // gRPC: HTTP 200 with grpc-status.
    let resp = client()
        .post(format!("{}/orders/1", s.url))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["grpc-status"].to_str().unwrap()
        ),
        (200, "16")
    );
    let resp = client()
        .post(format!("{}/orders/1", s.url))
        .header("content-type", "application/grpc+proto")
        .header("authorization", format!("Bearer {read}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["grpc-status"], "7");
    s.sidecar.stop().await;
}

#[tokio::test]
async fn every_attack_class_is_refused() {
    let key = TestKey::rsa("k1", "RS256");
    let attacker = TestKey::rsa("k1", "RS256");
    let ec = TestKey::es256("ec1");
    let s = setup(&[&key, &ec], "").await;
    let good = claims(ISS, AUD, "orders:read");
    let h = key.header();
    let with_claim = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        key.sign(&h, &c)
    };
    let with_header = |k: &str, v: serde_json::Value| {
        let mut hh = h.clone();
        hh[k] = v;
        key.sign(&hh, &good)
    };
    let valid = key.sign(&h, &good);
    let (vh, vp, vs) = {
        let p: Vec<&str> = valid.split('.').collect();
        (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
    };
    // HS256 "signed" with the RSA public key (the classic confusion attack).
    let hs = {
        let hdr = json!({"alg": "HS256", "kid": "k1", "typ": "at+jwt"});
        let msg = format!("{}.{}", b64(&hdr), b64(&good));
        let pubkey = key.jwk().to_string();
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pubkey.as_bytes()),
            msg.as_bytes(),
        );
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let ec_msg = format!("{}.{}", b64(&ec.header()), b64(&good));
    let ec_zero = format!("{ec_msg}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    let ec_der = {
        // A valid ES256 signature re-encoded as ASN.1 DER instead of r||s.
        let raw = ec.signature(ec_msg.as_bytes());
        let int = |b: &[u8]| {
            let mut v = b.to_vec();
            while v.len() > 1 && v[0] == 0 && v[1] < 0x80 {
                v.remove(0);
            }
            if v[0] >= 0x80 {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, v.len() as u8];
            out.extend(v);
            out
        };
        let (r, s_) = (int(&raw[..32]), int(&raw[32..]));
        let mut der = vec![0x30, (r.len() + s_.len()) as u8];
        der.extend(r);
        der.extend(s_);
        format!("{ec_msg}.{}", URL_SAFE_NO_PAD.encode(der))
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "k1"})),
                b64(&good)
            ),
        ),
        (
            "alg None",
            format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&good)),
        ),
        ("HS256 with the RSA public key", hs),
        (
            "kid path traversal",
            with_header("kid", "../../../../dev/null".into()),
        ),
        (
            "kid SQL injection",
            with_header("kid", "x' OR '1'='1".into()),
        ),
        ("kid not a string", with_header("kid", json!(1))),
        (
            "jku to an attacker",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "jku": "http://127.0.0.1:9/jwks"}),
                &good,
            ),
        ),
        (
            "x5u to an attacker",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "x5u": "http://127.0.0.1:9/cert"}),
                &good,
            ),
        ),
        (
            "embedded jwk",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "jwk": attacker.jwk()}),
                &good,
            ),
        ),
        (
            "x5c",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "x5c": ["MIIB"]}),
                &good,
            ),
        ),
        ("unknown crit", with_header("crit", json!(["exp-ext"]))),
        (
            "RS256 key used as PS256",
            with_header("alg", "PS256".into()),
        ),
        ("expired", with_claim("exp", json!(now() - 60))),
        ("nbf in the future", with_claim("nbf", json!(now() + 600))),
        ("iat in the future", with_claim("iat", json!(now() + 600))),
        ("wrong iss", with_claim("iss", "https://evil.test/".into())),
        (
            "iss without its trailing slash",
            with_claim("iss", "https://issuer.test".into()),
        ),
        (
            "iss with an extra trailing slash",
            with_claim("iss", "https://issuer.test//".into()),
        ),
        (
            "wrong aud",
            with_claim("aud", "https://other.example.com".into()),
        ),
        (
            "aud array without ours",
            with_claim("aud", json!(["https://a", "https://b"])),
        ),
        ("exp as a string", with_claim("exp", "9999999999".into())),
        ("exp missing", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            key.sign(&h, &c)
        }),
        ("scope as a number", with_claim("scope", json!(5))),
        ("typ JOSE+json", with_header("typ", "JOSE+JSON".into())),
        ("truncated", valid[..valid.len() - 10].to_owned()),
        ("signature removed", format!("{vh}.{vp}.")),
        ("padded base64", format!("{vh}=.{vp}.{vs}")),
        ("standard base64", {
            let std_sig = vs.replace('-', "+").replace('_', "/");
            assert_ne!(
                std_sig, vs,
                "the signature has a character that differs between alphabets"
            );
            format!("{vh}.{vp}.{std_sig}")
        }),
        ("non-canonical last char", {
            let mut t = valid.clone();
            let last = t.pop().unwrap();
            t.push(if last == 'A' { 'B' } else { 'A' });
            t
        }),
        ("JWE, five segments", format!("{vh}.{vp}.{vs}.x.y")),
        ("two segments", format!("{vh}.{vp}")),
        (
            "header not an object",
            format!("{}.{vp}.{vs}", URL_SAFE_NO_PAD.encode("[1]")),
        ),
        ("oversized", format!("{vh}.{}.{vs}", "A".repeat(9000))),
        ("ES256 r=0 s=0", ec_zero),
        ("ES256 DER signature", ec_der),
        ("signed by someone else", attacker.sign(&h, &good)),
    ];
    assert_eq!(
        call(&s, "GET", "/orders/1", Some(&valid)).await.0,
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
    let url = format!("http://{}/x", sidecar.handle.inbound_addr.unwrap());
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
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while call(&s, "GET", "/orders/1", Some(&short)).await.0 != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an expired cached token was still served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A cached token whose key leaves the JWKS is refused after the next refresh.
    let long = key.sign(&key.header(), &claims(ISS, AUD, "orders:read"));
    assert_eq!(call(&s, "GET", "/orders/1", Some(&long)).await.0, 200);
    let other = TestKey::es256("k2");
    std::fs::write(s.dir.path().join("jwks.json"), jwks(&[&other])).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while call(&s, "GET", "/orders/1", Some(&long)).await.0 != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a token of a removed key was still served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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

/// A compact JWS MACed with `secret` under `alg` (HS256/HS384).
fn hs(alg: &str, secret: &[u8], claims: &serde_json::Value) -> String {
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": "whatever"});
    let msg = format!("{}.{}", b64(&header), b64(claims));
    let algorithm = match alg {
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(algorithm, secret),
        msg.as_bytes(),
    );
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
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
    support::http::wait_for_status(
        &sidecar.admin_url("/readyz"),
        200,
        std::time::Duration::from_secs(10),
    )
    .await;
    let s = Setup {
        url: format!("http://{}", sidecar.handle.inbound_addr.unwrap()),
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while call(&s, "GET", "/orders/1", Some(&fresh)).await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "rotated secret not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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
