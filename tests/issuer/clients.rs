//! The issuer's clients: an outbound sidecar using it as its IdP, a
//! third-party verifier, and introspection by an app granted it.

use super::*;
use support::config::{Cred, SidecarConfig};
use support::echo::Echo;
use support::issuer::Reserved;

#[tokio::test]
async fn the_outbound_sidecar_uses_the_issuer_as_its_idp_with_every_secret_method() {
    let echo = Echo::start().await;
    // The credential's token URL is the issuer in the same process.
    let reserved = Reserved::new().await;
    let cred = |name: &str, method: &str| {
        Cred::new(name, &reserved.token_url())
            .text("client_id", "billing")
            .text("client_secret", BILLING_SECRET)
            .text("auth_method", method)
            .text("audience", ORDERS)
    };
    let mut config = SidecarConfig::new().credential(cred("orders", "client_secret_json"));
    // The two form methods as well, each a credential of its own.
    for method in ["client_secret_basic", "client_secret_post"] {
        config = config.credential(cred(method, method));
    }
    let config = config.outbound("orders", &echo.url(), "orders");
    let s = reserved.start(config, &api()).await;
    s.sidecar.ready().await;
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

/// Introspect `token`, authenticated with `basic` if given: status and JSON.
async fn introspect(
    s: &Issuer,
    token: &str,
    basic: Option<(&str, &str)>,
) -> (u16, serde_json::Value) {
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let mut req = client()
        .post(format!("{}oauth/introspect", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", enc(token)));
    if let Some((id, secret)) = basic {
        req = req.header("authorization", basic_header(id, secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn introspection_says_which_tokens_are_active() {
    let s = issuer().await;
    let form = BILLING_FORM;
    let (_, _, body) = token_form(&s, &form, None).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    // Only an app granted tokens:introspect may introspect (RFC 7662 §2.1).
    let (status, v) = introspect(&s, &token, Some(("billing", BILLING_SECRET))).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
    assert!(v.get("active").is_none(), "{v}");
    let (status, v) = introspect(&s, &token, Some(("gateway", GATEWAY_SECRET))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "billing");
    assert_eq!(v["aud"], ORDERS);
    assert_eq!(v["scope"], "orders:read orders:write");
    // Unauthenticated callers are refused.
    let (status, v) = introspect(&s, &token, None).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    // A tampered token, garbage, and a token from another issuer are inactive.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let other = issuer().await;
    let (_, _, body) = token_form(&other, &form, None).await;
    let foreign = body["access_token"].as_str().unwrap().to_owned();
    for t in [tampered, "not.a.jwt".to_owned(), foreign] {
        let (status, v) = introspect(&s, &t, Some(("gateway", GATEWAY_SECRET))).await;
        assert_eq!(
            (status, v.clone()),
            (200, serde_json::json!({"active": false})),
            "{v}"
        );
    }
    other.sidecar.stop().await;
    s.sidecar.stop().await;
}
