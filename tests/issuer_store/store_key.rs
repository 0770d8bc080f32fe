//! The store key: given in the config, nothing is written beside the
//! database and only that key opens it (the error says so without showing
//! a key); not given, one is generated beside the database, mode 0600.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::os::unix::fs::PermissionsExt as _;
use support::issuer::{App, ORDERS};

const SECRET: &str = "billing-secret-0123456789abcdef01234567";

fn api() -> OrdersApi {
    OrdersApi::new()
        .scopes(&["orders:read"])
        .app(App::new("billing", SECRET).orders(&["orders:read"]))
}

fn random_key() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    STANDARD.encode(bytes)
}

/// The config of an issuer on `dir/issuer.db` with `store_key` (a literal).
fn keyed(dir: &Path, key: &str) -> tempfile::NamedTempFile {
    let lines = format!("{}store_key = {}\n", store_line(dir), quote(key));
    config_file(&issuer_toml(&api(), &lines))
}

#[tokio::test]
async fn a_store_key_in_the_config_is_the_only_one_that_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (first_key, other_key) = (random_key(), random_key());
    let f = keyed(dir.path(), &first_key);
    let (mut run, base) = start_issuer(f.path()).await;
    let (status, body) = support::http::token_json(&base, "billing", SECRET, ORDERS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(run.terminate().await.code(), Some(0));
    assert!(
        !dir.path().join("store.key").exists(),
        "no key file beside the database when the config gives one"
    );
    let logs = run.lines.lock().unwrap().join("\n");
    assert!(!logs.contains(&first_key), "the key in the logs:\n{logs}");

    // Another key does not open what the first sealed, and says so.
    let g = keyed(dir.path(), &other_key);
    let (status, stderr) = run_issuer(g.path(), &[]).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(stderr.contains("cannot decrypt"), "{stderr}");
    assert!(stderr.contains("with this store_key"), "{stderr}");
    for key in [&first_key, &other_key] {
        assert!(
            !stderr.contains(key.as_str()),
            "a key in the error:\n{stderr}"
        );
    }
    assert!(!dir.path().join("store.key").exists());

    // The first key still does: nothing was damaged.
    let (mut run, base) = start_issuer(f.path()).await;
    let (status, body) = support::http::token_json(&base, "billing", SECRET, ORDERS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(run.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn without_a_store_key_one_is_generated_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("data");
    let f = config_file(&issuer_toml(&api(), &store_line(&db_dir)));
    let (mut run, base) = start_issuer(f.path()).await;
    let (status, body) = support::http::token_json(&base, "billing", SECRET, ORDERS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(run.terminate().await.code(), Some(0));
    let path = db_dir.join("store.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), 32);
    let logs = run.lines.lock().unwrap().join("\n");
    assert!(!logs.contains(text.trim()), "the key in the logs:\n{logs}");

    // Kept: the next start opens the store with it, and does not replace it.
    let (mut run, base) = start_issuer(f.path()).await;
    let (status, body) = support::http::token_json(&base, "billing", SECRET, ORDERS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(run.terminate().await.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}
