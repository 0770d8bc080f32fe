//! The token endpoint: the seed's request, both form methods, every error
//! case, the body cap and the throttle on failed authentication.

use super::*;
use support::config::SidecarConfig;
use support::issuer::Reserved;

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

/// [`BILLING_FORM`] with `k` set to `v`.
fn with(k: &'static str, v: &'static str) -> Vec<(&'static str, &'static str)> {
    BILLING_FORM
        .iter()
        .map(|&(a, b)| if a == k { (a, v) } else { (a, b) })
        .collect()
}

/// [`BILLING_FORM`] without `k`.
fn without(k: &str) -> Vec<(&'static str, &'static str)> {
    BILLING_FORM
        .iter()
        .copied()
        .filter(|(a, _)| *a != k)
        .collect()
}

/// Failed client authentication.
fn authentication_cases() -> Vec<Case> {
    let ok = BILLING_FORM;
    vec![
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
    ]
}

/// Authenticated requests the endpoint refuses.
fn request_cases() -> Vec<Case> {
    let ok = BILLING_FORM;
    let mut repeated = ok.to_vec();
    repeated.push(("audience", ORDERS));
    let mut resource_differs = ok.to_vec();
    resource_differs.push(("resource", "https://other.example.com"));
    let mut blocked = with("client_id", "blocked");
    blocked.retain(|(k, _)| *k != "client_secret");
    blocked.push(("client_secret", BLOCKED_SECRET));
    vec![
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
        (blocked, None, 400, "unauthorized_client", "blocked"),
    ]
}

#[tokio::test]
async fn every_error_case() {
    let s = issuer().await;
    let cases = [authentication_cases(), request_cases()].concat();
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
async fn bodies_over_max_body_bytes_are_refused() {
    let s = Reserved::new()
        .await
        .start(
            SidecarConfig::new().raw("[limits]\nmax_body_bytes = 2048"),
            &with_gateway(),
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
