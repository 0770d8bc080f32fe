//! Writes spread over the replicas: concurrent ones lose nothing, and a
//! replica killed in the middle of them leaves the database consistent.

use super::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The client ids the database holds in `apps` whose name starts with `prefix`.
fn apps_in_db(db: &Database, prefix: &str) -> BTreeSet<String> {
    db.psql(&format!(
        "SELECT client_id FROM apps WHERE name LIKE '{prefix}%' ORDER BY client_id"
    ))
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The database has no half-written app: no grant, secret or key row
/// without its app, and every app of `prefix` has one secret and its grant.
fn no_orphans(db: &Database, prefix: &str) {
    for table in ["app_grants", "app_secrets", "app_keys"] {
        let orphans = db.psql(&format!(
            "SELECT t.client_id FROM {table} t LEFT JOIN apps a USING (client_id) WHERE a.client_id IS NULL"
        ));
        assert_eq!(orphans, "", "rows of {table} without their app");
    }
    let incomplete = db.psql(&format!(
        "SELECT a.client_id FROM apps a WHERE a.name LIKE '{prefix}%' AND (\
         (SELECT count(*) FROM app_secrets s WHERE s.client_id = a.client_id) <> 1 OR \
         (SELECT count(*) FROM app_grants g WHERE g.client_id = a.client_id AND g.scopes = 'orders:read') <> 1)"
    ));
    assert_eq!(incomplete, "", "apps without their secret or grant");
}

/// The targets of the audit records of `action` with `outcome`.
fn audited(log: &[serde_json::Value], action: &str, outcome: &str) -> Vec<String> {
    log.iter()
        .filter(|r| r["action"] == action && r["outcome"] == outcome)
        .map(|r| r["target"].as_str().unwrap().to_owned())
        .collect()
}

/// 100 concurrent creates spread over three replicas: none lost, every
/// replica lists every app, the audit log (read a page at a time) has all
/// 100, and the database agrees. Then one client id created at once through
/// every replica is made exactly once.
#[tokio::test]
async fn concurrent_writes_over_three_replicas_lose_nothing() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "concurrent");
    let (replicas, _config) = db.replicas::<3>().await;
    let admin = admin_token(&replicas[0].url).await;

    let since = Instant::now();
    let created = futures_util::future::join_all((0..100).map(|i| {
        let base = replicas[i % 3].url.clone();
        let admin = admin.clone();
        async move {
            let name = format!("app-{i:03}");
            create_app(&base, &admin, &name, &["orders:read"]).await.0
        }
    }))
    .await;
    eprintln!(
        "100 concurrent creates over 3 replicas: {} ms",
        since.elapsed().as_millis()
    );
    let ids: BTreeSet<String> = created.into_iter().collect();
    assert_eq!(ids.len(), 100, "distinct client ids");

    let since = Instant::now();
    for (n, r) in replicas.iter().enumerate() {
        took(
            &format!("replica {n} lists all 100 apps"),
            since,
            async || {
                let listed: BTreeSet<String> =
                    listed_apps(&r.url, &admin).await.into_iter().collect();
                let missing: Vec<&String> = ids.difference(&listed).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} missing, e.g. {:?}",
                        missing.len(),
                        missing.first()
                    ))
                }
            },
        )
        .await;
    }
    assert_eq!(apps_in_db(&db, "app-"), ids);
    no_orphans(&db, "app-");

    // The audit log, through each replica, a page of 7 at a time.
    for r in &replicas {
        let log = audit_log(&r.url, &admin, 7).await;
        let targets = audited(&log, "app.create", "ok");
        assert_eq!(targets.len(), 100, "{log:?}");
        assert_eq!(targets.iter().cloned().collect::<BTreeSet<_>>(), ids);
        assert!(
            log.iter()
                .filter(|r| r["action"] == "app.create")
                .all(|r| r["caller"] == "admin" && r["time"].as_u64().is_some()),
            "{log:?}"
        );
        let seqs: Vec<u64> = log.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "in order, once each: {seqs:?}"
        );
    }

    // The same client id through all three at once: made once, refused twice.
    let answers = futures_util::future::join_all(replicas.iter().map(|r| {
        call(
            &r.url,
            "POST",
            "api/v1/apps",
            Some(&admin),
            Some(serde_json::json!({"name": "twice", "client_id": "one-id", "grants": {ORDERS: ["orders:read"]}})),
        )
    }))
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409], "{answers:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM apps WHERE client_id = 'one-id'"),
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM app_secrets WHERE client_id = 'one-id'"),
        1
    );
    let log = audit_log(&replicas[2].url, &admin, 1000).await;
    assert_eq!(audited(&log, "app.create", "ok").len(), 101);
    let conflicts = audited(&log, "app.create", "conflict");
    eprintln!("targets of the refused creates in the audit log: {conflicts:?}");
    assert_eq!(conflicts.len(), 2, "{log:?}");
}

/// What became of one write of the stream.
#[derive(Debug)]
struct Write {
    name: String,
    /// Through the replica killed.
    on_killed: bool,
    /// The client id when it answered 201; else the status or error.
    outcome: Result<String, String>,
}

/// `kill -9` of a replica during a stream of writes through both: every
/// write that got a 201 is in the database, no app is half-written, the
/// survivor lists exactly what the database holds and keeps writing, and a
/// replica started again sees it all too.
#[tokio::test]
async fn a_replica_killed_during_writes_leaves_the_database_consistent() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "killed");
    let ([a, mut b], config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;

    let done = AtomicUsize::new(0);
    let (url_a, url_b) = (a.url.clone(), b.url.clone());
    let worker = |w: usize| {
        let (base, on_killed) = if w.is_multiple_of(2) {
            (url_a.clone(), false)
        } else {
            (url_b.clone(), true)
        };
        let (admin, done) = (admin.clone(), &done);
        async move {
            let mut writes = Vec::new();
            for j in 0..15 {
                let name = format!("w{w}-{j:02}");
                let body = serde_json::json!({"name": name, "grants": {ORDERS: ["orders:read"]}});
                let outcome =
                    match try_call(&base, "POST", "api/v1/apps", Some(&admin), Some(body)).await {
                        Ok((201, v)) => Ok(v["client_id"].as_str().unwrap().to_owned()),
                        Ok((status, v)) => Err(format!("{status}: {v}")),
                        Err(e) => Err(e),
                    };
                done.fetch_add(1, Ordering::SeqCst);
                writes.push(Write {
                    name,
                    on_killed,
                    outcome,
                });
            }
            writes
        }
    };
    let killer = async {
        support::until(support::LONG, "20 writes", async || {
            done.load(Ordering::SeqCst) >= 20
        })
        .await;
        b.kill().await;
        eprintln!(
            "killed replica B after {} writes",
            done.load(Ordering::SeqCst)
        );
    };
    let (writes, ()) = tokio::join!(futures_util::future::join_all((0..6).map(worker)), killer);
    let writes: Vec<Write> = writes.into_iter().flatten().collect();

    let ok: BTreeSet<String> = writes
        .iter()
        .filter_map(|w| w.outcome.as_ref().ok().cloned())
        .collect();
    let failed: Vec<&Write> = writes.iter().filter(|w| w.outcome.is_err()).collect();
    eprintln!(
        "{} writes answered 201, {} did not (all through the killed replica)",
        ok.len(),
        failed.len()
    );
    assert!(failed.iter().all(|w| w.on_killed), "{failed:?}");
    assert!(!failed.is_empty(), "B was killed before the stream ended");

    // Every 201 is there; nothing is half-written; each app is audited once.
    let in_db = apps_in_db(&db, "w");
    let lost: Vec<&String> = ok.difference(&in_db).collect();
    assert!(
        lost.is_empty(),
        "writes answered 201 but not in the database: {lost:?}"
    );
    no_orphans(&db, "w");
    let names_in_db: BTreeSet<String> = db
        .psql("SELECT name FROM apps WHERE name LIKE 'w%'")
        .lines()
        .map(str::to_owned)
        .collect();
    for w in failed.iter().filter(|w| names_in_db.contains(&w.name)) {
        eprintln!(
            "committed although its answer was lost: {} ({:?})",
            w.name, w.outcome
        );
    }
    let log = audit_log(&a.url, &admin, 1000).await;
    let mut audited_ok = audited(&log, "app.create", "ok");
    audited_ok.sort();
    assert_eq!(
        audited_ok,
        in_db.iter().cloned().collect::<Vec<_>>(),
        "one app.create record for each app made, none for the others"
    );

    // The survivor lists exactly what the database holds, and keeps writing.
    let since = Instant::now();
    took("A lists every app of the database", since, async || {
        let listed: BTreeSet<String> = listed_apps(&a.url, &admin)
            .await
            .into_iter()
            .filter(|id| !["admin", "billing"].contains(&id.as_str()))
            .collect();
        is(listed, in_db.clone())
    })
    .await;
    let (after, _) = create_app(&a.url, &admin, "w-after", &["orders:read"]).await;

    // A replica started again (after the crash) sees everything.
    let b2 = db.replica(config.path()).await;
    let listed: BTreeSet<String> = listed_apps(&b2.url, &admin).await.into_iter().collect();
    assert!(listed.is_superset(&in_db), "B restarted lists every app");
    assert!(listed.contains(&after));
    let (status, _) = call(
        &b2.url,
        "POST",
        "api/v1/apps",
        Some(&admin),
        Some(serde_json::json!({"name": "w-b2", "grants": {ORDERS: ["orders:read"]}})),
    )
    .await;
    assert_eq!(status, 201, "B restarted writes: {}", b2.log());
    no_orphans(&db, "w");
}
