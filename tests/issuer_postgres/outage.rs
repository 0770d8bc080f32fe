//! PostgreSQL stopped: the replicas keep issuing tokens from memory (and
//! keep refusing the apps they know blocked), refuse management writes with
//! a 503 and a JSON error, say so on `/readyz`; when it is back, they
//! recover and follow each other again.

use super::*;
use std::time::Instant;

/// `/readyz` of a replica: status and JSON.
async fn readyz(base: &str) -> (u16, serde_json::Value) {
    call(base, "GET", "readyz", None, None).await
}

#[tokio::test]
async fn a_database_outage_keeps_tokens_flowing_and_both_replicas_recover() {
    // Its own cluster: this test stops it.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let cluster = Arc::new(cluster);
    let db = Database::new(cluster.clone(), "outage");
    let ([a, b], _config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (known, known_secret) = create_app(&a.url, &admin, "known", &["orders:read"]).await;
    let (blocked, blocked_secret) = create_app(&a.url, &admin, "blocked", &["orders:read"]).await;
    let (status, v) = call(
        &a.url,
        "POST",
        &format!("api/v1/apps/{blocked}/block"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    for r in [&a, &b] {
        support::until(
            support::LONG,
            "both replicas to know both apps",
            async || {
                token(&r.url, &known, &known_secret, ORDERS).await.0 == 200
                    && token(&r.url, &blocked, &blocked_secret, ORDERS).await.0 == 400
            },
        )
        .await;
        let (status, ready) = readyz(&r.url).await;
        assert_eq!((status, &ready["status"]), (200, &"ok".into()), "{ready}");
    }
    let old_token = access_token(&b.url, &known, &known_secret, ORDERS).await;

    cluster.stop();
    let stopped = Instant::now();

    for (name, r) in [("A", &a), ("B", &b)] {
        // /readyz says what is wrong.
        let (ready, _) = took(
            &format!("{name}'s /readyz to say degraded"),
            stopped,
            async || {
                let (status, v) = readyz(&r.url).await;
                is(v["status"].clone(), "degraded".into()).map(|()| (status, v))
            },
        )
        .await;
        eprintln!(
            "{name} /readyz while PostgreSQL is down: {} {}",
            ready.0, ready.1
        );
        let reason = ready.1["reason"].as_str().unwrap();
        assert!(!reason.is_empty(), "{}", ready.1);
        assert!(!reason.contains(db.cluster.password()), "{reason}");
        assert_eq!(
            support::http::get(&format!("{}healthz", r.url)).await.0,
            200
        );

        // Tokens from memory: issued to the known app, refused to the blocked one.
        let (status, v) = token(&r.url, &known, &known_secret, ORDERS).await;
        assert_eq!(status, 200, "{name}: {v}");
        verify(
            &jwks(&r.url).await,
            v["access_token"].as_str().unwrap(),
            ORDERS,
        );
        let (status, v) = token(&r.url, &blocked, &blocked_secret, ORDERS).await;
        assert_eq!(
            (status, &v["error"]),
            (400, &"unauthorized_client".into()),
            "{name}: {v}"
        );
        assert_eq!(token(&r.url, "admin", ADMIN_SECRET, &mgmt()).await.0, 200);
        assert_eq!(introspect(&r.url, &old_token).await["active"], true);
        let (status, v) = call(&r.url, "GET", "api/v1/revocations", None, None).await;
        assert_eq!(status, 200, "{v}");
        let (status, v) = call(
            &r.url,
            "GET",
            &format!("api/v1/apps/{known}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "reads from memory: {v}");

        // Management writes: 503 with a JSON error saying nothing changed.
        let (status, v) = call(
            &r.url,
            "POST",
            "api/v1/apps",
            Some(&admin),
            Some(serde_json::json!({"name": "during", "grants": {ORDERS: ["orders:read"]}})),
        )
        .await;
        assert_eq!(status, 503, "{name}: {v}");
        assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        let said = v["error_description"].as_str().unwrap();
        assert!(said.contains("unavailable"), "{said}");
        assert!(!said.contains(db.cluster.password()), "{said}");
        let (status, v) = call(
            &r.url,
            "POST",
            &format!("api/v1/apps/{known}/block"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 503, "{name}: {v}");
        let (status, v) = call(&r.url, "POST", "api/v1/keys/rotate", Some(&admin), None).await;
        assert_eq!(status, 503, "{name}: {v}");
        let (status, v) = call(&r.url, "GET", "api/v1/audit", Some(&admin), None).await;
        assert_eq!(status, 503, "{name}: {v}");
        // Nothing changed in memory either.
        assert_eq!(token(&r.url, &known, &known_secret, ORDERS).await.0, 200);
    }

    cluster.start_again();
    let started = Instant::now();
    for (name, r) in [("A", &a), ("B", &b)] {
        took(
            &format!("{name}'s /readyz to say ok again"),
            started,
            async || {
                let (_, v) = readyz(&r.url).await;
                is(v["status"].clone(), "ok".into())
            },
        )
        .await;
    }
    // Writes work again, through either; each reaches the other within a second.
    for (name, from, to) in [("A", &a, &b), ("B", &b, &a)] {
        let (status, v) = call(
            &from.url,
            "POST",
            &format!("api/v1/apps/{known}/block"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "a write through {name} after the outage: {v}");
        let since = Instant::now();
        propagated(
            &format!("after the outage, a block through {name} reaches the other"),
            since,
            async || is(token(&to.url, &known, &known_secret, ORDERS).await.0, 400),
        )
        .await;
        let (status, v) = call(
            &from.url,
            "POST",
            &format!("api/v1/apps/{known}/unblock"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let since = Instant::now();
        propagated(
            &format!("after the outage, an unblock through {name} reaches the other"),
            since,
            async || is(is_blocked(&to.url, &admin, &known).await, Some(false)),
        )
        .await;
        assert_eq!(token(&to.url, &known, &known_secret, ORDERS).await.0, 200);
    }
    // The refused writes did not happen; the audit log says they were refused
    // where it could (the store was down: it could not).
    assert_eq!(
        db.count("SELECT count(*) FROM apps WHERE name = 'during'"),
        0
    );
    let (status, v) = call(&a.url, "GET", "api/v1/audit?limit=1000", Some(&admin), None).await;
    assert_eq!(status, 200, "{v}");
}
