//! The issuer's state: it survives a restart, concurrent writes lose nothing,
//! revoked tokens stay revoked and rotated keys keep old tokens verifiable.

use super::*;

#[tokio::test]
async fn state_survives_a_restart_and_concurrent_writes_lose_nothing() {
    let s = start().await;
    let admin = s.admin_token("admin").await;
    let creates = (0..50).map(|i| {
        let (s, admin) = (&s, admin.clone());
        async move {
            let body = serde_json::json!({"client_id": format!("app-{i:02}"), "name": format!("app {i}"), "grants": {ORDERS: ["orders:read"]}});
            let (status, app) = s.call("POST", "api/v1/apps", Some(&admin), Some(body)).await;
            assert_eq!(status, 201, "{app}");
            app["client_secret"].as_str().unwrap().to_owned()
        }
    });
    let secrets = futures_util::future::join_all(creates).await;
    let (_, apps) = s.call("GET", "api/v1/apps", Some(&admin), None).await;
    assert_eq!(
        apps["items"].as_array().unwrap().len(),
        52,
        "50 created + 2 from config"
    );
    let (status, _) = s
        .call("POST", "api/v1/apps/app-07/block", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call("DELETE", "api/v1/apps/reader", Some(&admin), None)
        .await;
    assert_eq!(status, 204);

    // A new issuer on the same state: every change is still there.
    let s = s.restart(&api()).await;
    let admin = s.admin_token("admin").await;
    let (_, apps) = s.call("GET", "api/v1/apps", Some(&admin), None).await;
    assert_eq!(
        apps["items"].as_array().unwrap().len(),
        51,
        "reader stays deleted though the config names it"
    );
    assert_eq!(s.token("app-03", &secrets[3], ORDERS).await.0, 200);
    assert_eq!(
        s.token("app-07", &secrets[7], ORDERS).await.0,
        400,
        "still blocked"
    );
    assert_eq!(s.token("reader", ADMIN_SECRET, ORDERS).await.0, 401);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(s.dir.path().join("issuer.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for file in ["issuer.db", "issuer.db-wal"] {
        let bytes = std::fs::read(s.dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes
                .windows(secrets[3].len())
                .any(|w| w == secrets[3].as_bytes()),
            "secrets are not stored in the clear ({file})"
        );
    }
    s.sidecar.stop().await;
}

#[tokio::test]
async fn an_app_revokes_its_own_token() {
    let s = start().await;
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let token = tok["access_token"].as_str().unwrap();
    let (_, active) = form_as(&s, "oauth/introspect", "admin", ADMIN_SECRET, token).await;
    assert!(active.contains(r#""active":true"#), "{active}");
    // Only the app the token was issued to may revoke it.
    let (status, body) = form_as(&s, "oauth/revoke", "admin", ADMIN_SECRET, token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unauthorized_client"));
    assert_eq!(
        form_as(&s, "oauth/revoke", "reader", ADMIN_SECRET, token)
            .await
            .0,
        200
    );
    assert_eq!(
        form_as(&s, "oauth/introspect", "admin", ADMIN_SECRET, token)
            .await
            .1,
        r#"{"active":false}"#
    );
    // Garbage is answered 200, as RFC 7009 asks.
    assert_eq!(
        form_as(&s, "oauth/revoke", "reader", ADMIN_SECRET, "not-a-token")
            .await
            .0,
        200
    );
    let (_, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(
        feed["revoked_tokens"].as_array().unwrap().len(),
        1,
        "{feed}"
    );
    assert!(feed["revoked_tokens"][0]["exp"].as_u64().unwrap() > 0);
    s.sidecar.stop().await;
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable() {
    let s = start().await;
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let old = tok["access_token"].as_str().unwrap().to_owned();
    let reader = s.admin_token("reader").await;
    let (status, _) = s
        .call("POST", "api/v1/keys/rotate", Some(&reader), None)
        .await;
    assert_eq!(status, 403, "keys:write is needed");
    let admin = s.admin_token("admin").await;
    let (status, rotated) = s
        .call("POST", "api/v1/keys/rotate", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let new = tok["access_token"].as_str().unwrap().to_owned();
    assert_ne!(kid(&old), kid(&new), "the new key signs");
    assert_eq!(rotated["kid"], kid(&new));
    let (_, jwks) = s.call("GET", ".well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid(&old).as_str()) && kids.contains(&kid(&new).as_str()),
        "{kids:?}"
    );
    for t in [&old, &new] {
        let (_, active) = form_as(&s, "oauth/introspect", "admin", ADMIN_SECRET, t).await;
        assert!(active.contains(r#""active":true"#), "{active}");
    }
    // The rotation survives a restart.
    let s = s.restart(&api()).await;
    let (_, jwks) = s.call("GET", ".well-known/jwks.json", None, None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    assert_eq!(kid(tok["access_token"].as_str().unwrap()), kid(&new));
    s.sidecar.stop().await;
}
