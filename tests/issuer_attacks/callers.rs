//! §2: the management API and introspection check their caller: a dead
//! (blocked, revoked, deleted) management token is refused everywhere, and
//! introspection needs `tokens:introspect`.

use super::*;

/// Calls an attacker holding a dead management token tries; each must be 401.
fn attacker_calls(me: &str) -> Vec<(String, String, Option<String>)> {
    let me_grants = json(serde_json::json!({"http://x/": []}));
    vec![
        ("GET".into(), "api/v1/apps".into(), None),
        ("GET".into(), format!("api/v1/apps/{me}"), None),
        ("POST".into(), format!("api/v1/apps/{me}/unblock"), None),
        (
            "POST".into(),
            format!("api/v1/apps/{me}/secrets"),
            Some("{}".into()),
        ),
        (
            "POST".into(),
            "api/v1/apps".into(),
            Some(json(
                serde_json::json!({"name": "evil", "client_id": "evil"}),
            )),
        ),
        (
            "PUT".into(),
            format!("api/v1/apps/{me}/grants"),
            Some(me_grants),
        ),
        ("DELETE".into(), "api/v1/apps/billing".into(), None),
        ("POST".into(), "api/v1/apps/billing/block".into(), None),
    ]
}

async fn all_refused(s: &Iss, token: &str, me: &str, why: &str) {
    for (method, path, body) in attacker_calls(me) {
        let (status, headers, v) = s.call(&method, &path, Some(token), body.as_deref()).await;
        assert_eq!(status, 401, "{why}: {method} {path}: {v}");
        assert_eq!(v["error"], "invalid_token", "{why}: {method} {path}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{why}"
        );
    }
    // Nothing the attacker tried happened.
    assert!(s.app("evil").await.is_null(), "{why}: no app created");
    assert_eq!(s.app("billing").await["blocked"], false, "{why}");
}

#[tokio::test]
async fn management_refuses_blocked_revoked_and_deleted_callers() {
    let s = Iss::start(api()).await;
    let root = s.mgmt_token("root").await;

    // A working operator token first: the calls below can succeed.
    let secret = create_operator(&s, "op-blocked").await;
    let token = token_of(&s, "op-blocked", &secret).await;
    let (status, _, _) = s.call("GET", "api/v1/apps", Some(&token), None).await;
    assert_eq!(status, 200, "the token works before the attack");

    // Blocked: refused, and cannot unblock itself.
    let (status, _, _) = s
        .call("POST", "api/v1/apps/op-blocked/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    all_refused(&s, &token, "op-blocked", "blocked").await;
    assert_eq!(s.app("op-blocked").await["blocked"], true, "still blocked");
    // Unblocked: the token from before the block stays dead; a new one works.
    let (status, _, _) = s
        .call("POST", "api/v1/apps/op-blocked/unblock", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    all_refused(&s, &token, "op-blocked", "issued before the block").await;
    let fresh = token_of(&s, "op-blocked", &secret).await;
    assert_eq!(
        s.call("GET", "api/v1/apps", Some(&fresh), None).await.0,
        200
    );
    assert!(!s.active(&token).await && s.active(&fresh).await);

    // Revoked by its own app through /oauth/revoke.
    let secret = create_operator(&s, "op-revoked").await;
    let token = token_of(&s, "op-revoked", &secret).await;
    assert_eq!(s.revoke("op-revoked", &secret, &token).await.0, 200);
    all_refused(&s, &token, "op-revoked", "revoked").await;

    // Deleted, then created again under the same id at once (same second).
    let secret = create_operator(&s, "op-deleted").await;
    let token = token_of(&s, "op-deleted", &secret).await;
    let (status, _, _) = s
        .call("DELETE", "api/v1/apps/op-deleted", Some(&root), None)
        .await;
    assert_eq!(status, 204);
    all_refused(&s, &token, "op-deleted", "deleted").await;
    let again = create_operator(&s, "op-deleted").await;
    all_refused(&s, &token, "op-deleted", "deleted, same id created again").await;
    assert!(!s.active(&token).await, "introspection agrees");
    let deleted_token = token;
    let new_token = token_of(&s, "op-deleted", &again).await;
    assert_eq!(
        s.call("GET", "api/v1/apps", Some(&new_token), None).await.0,
        200,
        "the new app's own token works"
    );

    // A grant taken away takes effect at once, whatever the token says.
    let secret = create_operator(&s, "op-demoted").await;
    let token = token_of(&s, "op-demoted", &secret).await;
    let (status, _, _) = s
        .call(
            "PUT",
            "api/v1/apps/op-demoted/grants",
            Some(&root),
            Some(&json(serde_json::json!({ORDERS: ["orders:read"]}))),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, v) = s.call("GET", "api/v1/apps", Some(&token), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // And across a restart: the deleted app's old token stays dead.
    let s = s.restart().await;
    all_refused(&s, &deleted_token, "op-deleted", "deleted, after restart").await;
    let (status, _, _) = s.call("GET", "api/v1/apps", Some(&new_token), None).await;
    assert_eq!(status, 200, "the new app's token survives the restart");
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_apps_tokens_stay_dead_across_restarts_and_recreation() {
    let s = Iss::start(api()).await;
    // Many rounds, so a delete and a re-create often share a second.
    let mut dead = Vec::new();
    for round in 0..6 {
        let secret = create_operator(&s, "phoenix").await;
        let token = token_of(&s, "phoenix", &secret).await;
        let orders = s.orders_token("phoenix", &secret).await;
        assert_eq!(
            s.call("GET", "api/v1/apps", Some(&token), None).await.0,
            200
        );
        let root = s.mgmt_token("root").await;
        let (status, _, _) = s
            .call("DELETE", "api/v1/apps/phoenix", Some(&root), None)
            .await;
        assert_eq!(status, 204, "round {round}");
        dead.push(token);
        dead.push(orders);
    }
    let secret = create_operator(&s, "phoenix").await;
    let live = token_of(&s, "phoenix", &secret).await;
    let s = s.restart().await;
    for (i, t) in dead.iter().enumerate() {
        assert!(!s.active(t).await, "token {i} of a deleted app");
        if i % 2 == 0 {
            assert_eq!(s.call("GET", "api/v1/apps", Some(t), None).await.0, 401);
        }
    }
    assert!(s.active(&live).await);
    assert_eq!(s.call("GET", "api/v1/apps", Some(&live), None).await.0, 200);
    // The feed carries the not-before, so inbound sidecars refuse them too.
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    let nb = feed["client_not_before"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["client_id"] == "phoenix")
        .expect("phoenix in client_not_before");
    assert!(nb["not_before"].as_u64().unwrap() > 0);
    s.stop().await;
}

#[tokio::test]
async fn introspection_needs_the_tokens_introspect_scope() {
    let stale = App::new("stale", SECRET)
        .named("blocked introspector")
        .blocked(true)
        .mgmt(&["tokens:introspect"]);
    let s = Iss::start(api().app(stale)).await;
    let admin_token = s.mgmt_token("root").await;
    let orders = s.orders_token("billing", SECRET).await;
    let refused: [(&str, &str, u16); 7] = [
        ("billing", SECRET, 403),
        ("ops", SECRET, 403),
        ("writer", SECRET, 403),
        ("stale", SECRET, 403),
        ("gateway", WRONG, 401),
        ("nobody", SECRET, 401),
        ("", "", 401),
    ];
    for t in [&admin_token, &orders] {
        for (who, secret, want) in refused {
            let (status, _, v) = s.introspect(who, secret, t).await;
            assert_eq!(status, want, "{who}: {v}");
            let text = v.to_string();
            for leaked in ["active", "orders:read", "apps:write", "client_id\":\"root"] {
                assert!(!text.contains(leaked), "{who}: {text}");
            }
        }
        for who in ["gateway", "root"] {
            let (status, _, v) = s.introspect(who, SECRET, t).await;
            assert_eq!(
                (status, &v["active"]),
                (200, &serde_json::Value::Bool(true)),
                "{who}: {v}"
            );
        }
    }
    // Granted at runtime by an app that holds the scope itself: it works at once.
    let (status, _, _) = s
        .call(
            "PUT",
            "api/v1/apps/billing/grants",
            Some(&admin_token),
            Some(&json(serde_json::json!({s.mgmt(): ["tokens:introspect"]}))),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.introspect("billing", SECRET, &orders).await.0, 200);
    s.stop().await;
}
