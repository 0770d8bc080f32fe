//! `m2m-sidecar issuer --migrate-only`: the schema applied, once, and a
//! database from a newer release refused.

use super::*;
use serde_json::{Value, json};

/// The migration log line.
const APPLIED: &str = "store: applied a schema migration";

/// Every table the schema (version 1) makes.
const TABLES: [&str; 14] = [
    "apis",
    "app_grants",
    "app_keys",
    "app_secrets",
    "apps",
    "audit_log",
    "blocks",
    "changes",
    "deleted",
    "meta",
    "revoked_tokens",
    "schema_migrations",
    "server_keys",
    "signing_keys",
];

/// The schema and the applied migrations, as rows.
fn schema(dir: &Path) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    (
        support::store::query(
            dir,
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name",
        ),
        support::store::query(
            dir,
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
        ),
    )
}

fn count_applied(stderr: &str) -> usize {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == APPLIED)
        .count()
}

#[tokio::test]
async fn migrate_only_applies_the_schema_once_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh path, its directory not made yet.
    let db_dir = dir.path().join("fresh");
    let f = config_file(&issuer_toml(&OrdersApi::new(), &store_line(&db_dir)));
    let (status, stderr) = run_issuer(f.path(), &["--migrate-only"]).await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(count_applied(&stderr), 1, "{stderr}");
    let (tables, versions) = schema(&db_dir);
    let names: Vec<&str> = tables
        .iter()
        .filter(|r| r[0] == "table")
        .map(|r| r[1].as_str().unwrap())
        .filter(|n| !n.starts_with("sqlite_"))
        .collect();
    assert_eq!(names, TABLES);
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0][0], json!(1));
    // Only the schema: no issuer ran, so no key and no app.
    for table in ["signing_keys", "apps", "apis", "audit_log"] {
        assert_eq!(
            support::store::query(&db_dir, &format!("SELECT count(*) FROM {table}")),
            [[json!(0)]],
            "{table}"
        );
    }

    // Again: nothing to do, nothing changed.
    let (status, stderr) = run_issuer(f.path(), &["--migrate-only"]).await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(count_applied(&stderr), 0, "{stderr}");
    assert_eq!(schema(&db_dir), (tables, versions));

    // The issuer starts on it, applying nothing.
    let (mut run, _) = start_issuer(f.path()).await;
    assert_eq!(logged(&run, APPLIED).len(), 0);
    assert_eq!(run.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(&issuer_toml(&OrdersApi::new(), &store_line(dir.path())));
    let (status, stderr) = run_issuer(f.path(), &["--migrate-only"]).await;
    assert!(status.success(), "{stderr}");
    let db = dir.path().join("issuer.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)",
            [],
        )
        .unwrap();
    let before = schema(dir.path());
    for extra in [&[][..], &["--migrate-only"][..]] {
        let (status, stderr) = run_issuer(f.path(), extra).await;
        assert!(!status.success(), "{extra:?}: {status}");
        assert!(
            stderr.contains(
                "the database's schema is at version 99, newer than this release knows (1)"
            ),
            "{extra:?}: {stderr}"
        );
        assert_eq!(count_applied(&stderr), 0);
    }
    assert_eq!(schema(dir.path()), before, "a newer schema is left alone");
}
