//! Starting on PostgreSQL: replicas starting together on an empty database,
//! `--migrate-only`, and a store key that is not the database's.

use super::*;
use support::process::sidecar;

/// Two replicas started together on an empty database make exactly one
/// active signing key (and one secrets key), and serve the same JWKS. A few
/// rounds, each on a fresh database, to give the race its chances.
#[tokio::test]
async fn two_replicas_started_together_make_one_signing_key() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    for round in 1..=3 {
        let db = Database::new(cluster.clone(), &format!("together{round}"));
        let ([a, b], _config) = db.replicas::<2>().await;
        assert_eq!(
            db.count("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL"),
            1
        );
        assert_eq!(db.count("SELECT count(*) FROM signing_keys"), 1);
        assert_eq!(db.count("SELECT count(*) FROM server_keys"), 1);
        assert_eq!(db.psql("SELECT version FROM schema_migrations"), "1");
        let set = jwks(&a.url).await;
        assert_eq!(set, jwks(&b.url).await, "round {round}");
        assert_eq!(kids(&set).len(), 1, "{set}");
        let from_b = access_token(&b.url, "billing", BILLING_SECRET, ORDERS).await;
        verify(&set, &from_b, ORDERS);
        // And the secrets key is the same: a secret made through A works on B.
        let admin = admin_token(&b.url).await;
        let (id, secret) = create_app(&a.url, &admin, "probe", &["orders:read"]).await;
        support::until(support::LONG, "B to know the app", async || {
            is_blocked(&b.url, &admin, &id).await.is_some()
        })
        .await;
        assert_eq!(token(&b.url, &id, &secret, ORDERS).await.0, 200);
    }
}

/// `m2m-sidecar issuer --config FILE --migrate-only`, running; its stderr collected.
fn migrate_only(db: &Database, config: &Path) -> Running {
    let mut cmd = sidecar();
    cmd.args([
        "issuer",
        "--log-format",
        "json",
        "--migrate-only",
        "--config",
    ])
    .arg(config)
    .envs(db.env());
    Running::spawn(cmd)
}

/// `--migrate-only` on a fresh database exits 0 and leaves the schema at
/// version 1 (and no key: it only migrates); two at once both succeed (the
/// advisory lock), and again on a migrated database is a no-op.
#[tokio::test]
async fn migrate_only_applies_the_schema_once_even_twice_at_once() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "migrate");
    let config = db.config(&api());
    let mut runs = [
        migrate_only(&db, config.path()),
        migrate_only(&db, config.path()),
    ];
    for run in &mut runs {
        let status = run.exit(support::LONG).await;
        let log = run.lines.lock().unwrap().join("\n");
        assert!(status.success(), "{status}: {log}");
        assert!(!log.contains(db.cluster.password()), "{log}");
        assert!(!log.contains(&db.store_key), "{log}");
    }
    let applied: Vec<usize> = runs
        .iter()
        .map(|r| {
            r.logs()
                .iter()
                .filter(|v| v["message"] == "store: applied a schema migration")
                .count()
        })
        .collect();
    assert_eq!(
        applied.iter().sum::<usize>(),
        1,
        "applied once: {applied:?}"
    );
    assert_eq!(db.psql("SELECT version FROM schema_migrations"), "1");
    for table in [
        "apps",
        "app_grants",
        "app_secrets",
        "signing_keys",
        "audit_log",
        "changes",
    ] {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }

    let mut again = migrate_only(&db, config.path());
    assert!(
        again.exit(support::LONG).await.success(),
        "{:?}",
        again.lines
    );
    assert_eq!(db.psql("SELECT version FROM schema_migrations"), "1");

    // A replica starts on the migrated database.
    let r = db.replica(config.path()).await;
    access_token(&r.url, "billing", BILLING_SECRET, ORDERS).await;
}

/// A database made with one store key, opened with another: the issuer
/// refuses to start, saying the store key does not fit (and never printing
/// a key); the right key still opens it.
#[tokio::test]
async fn a_wrong_store_key_is_refused_at_start() {
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let db = Database::new(cluster, "wrongkey");
    let config = db.config(&api());
    let mut first = db.replica(config.path()).await;
    assert_eq!(first.run.terminate().await.code(), Some(0));

    let wrong = new_store_key();
    let wrong_config = db.config_with_key(&api(), &wrong);
    let mut cmd = sidecar();
    cmd.args(["issuer", "--log-format", "json", "--config"])
        .arg(wrong_config.path())
        .envs(db.env());
    let mut run = Running::spawn(cmd);
    let status = run.exit(support::LONG).await;
    let log = run.lines.lock().unwrap().join("\n");
    assert!(!status.success(), "started with a wrong store key: {log}");
    let error = run
        .logs()
        .into_iter()
        .find(|v| v["message"] == "cannot start")
        .unwrap_or_else(|| panic!("no `cannot start` line: {log}"));
    let said = error["error"].as_str().unwrap().to_owned();
    eprintln!("wrong store key: {said}");
    assert!(said.contains("store_key"), "{said}");
    for secret in [wrong.as_str(), db.store_key.as_str(), db.cluster.password()] {
        assert!(!log.contains(secret), "a secret in the log: {log}");
    }
    assert!(!log.contains("issuer ready"), "{log}");

    // The right key still opens it.
    let again = db.replica(config.path()).await;
    access_token(&again.url, "billing", BILLING_SECRET, ORDERS).await;
}
