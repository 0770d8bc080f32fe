//! Any replica's tokens are every replica's: one signing key in the store.

use super::*;

/// A token from replica A verifies against replica B's JWKS (the same key
/// set), and B's introspection says it is active (and A's of B's token);
/// a management token from A is accepted by B.
#[tokio::test]
async fn a_token_from_one_replica_verifies_on_another() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "tokens");
    let ([a, b], _config) = db.replicas::<2>().await;

    let (jwks_a, jwks_b) = (jwks(&a.url).await, jwks(&b.url).await);
    assert_eq!(jwks_a, jwks_b, "the same key set on both replicas");
    assert_eq!(kids(&jwks_b).len(), 1, "{jwks_b}");

    // An app of the config: a token from A verifies against B's JWKS.
    let from_a = access_token(&a.url, "billing", BILLING_SECRET, ORDERS).await;
    let claims = verify(&jwks_b, &from_a, ORDERS);
    assert_eq!(claims["client_id"], "billing");
    assert_eq!(claims["scope"], "orders:read");
    let intro = introspect(&b.url, &from_a).await;
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["client_id"], "billing");

    // An app made at runtime through A: B issues it tokens (once it knows
    // it), A's introspection says they are active.
    let admin = admin_token(&a.url).await;
    let (id, secret) = create_app(&a.url, &admin, "shipping", &["orders:write"]).await;
    let since = std::time::Instant::now();
    propagated(
        "an app created through A is known to B",
        since,
        async || is_blocked(&b.url, &admin, &id).await.is_some(),
    )
    .await;
    let from_b = access_token(&b.url, &id, &secret, ORDERS).await;
    let claims = verify(&jwks_a, &from_b, ORDERS);
    assert_eq!(claims["client_id"], id.as_str());
    let intro = introspect(&a.url, &from_b).await;
    assert_eq!(intro["active"], true, "{intro}");

    // A's management token works on B.
    let (status, apps) = call(&b.url, "GET", "api/v1/apps?limit=10", Some(&admin), None).await;
    assert_eq!(status, 200, "{apps}");
}
