//! `[issuer]`'s store keys: `store` (SQLite or PostgreSQL), `store_password`,
//! `store_key`, `store_ca_file`; a password never in the URL, and never shown.

use super::*;
use std::process::Command;

/// An issuer with `{store}` in its table (TOML lines).
const TEMPLATE: &str = r#"
[admin]
listen = "127.0.0.1:15090"
[issuer]
listen = "127.0.0.1:15100"
url = "http://127.0.0.1:15100/"
{store}
[[issuer.apis]]
name = "Orders API"
identifier = "https://orders.example.com"
scopes = ["orders:read"]
"#;

const PG: &str = "postgres://issuer@db.example:5432/issuer";
const PASSWORD: &str = "db-password-0123456789";
const STORE_KEY: &str = "c3RvcmUta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg=";

fn with_store(lines: &str) -> String {
    TEMPLATE.replace("{store}", lines)
}

/// A CA file that exists.
fn ca_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "-----BEGIN CERTIFICATE-----\n").unwrap();
    f
}

/// `m2m-sidecar check` on `text`: exit code, stdout and stderr with the
/// config file's (random) path taken out.
fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m2m.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_m2m-sidecar"))
        .env_clear()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let shown = path.display().to_string();
    let clean = |b: Vec<u8>| String::from_utf8(b).unwrap().replace(&shown, "<config>");
    (out.status.code(), clean(out.stdout), clean(out.stderr))
}

#[test]
fn store_problems_are_named() {
    let ca = ca_file();
    let key = format!("store_key = \"{STORE_KEY}\"");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("store = \"mysql://x\"\n{key}"),
            "issuer.store: expected `sqlite://PATH` or `postgres://user@host:port/db`",
        ),
        (
            "store = \"sqlite://\"".into(),
            "issuer.store: name the database file",
        ),
        (
            "store = \"sqlite://data/\"".into(),
            "issuer.store: name the database file",
        ),
        (
            format!("store = \"{PG}\""),
            "issuer.store_key: is required with PostgreSQL",
        ),
        (
            format!("store = \"postgres:///issuer\"\n{key}"),
            "issuer.store: names no host",
        ),
        (
            format!("store = \"sqlite://data/issuer.db\"\nstore_password = \"{PASSWORD}\""),
            "issuer.store_password: is only used with a PostgreSQL store",
        ),
        (
            format!(
                "store = \"sqlite://data/issuer.db\"\nstore_ca_file = \"{}\"",
                ca.path().display()
            ),
            "issuer.store_ca_file: is only used with a PostgreSQL store",
        ),
        (
            // No `store`: the default is SQLite.
            "store_password = { env = \"DB_PASSWORD\" }".into(),
            "issuer.store_password: is only used with a PostgreSQL store",
        ),
        (
            format!("store_ca_file = \"{}\"", ca.path().display()),
            "issuer.store_ca_file: is only used with a PostgreSQL store",
        ),
        (
            format!("store = \"{PG}\"\n{key}\nstore_ca_file = \"/nonexistent/db-ca.pem\""),
            "issuer.store_ca_file: cannot read /nonexistent/db-ca.pem: no such file",
        ),
        (
            format!("store = \"{PG}\"\nstore_key = \"\""),
            "issuer.store_key: must not be empty",
        ),
        (
            format!("store = \"{PG}\"\n{key}\nstore_password = {{ env = \"\" }}"),
            "issuer.store_password: give exactly one of `env` or `file`",
        ),
    ];
    for (lines, want) in &cases {
        let found = issues(&with_store(lines));
        assert!(
            found.iter().any(|i| i.starts_with(want)),
            "{lines}: want `{want}`, got {found:#?}"
        );
    }
}

#[test]
fn a_password_in_the_url_is_refused_and_never_shown() {
    let key = format!("store_key = \"{STORE_KEY}\"");
    for url in [
        "postgres://u:pw@h/db",
        "postgresql://u:pw@h:5432/db",
        "postgres://u@h/db?password=pw",
    ] {
        let text = with_store(&format!("store = \"{url}\"\n{key}"));
        let found = issues(&text);
        assert_eq!(
            found,
            [
                "issuer.store: holds a password: give it as `store_password` (a secret source) instead"
            ],
            "{url}"
        );
        let (code, stdout, stderr) = check(&text);
        assert_eq!(code, Some(2), "{url}: {stdout}{stderr}");
        assert!(stderr.contains("store_password"), "{url}: {stderr}");
        assert!(
            !stdout.contains("pw") && !stderr.contains("pw"),
            "{url}: the password shown:\n{stdout}{stderr}"
        );
    }
}

#[test]
fn a_malformed_url_with_a_password_is_refused_without_showing_it() {
    let key = format!("store_key = \"{STORE_KEY}\"");
    for url in [
        "postgres://u:pw@h:port/db",
        "postgres://u:pw@h/db?sslmode=bogus",
    ] {
        let found = issues(&with_store(&format!("store = \"{url}\"\n{key}")));
        assert_eq!(found.len(), 1, "{url}: {found:?}");
        assert!(found[0].starts_with("issuer.store: "), "{found:?}");
        assert!(!found[0].contains("pw"), "{url}: {found:?}");
    }
}

#[test]
fn the_default_store_is_sqlite_beside_the_data() {
    let summary = |text: &str| {
        let c = load_str(text, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        m2m_sidecar::config::summary(&c)
    };
    assert!(
        summary(&with_store("")).contains(" store=sqlite://data/issuer.db\n"),
        "{}",
        summary(&with_store(""))
    );
    // The deprecated `state` moves the default beside it, with a warning.
    let text = with_store("state = \"old/issuer.json\"");
    assert!(summary(&text).contains(" store=sqlite://old/issuer.db\n"));
    let c = load_str(&text, Format::Toml).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.to_string().starts_with("issuer.state: is deprecated")),
        "{:?}",
        c.warnings
    );
    let text = with_store("store = \"sqlite:///var/lib/m2m/issuer.db\"");
    assert!(summary(&text).contains(" store=sqlite:///var/lib/m2m/issuer.db\n"));
    assert!(
        load_str(&text, Format::Toml).unwrap().warnings.is_empty(),
        "no warning without `state`"
    );
}

#[test]
fn a_valid_postgres_store_passes_check_without_showing_secrets() {
    let ca = ca_file();
    let text = with_store(&format!(
        "store = \"{PG}\"\nstore_password = \"{PASSWORD}\"\nstore_key = \"{STORE_KEY}\"\nstore_ca_file = \"{}\"",
        ca.path().display()
    ));
    assert_eq!(issues(&text), Vec::<String>::new());
    let c = load_str(&text, Format::Toml).unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains(STORE_KEY),
        "{debug}"
    );
    let (code, stdout, stderr) = check(&text);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("issuer "))
        .unwrap_or_else(|| panic!("no issuer line: {stdout}"));
    assert!(line.ends_with(&format!(" store={PG}")), "{line}");
    for secret in [PASSWORD, STORE_KEY] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret shown:\n{stdout}{stderr}"
        );
    }
    // Secret sources from the environment or files pass too (read at start).
    let text = with_store(&format!(
        "store = \"{PG}\"\nstore_password = {{ env = \"DB_PASSWORD\" }}\nstore_key = {{ file = \"/run/secrets/store-key\" }}"
    ));
    assert_eq!(issues(&text), Vec::<String>::new());
}
