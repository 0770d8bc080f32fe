//! Who may call the management API, and changes to apps taking effect on the
//! next token.

use super::*;

#[tokio::test]
async fn the_management_api_is_protected_by_the_issuers_own_tokens() {
    let s = start().await;
    let (status, headers, body) = s.call_raw("GET", "api/v1/apps", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"m2m-sidecar\"");
    // A token for another audience is not a management token.
    let (_, orders) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let (status, headers, _) = s
        .call_raw("GET", "api/v1/apps", orders["access_token"].as_str(), None)
        .await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // Reading with apps:read works; writing needs apps:write.
    let reader = s.admin_token("reader").await;
    let (status, apps) = s.call("GET", "api/v1/apps", Some(&reader), None).await;
    assert_eq!(status, 200);
    assert!(
        !apps.to_string().contains("secret"),
        "no secrets listed: {apps}"
    );
    let (status, headers, body) = s
        .call_raw(
            "POST",
            "api/v1/apps",
            Some(&reader),
            Some(r#"{"name":"x"}"#.into()),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"apps:write\"")
    );
    // Bad JSON and unknown fields say what is wrong.
    let admin = s.admin_token("admin").await;
    let (status, _, body) = s
        .call_raw(
            "POST",
            "api/v1/apps",
            Some(&admin),
            Some(r#"{"name":"x","colour":"red"}"#.into()),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    s.sidecar.stop().await;
}

const STOCK: &str = "https://stock.example.com";

#[tokio::test]
async fn apps_grants_blocking_and_secrets_take_effect_at_once() {
    let s = start().await;
    let admin = s.admin_token("admin").await;
    let (id, secret, old_token) = a_new_api_and_app(&s, &admin).await;
    the_grant_limited(&s, &admin, &id, &secret).await;
    blocked_and_unblocked(&s, &admin, &id, &secret, &old_token).await;
    the_secret_rotated(&s, &admin, &id, &secret).await;
    s.sidecar.stop().await;
}

/// An app `shop` with a grant on a new API: its id, secret and a token.
async fn a_new_api_and_app(s: &Issuer, admin: &str) -> (String, String, String) {
    let admin = Some(admin);
    // A new API and an app with a grant; the secret is returned once.
    let (status, api) = s.call("POST", "api/v1/apis", admin, Some(serde_json::json!({"name": "Stock API", "identifier": STOCK, "scopes": ["stock:read", "stock:write"]}))).await;
    assert_eq!((status, api["id"].as_str()), (201, Some("stock-api")));
    let (_, discovery) = s
        .call("GET", ".well-known/oauth-authorization-server", None, None)
        .await;
    assert!(
        discovery["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&"stock:read".into()),
        "{discovery}"
    );
    let (status, app) = s.call("POST", "api/v1/apps", admin, Some(serde_json::json!({"name": "shop", "grants": {STOCK: ["stock:read", "stock:write"]}}))).await;
    assert_eq!(status, 201, "{app}");
    let (id, secret) = (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    assert!(secret.len() >= 43, "256 bits");
    let (_, again) = s
        .call("GET", &format!("api/v1/apps/{id}"), admin, None)
        .await;
    assert!(again.get("client_secret").is_none());
    let (status, tok) = s.token(&id, &secret, STOCK).await;
    assert_eq!(
        (status, tok["scope"].as_str()),
        (200, Some("stock:read stock:write"))
    );
    let old_token = tok["access_token"].as_str().unwrap().to_owned();
    (id, secret, old_token)
}

async fn the_grant_limited(s: &Issuer, admin: &str, id: &str, secret: &str) {
    let admin = Some(admin);
    // Limit the grant: the next token has less.
    let (status, _) = s
        .call(
            "PUT",
            &format!("api/v1/apps/{id}/grants"),
            admin,
            Some(serde_json::json!({STOCK: ["stock:read"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, tok) = s.token(id, secret, STOCK).await;
    assert_eq!(tok["scope"], "stock:read");
    let (status, _) = s
        .call(
            "PUT",
            &format!("api/v1/apps/{id}/grants"),
            admin,
            Some(serde_json::json!({STOCK: ["stock:delete"]})),
        )
        .await;
    assert_eq!(status, 400, "an unknown scope is refused");
}

async fn blocked_and_unblocked(s: &Issuer, admin: &str, id: &str, secret: &str, old_token: &str) {
    let admin = Some(admin);
    // Block: token requests fail, introspection says inactive, the feed lists it.
    let (status, _) = s
        .call("POST", &format!("api/v1/apps/{id}/block"), admin, None)
        .await;
    assert_eq!(status, 200);
    let (status, err) = s.token(id, secret, STOCK).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert!(
        err["error_description"]
            .as_str()
            .unwrap()
            .contains("blocked")
    );
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", old_token),
            ("client_id", "admin"),
            ("client_secret", ADMIN_SECRET),
        ])
        .finish();
    let intro = client()
        .post(format!("{}oauth/introspect", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(intro, r#"{"active":false}"#);
    let (_, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(feed["blocked_clients"][0]["client_id"], id);
    assert!(feed["blocked_clients"][0]["blocked_at"].as_u64().unwrap() > 0);
    let (status, _) = s
        .call("POST", &format!("api/v1/apps/{id}/unblock"), admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.token(id, secret, STOCK).await.0, 200);
}

async fn the_secret_rotated(s: &Issuer, admin: &str, id: &str, secret: &str) {
    let admin = Some(admin);
    // Rotate with a grace period: both secrets work; without: only the new one.
    let (status, rotated) = s
        .call(
            "POST",
            &format!("api/v1/apps/{id}/secrets"),
            admin,
            Some(serde_json::json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(status, 201);
    let second = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.token(id, secret, STOCK).await.0,
        200,
        "old secret in its grace period"
    );
    assert_eq!(s.token(id, &second, STOCK).await.0, 200);
    let (_, rotated) = s
        .call("POST", &format!("api/v1/apps/{id}/secrets"), admin, None)
        .await;
    let third = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.token(id, &second, STOCK).await.0,
        401,
        "no grace: the old secret stops at once"
    );
    assert_eq!(s.token(id, &third, STOCK).await.0, 200);
}
