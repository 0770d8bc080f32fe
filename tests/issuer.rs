//! The built-in issuer: token endpoint (every error case), tokens verified
//! against the served JWKS, discovery, key persistence, and the outbound sidecar
//! using it as its IdP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use base64::Engine as _;
use support::config::{Cred, SidecarConfig, issuer_toml};
use support::echo::Echo;
use support::http::client;
use support::sidecar::Sidecar;

const ORDERS: &str = "https://orders.example.com";
const BILLING_SECRET: &str = "billing-secret-0123456789abcdef0123456789";
/// The billing app's token request for the Orders API, as a form.
const BILLING_FORM: [(&str, &str); 4] = [
    ("grant_type", "client_credentials"),
    ("audience", ORDERS),
    ("client_id", "billing"),
    ("client_secret", BILLING_SECRET),
];
const TABLES: &str = r#"
[[issuer.apis]]
name = "Orders API"
identifier = "https://orders.example.com"
scopes = ["orders:read", "orders:write"]

[[issuer.apps]]
name = "billing"
client_id = "billing"
client_secret = "billing-secret-0123456789abcdef0123456789"
grants = { "https://orders.example.com" = ["orders:read", "orders:write"] }

[[issuer.apps]]
name = "blocked one"
client_id = "blocked"
client_secret = "blocked-secret-0123456789abcdef0123456789"
grants = { "https://orders.example.com" = ["orders:read"] }
blocked = true
"#;
const GATEWAY_SECRET: &str = "gateway-secret-0123456789abcdef0123456789";

/// [`TABLES`] and an app `gateway` granted `tokens:introspect` (the issuer at `port`).
fn tables(port: u16) -> String {
    format!(
        "{TABLES}\n[[issuer.apps]]\nname = \"gateway\"\nclient_id = \"gateway\"\nclient_secret = \"{GATEWAY_SECRET}\"\ngrants = {{ \"http://127.0.0.1:{port}/api/v1/\" = [\"tokens:introspect\"] }}\n"
    )
}

struct Setup {
    sidecar: Sidecar,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start(extra: SidecarConfig, dir: tempfile::TempDir) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = extra.raw(&issuer_toml(port, dir.path(), &tables(port)));
    let sidecar = Sidecar::start_with(&config, Some(listener)).await;
    Setup {
        sidecar,
        url: format!("http://127.0.0.1:{port}/"),
        _dir: dir,
    }
}

async fn issuer() -> Setup {
    start(SidecarConfig::new(), tempfile::tempdir().unwrap()).await
}

/// POST a form to the token endpoint: status, headers, JSON body.
async fn token_form(
    s: &Setup,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    if let Some((id, secret)) = basic {
        let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(id), enc(secret));
        req = req.header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        );
    }
    let resp = req.body(body).send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

async fn verify(s: &Setup, token: &str) -> (jsonwebtoken::Header, serde_json::Value) {
    let (_, jwks) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[ORDERS]);
    v.set_issuer(&[&s.url]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap()
        .claims;
    (header, claims)
}

#[tokio::test]
async fn the_seeds_json_request_gets_a_verifiable_token() {
    let s = issuer().await;
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/json")
        .body(serde_json::json!({"audience": ORDERS, "grant_type": "client_credentials", "client_id": "billing", "client_secret": BILLING_SECRET}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let (header, claims) = verify(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["sub"], "billing@client");
    assert_eq!(claims["cid"], "billing");
    assert_eq!(claims["client_id"], "billing");
    assert_eq!(claims["gty"], "client_credentials");
    assert_eq!(
        claims["scp"],
        serde_json::json!(["orders:read", "orders:write"]),
        "no scope = all granted"
    );
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    s.sidecar.stop().await;
}

#[tokio::test]
async fn basic_and_post_with_resource_and_a_scope_subset() {
    let s = issuer().await;
    let (status, _, body) = token_form(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("resource", ORDERS),
            ("scope", "orders:read"),
        ],
        Some(("billing", BILLING_SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = verify(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["scp"], serde_json::json!(["orders:read"]));
    let (status, _, body) = token_form(&s, &BILLING_FORM, None).await;
    assert_eq!(status, 200, "{body}");
    let (_, a) = verify(&s, body["access_token"].as_str().unwrap()).await;
    let (status, _, body) = token_form(&s, &BILLING_FORM, None).await;
    assert_eq!(status, 200);
    let (_, b) = verify(&s, body["access_token"].as_str().unwrap()).await;
    assert_ne!(a["jti"], b["jti"], "jti is unique");
    s.sidecar.stop().await;
}

/// (form, Basic credentials, status, error code, words in the description)
type Case = (
    Vec<(&'static str, &'static str)>,
    Option<(&'static str, &'static str)>,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn every_error_case() {
    let s = issuer().await;
    let ok = BILLING_FORM;
    let with = |k: &'static str, v: &'static str| -> Vec<(&'static str, &'static str)> {
        ok.iter()
            .map(|&(a, b)| if a == k { (a, v) } else { (a, b) })
            .collect()
    };
    let without = |k: &str| -> Vec<(&'static str, &'static str)> {
        ok.iter().copied().filter(|(a, _)| *a != k).collect()
    };
    let mut repeated = ok.to_vec();
    repeated.push(("audience", ORDERS));
    let mut resource_differs = ok.to_vec();
    resource_differs.push(("resource", "https://other.example.com"));
    let cases: Vec<Case> = vec![
        (
            with("client_secret", "wrong-secret-0123456789abcdef0123456789"),
            None,
            401,
            "invalid_client",
            "failed",
        ),
        (
            without("client_secret"),
            None,
            401,
            "invalid_client",
            "required",
        ),
        (
            with("client_id", "nobody"),
            None,
            401,
            "invalid_client",
            "failed",
        ),
        (
            without("client_secret"),
            Some(("billing", "wrong-secret-0123456789abcdef0123")),
            401,
            "invalid_client",
            "failed",
        ),
        (
            ok.to_vec(),
            Some(("billing", BILLING_SECRET)),
            400,
            "invalid_request",
            "one client authentication method",
        ),
        (repeated, None, 400, "invalid_request", "repeated"),
        (
            without("grant_type"),
            None,
            400,
            "invalid_request",
            "grant_type is required",
        ),
        (
            with("grant_type", "password"),
            None,
            400,
            "unsupported_grant_type",
            "password",
        ),
        (
            without("audience"),
            None,
            400,
            "invalid_request",
            "audience",
        ),
        (
            with("audience", "https://unknown.example.com"),
            None,
            400,
            "invalid_target",
            "unknown.example.com",
        ),
        (resource_differs, None, 400, "invalid_request", "differ"),
        (
            [ok.to_vec(), vec![("scope", "orders:delete")]].concat(),
            None,
            400,
            "invalid_scope",
            "orders:delete",
        ),
        (
            [with("client_id", "blocked"), vec![]]
                .concat()
                .into_iter()
                .map(|(k, v)| {
                    if k == "client_secret" {
                        (k, "blocked-secret-0123456789abcdef0123456789")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            None,
            400,
            "unauthorized_client",
            "blocked",
        ),
    ];
    for (form, basic, status, code, words) in cases {
        let (got, headers, body) = token_form(&s, &form, basic).await;
        assert_eq!(
            (got, body["error"].as_str().unwrap()),
            (status, code),
            "{form:?} {basic:?}: {body}"
        );
        assert!(
            body["error_description"].as_str().unwrap().contains(words),
            "{form:?}: {body}"
        );
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
        let challenge = headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            challenge.is_some(),
            status == 401 && basic.is_some(),
            "{form:?} {basic:?}: {challenge:?}"
        );
        assert!(
            !body.to_string().contains("secret-0123"),
            "no secret echoed: {body}"
        );
    }
    // A body over the cap.
    let big = "a".repeat(70 * 1024);
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (_, metrics) = support::http::get(&format!("{}metrics", s.url)).await;
    assert!(
        metrics.contains(r#"m2m_issuer_token_errors_total{code="invalid_client"} 4"#),
        "{metrics}"
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn discovery_documents() {
    let s = issuer().await;
    for path in [
        ".well-known/oauth-authorization-server",
        ".well-known/openid-configuration",
    ] {
        let (status, doc) = support::http::get_json(&format!("{}{path}", s.url)).await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], s.url);
        assert_eq!(doc["token_endpoint"], format!("{}oauth/token", s.url));
        assert_eq!(doc["jwks_uri"], format!("{}.well-known/jwks.json", s.url));
        assert_eq!(
            doc["introspection_endpoint"],
            format!("{}oauth/introspect", s.url)
        );
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&"orders:read".into())
        );
    }
    s.sidecar.stop().await;
}

#[tokio::test]
async fn the_signing_key_survives_a_restart_and_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let s = start(SidecarConfig::new(), dir).await;
    let (_, jwks1) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
    let Setup {
        sidecar, _dir: dir, ..
    } = s;
    sidecar.stop().await;
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path.join("signing-es256.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let s = start(SidecarConfig::new(), dir).await;
    let (_, jwks2) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
    assert_eq!(jwks1["keys"][0]["kid"], jwks2["keys"][0]["kid"]);
    assert_eq!(jwks1["keys"][0]["x"], jwks2["keys"][0]["x"]);
    s.sidecar.stop().await;
}

#[tokio::test]
async fn the_outbound_sidecar_uses_the_issuer_as_its_idp_with_every_secret_method() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The credential's token URL is the issuer in the same process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cred = Cred::new("orders", &format!("http://127.0.0.1:{port}/oauth/token"))
        .text("client_id", "billing")
        .text("client_secret", BILLING_SECRET)
        .text("auth_method", "client_secret_json")
        .text("audience", ORDERS);
    // The two form methods as well, each a credential of its own.
    let mut config = SidecarConfig::new().credential(cred);
    for method in ["client_secret_basic", "client_secret_post"] {
        config = config.credential(
            Cred::new(method, &format!("http://127.0.0.1:{port}/oauth/token"))
                .text("client_id", "billing")
                .text("client_secret", BILLING_SECRET)
                .text("auth_method", method)
                .text("audience", ORDERS),
        );
    }
    let config = config
        .outbound("orders", &echo.url(), "orders")
        .raw(&issuer_toml(port, dir.path(), TABLES));
    let sidecar = Sidecar::start_with(&config, Some(listener)).await;
    support::http::wait_for_status(
        &sidecar.admin_url("/readyz"),
        200,
        std::time::Duration::from_secs(20),
    )
    .await;
    let s = Setup {
        sidecar,
        url: format!("http://127.0.0.1:{port}/"),
        _dir: dir,
    };
    let (status, body) =
        support::http::get(&format!("{}/orders/1", s.sidecar.outbound("orders"))).await;
    assert_eq!(status, 200, "{body}");
    let auth = echo
        .seen()
        .pop()
        .unwrap()
        .authorization()
        .unwrap()
        .to_owned();
    let (_, claims) = verify(&s, auth.strip_prefix("Bearer ").unwrap()).await;
    assert_eq!(claims["cid"], "billing");
    s.sidecar.stop().await;
}

/// The npm package `jose` (tests/peers/jose) verifies our token and discovery.
#[tokio::test]
async fn a_third_party_verifier_accepts_the_tokens() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/jose");
    if !dir.join("node_modules/jose").is_dir() {
        let msg = "jose is not installed: run `npm ci --prefix tests/peers/jose` (test.sh does)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let s = issuer().await;
    let form = BILLING_FORM;
    let (status, _, body) = token_form(&s, &form, None).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let run = |audience: &'static str, token: String| {
        let (dir, url) = (dir.clone(), s.url.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("node")
                .arg(dir.join("verify.mjs"))
                .args([url.as_str(), audience, token.as_str()])
                .output()
                .unwrap()
        })
    };
    let out = run(ORDERS, token.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["header"]["typ"], "at+jwt");
    assert_eq!(v["payload"]["client_id"], "billing");
    // And it can fail: the wrong audience is rejected.
    let out = run("https://other.example.com", token).await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aud"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn failed_authentication_is_throttled_without_locking_out_the_right_secret() {
    let s = issuer().await;
    let wrong = [
        ("grant_type", "client_credentials"),
        ("audience", ORDERS),
        ("client_id", "billing"),
        ("client_secret", "wrong-secret-0123456789abcdef0123456789"),
    ];
    for i in 0..10 {
        let (status, _, body) = token_form(&s, &wrong, None).await;
        assert_eq!(status, 401, "attempt {i}: {body}");
    }
    // Past the budget, failures are answered 429 with Retry-After...
    let (status, headers, body) = token_form(&s, &wrong, None).await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "{retry}");
    // ...but the right secret still gets its token.
    let (status, _, body) = token_form(&s, &BILLING_FORM, None).await;
    assert_eq!(status, 200, "{body}");
    // Another client is not affected.
    let other = [
        ("grant_type", "client_credentials"),
        ("audience", ORDERS),
        ("client_id", "blocked"),
        ("client_secret", "blocked-secret-0123456789abcdef0123456789"),
    ];
    assert_eq!(token_form(&s, &other, None).await.0, 400);
    let (_, metrics) = support::http::get(&format!("{}metrics", s.url)).await;
    assert!(
        metrics.contains("m2m_issuer_auth_throttled_total 1"),
        "{metrics}"
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn introspection_says_which_tokens_are_active() {
    let s = issuer().await;
    let form = BILLING_FORM;
    let (_, _, body) = token_form(&s, &form, None).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let introspect = |t: String, basic: Option<(&'static str, &'static str)>| {
        let url = s.url.clone();
        async move {
            let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
            let mut req = client()
                .post(format!("{url}oauth/introspect"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={}", enc(&t)));
            if let Some((id, secret)) = basic {
                req = req.header(
                    "authorization",
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!(
                            "{}:{}",
                            enc(id),
                            enc(secret)
                        ))
                    ),
                );
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                serde_json::from_str::<serde_json::Value>(&resp.text().await.unwrap()).unwrap(),
            )
        }
    };
    // Only an app granted tokens:introspect may introspect (RFC 7662 §2.1).
    let (status, v) = introspect(token.clone(), Some(("billing", BILLING_SECRET))).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
    assert!(v.get("active").is_none(), "{v}");
    let (status, v) = introspect(token.clone(), Some(("gateway", GATEWAY_SECRET))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "billing");
    assert_eq!(v["aud"], ORDERS);
    assert_eq!(v["scope"], "orders:read orders:write");
    // Unauthenticated callers are refused.
    let (status, v) = introspect(token.clone(), None).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    // A tampered token, garbage, and a token from another issuer are inactive.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let other = issuer().await;
    let (_, _, body) = token_form(&other, &form, None).await;
    let foreign = body["access_token"].as_str().unwrap().to_owned();
    for t in [tampered, "not.a.jwt".to_owned(), foreign] {
        let (status, v) = introspect(t, Some(("gateway", GATEWAY_SECRET))).await;
        assert_eq!(
            (status, v.clone()),
            (200, serde_json::json!({"active": false})),
            "{v}"
        );
    }
    other.sidecar.stop().await;
    s.sidecar.stop().await;
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_verify_against_the_jwks() {
    for (alg, kty) in [("RS256", "RSA"), ("EdDSA", "OKP")] {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tables = format!("signing_alg = \"{alg}\"\n{TABLES}");
        let config = SidecarConfig::new().raw(&issuer_toml(port, dir.path(), &tables));
        let s = Setup {
            sidecar: Sidecar::start_with(&config, Some(listener)).await,
            url: format!("http://127.0.0.1:{port}/"),
            _dir: dir,
        };
        let form = BILLING_FORM;
        let (status, _, body) = token_form(&s, &form, None).await;
        assert_eq!(status, 200, "{alg}: {body}");
        let token = body["access_token"].as_str().unwrap();
        let (_, jwks) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], alg);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let key =
            jsonwebtoken::DecodingKey::from_jwk(set.find(header.kid.as_deref().unwrap()).unwrap())
                .unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[ORDERS]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["cid"], "billing");
        s.sidecar.stop().await;
    }
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_refused() {
    let s = start(
        SidecarConfig::new().raw("[limits]\nmax_body_bytes = 2048"),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let padding = "x".repeat(4096);
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id=billing&client_secret={BILLING_SECRET}&audience={ORDERS}&pad={padding}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("larger than 2048 bytes"), "{body}");
    // The same request without the padding is fine.
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id=billing&client_secret={BILLING_SECRET}&audience={ORDERS}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    s.sidecar.stop().await;
}
