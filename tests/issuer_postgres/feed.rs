//! Following the feed when notifications are not enough: a replica whose
//! connections were cut while it could not run, and one that finds the
//! feed rows it needed pruned, catch up with what they missed.

use super::*;
use std::time::Instant;

/// B frozen, its connections (all of this database's issuer connections)
/// cut by the server, a change made through A meanwhile: thawed, B
/// reconnects and catches up within a second.
#[tokio::test]
async fn a_replica_cut_off_from_the_database_catches_up() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "cutoff");
    let ([a, b], _config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (id, secret) = create_app(&a.url, &admin, "cut", &["orders:read"]).await;
    support::until(support::LONG, "B to know the app", async || {
        is_blocked(&b.url, &admin, &id).await.is_some()
    })
    .await;

    b.freeze(true);
    let cut = db.psql(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = 'cutoff' AND application_name = 'm2m-sidecar issuer') t",
    );
    eprintln!("cut {cut} issuer connections");
    // A's own connection was cut too: it reconnects on the next write (the
    // first may find the connection dying and answer 503).
    let mut refused = Vec::new();
    support::until(support::LONG, "a block through A", async || {
        let (status, v) = call(
            &a.url,
            "POST",
            &format!("api/v1/apps/{id}/block"),
            Some(&admin),
            None,
        )
        .await;
        if status != 200 {
            refused.push(format!("{status} {v}"));
        }
        is(status, 200).map_err(|e| format!("{e}: {v}"))
    })
    .await;
    eprintln!("writes through A refused before its connection was made again: {refused:?}");
    b.freeze(false);
    let thawed = Instant::now();
    // B reconnects after a pause (200 ms at first), twice (its listening
    // connection and its writer: about 0.1 s each for SCRAM in a debug
    // build, more on a busy machine), then catches up.
    within(
        Duration::from_secs(5),
        STEP,
        "a block made while B was cut off reaches B once it runs again",
        thawed,
        async || is(token(&b.url, &id, &secret, ORDERS).await.0, 400),
    )
    .await;
    let (_, ready) = call(&b.url, "GET", "readyz", None, None).await;
    assert_eq!(ready["status"], "ok", "{ready}");
    let (status, v) = call(
        &b.url,
        "POST",
        &format!("api/v1/apps/{id}/unblock"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "B writes again: {v}");
    let since = Instant::now();
    propagated("then an unblock through B reaches A", since, async || {
        is(is_blocked(&a.url, &admin, &id).await, Some(false))
    })
    .await;
}

/// B frozen while A makes changes, and the feed rows B had not read pruned
/// (as after a day away): thawed, B reloads the whole registry, sees the
/// changes, and keeps working (writes too).
#[tokio::test]
async fn a_replica_behind_a_pruned_feed_reloads_everything() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "pruned");
    let ([a, b], _config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (id, secret) = create_app(&a.url, &admin, "first", &["orders:read"]).await;
    support::until(support::LONG, "B to know the app", async || {
        is_blocked(&b.url, &admin, &id).await.is_some()
    })
    .await;

    b.freeze(true);
    let (missed, missed_secret) = create_app(&a.url, &admin, "missed", &["orders:read"]).await;
    let pruned = db.count("SELECT max(seq) FROM changes");
    let (status, v) = call(
        &a.url,
        "POST",
        &format!("api/v1/apps/{id}/block"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // What the periodic pruning does: forget the rows up to `pruned`.
    db.psql(&format!(
        "DELETE FROM changes WHERE seq <= {pruned}; \
         INSERT INTO meta (key, value) VALUES ('changes_pruned_through', '{pruned}') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ));
    b.freeze(false);
    let thawed = Instant::now();
    propagated(
        "B, behind the pruned feed, knows the app it missed",
        thawed,
        async || is_blocked(&b.url, &admin, &missed).await.is_some(),
    )
    .await;
    assert_eq!(token(&b.url, &missed, &missed_secret, ORDERS).await.0, 200);
    propagated(
        "B, behind the pruned feed, knows the block it missed",
        thawed,
        async || is(token(&b.url, &id, &secret, ORDERS).await.0, 400),
    )
    .await;
    // B is not stuck: it writes, and A sees it.
    let (status, v) = tokio::time::timeout(
        support::LONG,
        call(
            &b.url,
            "POST",
            &format!("api/v1/apps/{id}/unblock"),
            Some(&admin),
            None,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("a write through B hangs: {}", b.log()));
    assert_eq!(status, 200, "{v}");
    let since = Instant::now();
    propagated("then an unblock through B reaches A", since, async || {
        is(is_blocked(&a.url, &admin, &id).await, Some(false))
    })
    .await;
    let (status, v) = call(
        &a.url,
        "GET",
        &format!("api/v1/apps/{missed}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
}
