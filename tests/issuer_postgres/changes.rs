//! A change through one replica takes effect on the others within a second:
//! a new app, a revocation, a grant, a secret rotation, a block, an unblock,
//! a delete, a new API, a key rotation.

use super::*;
use std::time::Instant;

/// `POST {base}oauth/revoke` of `token` as its owner; the status.
async fn revoke(base: &str, client_id: &str, secret: &str, token: &str) -> u16 {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", token),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .finish();
    client()
        .post(format!("{base}oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The revocation feed of a replica (public).
async fn feed(base: &str) -> serde_json::Value {
    let (status, v) = call(base, "GET", "api/v1/revocations", None, None).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn changes_through_one_replica_reach_the_other_within_a_second() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "changes");
    let ([a, b], _config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (a, b) = (a.url.as_str(), b.url.as_str());

    // A new app.
    let since = Instant::now();
    let (id, secret) = create_app(a, &admin, "shop", &["orders:read", "orders:write"]).await;
    propagated("create: B knows the new app", since, async || {
        is_blocked(b, &admin, &id).await.is_some()
    })
    .await;
    let old_token = access_token(b, &id, &secret, ORDERS).await;

    // A revocation through A: B's introspection says inactive, its feed lists it.
    let revoked = access_token(a, &id, &secret, ORDERS).await;
    let jti = support::jwt::payload(&revoked)["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect(b, &revoked).await["active"], true);
    assert_eq!(revoke(a, &id, &secret, &revoked).await, 200);
    let since = Instant::now();
    propagated(
        "revoke: B's introspection says inactive",
        since,
        async || {
            is(
                introspect(b, &revoked).await["active"].clone(),
                false.into(),
            )
        },
    )
    .await;
    propagated("revoke: B's feed lists the jti", since, async || {
        let f = feed(b).await;
        f["revoked_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["jti"] == jti.as_str())
    })
    .await;
    assert_eq!(
        introspect(b, &old_token).await["active"],
        true,
        "only that token"
    );

    // A grant limited through A.
    let (status, v) = call(
        a,
        "PUT",
        &format!("api/v1/apps/{id}/grants"),
        Some(&admin),
        Some(serde_json::json!({ORDERS: ["orders:read"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let since = Instant::now();
    propagated(
        "grant: B's next token has the new scope",
        since,
        async || {
            let (status, v) = token(b, &id, &secret, ORDERS).await;
            is((status, v["scope"].clone()), (200, "orders:read".into()))
        },
    )
    .await;

    // A secret rotated through A (no grace).
    let (status, v) = call(
        a,
        "POST",
        &format!("api/v1/apps/{id}/secrets"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let new_secret = v["client_secret"].as_str().unwrap().to_owned();
    let since = Instant::now();
    within(
        PROPAGATION,
        SLOW_STEP,
        "secret rotation: B accepts the new secret",
        since,
        async || is(token(b, &id, &new_secret, ORDERS).await.0, 200),
    )
    .await;
    assert_eq!(
        token(b, &id, &secret, ORDERS).await.0,
        401,
        "B refuses the old secret"
    );
    let secret = new_secret;

    // A block through A: B refuses tokens, lists it, says its tokens are inactive.
    let (status, v) = call(
        a,
        "POST",
        &format!("api/v1/apps/{id}/block"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let since = Instant::now();
    propagated(
        "block: B refuses the app's token requests",
        since,
        async || {
            let (status, v) = token(b, &id, &secret, ORDERS).await;
            is(
                (status, v["error"].clone()),
                (400, "unauthorized_client".into()),
            )
            .map(|()| v["error_description"].as_str().unwrap().to_owned())
        },
    )
    .await
    .contains("blocked")
    .then_some(())
    .expect("the refusal says the app is blocked");
    propagated("block: B's feed lists the app", since, async || {
        let f = feed(b).await;
        f["blocked_clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id.as_str() && c["blocked_at"].as_u64().is_some())
    })
    .await;
    propagated(
        "block: B's introspection says inactive",
        since,
        async || {
            is(
                introspect(b, &old_token).await,
                serde_json::json!({"active": false}),
            )
        },
    )
    .await;

    // Unblocked through A: B issues tokens again; the old ones stay revoked.
    let (status, v) = call(
        a,
        "POST",
        &format!("api/v1/apps/{id}/unblock"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let since = Instant::now();
    // (B's token endpoint may then wait for the next second: a token's `iat`
    // must be after the block's "not before".)
    propagated("unblock: B has the app unblocked", since, async || {
        is(is_blocked(b, &admin, &id).await, Some(false))
    })
    .await;
    assert_eq!(token(b, &id, &secret, ORDERS).await.0, 200);
    assert_eq!(introspect(b, &old_token).await["active"], false);

    // Deleted through A: B refuses it, no longer lists it, feeds its "not before".
    let (status, v) = call(
        a,
        "DELETE",
        &format!("api/v1/apps/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{v}");
    let since = Instant::now();
    propagated("delete: B answers 404 for the app", since, async || {
        is(is_blocked(b, &admin, &id).await, None)
    })
    .await;
    assert_eq!(
        token(b, &id, &secret, ORDERS).await.0,
        401,
        "B refuses the app"
    );
    let f = feed(b).await;
    assert!(
        f["client_not_before"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id.as_str()),
        "{f}"
    );

    // A new API through A: B's discovery names its scopes, B grants them.
    let stock = "https://stock.example.com";
    let (status, v) = call(
        a,
        "POST",
        "api/v1/apis",
        Some(&admin),
        Some(
            serde_json::json!({"name": "Stock API", "identifier": stock, "scopes": ["stock:read"]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let since = Instant::now();
    propagated(
        "new API: B's discovery names its scope",
        since,
        async || {
            let (_, d) = call(
                b,
                "GET",
                ".well-known/oauth-authorization-server",
                None,
                None,
            )
            .await;
            d["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&"stock:read".into())
        },
    )
    .await;
    let (status, v) = call(
        b,
        "POST",
        "api/v1/apps",
        Some(&admin),
        Some(serde_json::json!({"name": "picker", "grants": {stock: ["stock:read"]}})),
    )
    .await;
    assert_eq!(status, 201, "B grants the API A made: {v}");
}

/// A key rotation through A appears in B's JWKS within a second, and B then
/// signs with the new key; tokens of the old key still verify everywhere.
#[tokio::test]
async fn a_key_rotation_through_one_replica_reaches_the_other_within_a_second() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "rotation");
    let ([a, b], _config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (a, b) = (a.url.as_str(), b.url.as_str());
    let old_token = access_token(b, "billing", BILLING_SECRET, ORDERS).await;
    let old_kid = kid_of(&old_token);

    for round in 1..=2 {
        let (status, v) = call(a, "POST", "api/v1/keys/rotate", Some(&admin), None).await;
        assert_eq!(status, 200, "{v}");
        let kid = v["kid"].as_str().unwrap().to_owned();
        assert_ne!(kid, old_kid);
        let since = Instant::now();
        propagated(
            &format!("key rotation {round}: the new key in B's JWKS"),
            since,
            async || kids(&jwks(b).await).contains(&kid),
        )
        .await;
        propagated(
            &format!("key rotation {round}: B signs with the new key"),
            since,
            async || {
                is(
                    kid_of(&access_token(b, "billing", BILLING_SECRET, ORDERS).await),
                    kid.clone(),
                )
            },
        )
        .await;
        let set = jwks(b).await;
        assert_eq!(kids(&set)[0], kid, "the active key first: {set}");
        assert!(
            kids(&set).contains(&old_kid),
            "the old key still verifies: {set}"
        );
        assert_eq!(jwks(a).await, set, "both replicas serve the same JWKS");
        verify(&set, &old_token, ORDERS);
        assert_eq!(introspect(b, &old_token).await["active"], true);
        assert_eq!(introspect(a, &old_token).await["active"], true);
        // The new token of A verifies on B.
        let new_a = access_token(a, "billing", BILLING_SECRET, ORDERS).await;
        assert_eq!(kid_of(&new_a), kid);
        assert_eq!(introspect(b, &new_a).await["active"], true);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL"),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM signing_keys"), 3);
}
