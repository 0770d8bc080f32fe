//! One issuer per SQLite file: a second process on the same database is
//! refused at start, and the first keeps serving.

use super::*;
use support::issuer::{App, ORDERS};

const SECRET: &str = "billing-secret-0123456789abcdef01234567";

#[tokio::test]
async fn a_second_issuer_on_the_same_database_exits() {
    let dir = tempfile::tempdir().unwrap();
    let api = OrdersApi::new()
        .scopes(&["orders:read"])
        .app(App::new("billing", SECRET).orders(&["orders:read"]));
    let f = config_file(&issuer_toml(&api, &store_line(dir.path())));
    let (mut first, base) = start_issuer(f.path()).await;

    let (status, stderr) = run_issuer(f.path(), &[]).await;
    assert!(!status.success(), "{status}: {stderr}");
    let db = dir.path().join("issuer.db");
    assert!(
        stderr.contains(&format!(
            "{} is in use by another issuer process",
            db.display()
        )),
        "{stderr}"
    );
    // Nor may it migrate under a running issuer.
    let (status, stderr) = run_issuer(f.path(), &["--migrate-only"]).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("in use by another issuer process"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET));

    // The first is unharmed.
    let (status, body) = support::http::token_json(&base, "billing", SECRET, ORDERS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(first.terminate().await.code(), Some(0));

    // Once it has stopped, the database is free again.
    let (mut next, base) = start_issuer(f.path()).await;
    let (status, body) = support::http::token_json(&base, "billing", SECRET, ORDERS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next.terminate().await.code(), Some(0));
}
