//! The parts of a reload that need no socket: what it reports, which settings
//! need a restart, and the bounded wait for new inbound keys.

use super::Change;
use super::plan::restart_needed;
use crate::config::{Config, Format, load_str};
use crate::inbound::jwks::{self, Jwks};
use std::time::Duration;
use tokio::time::Instant;

fn config(text: &str) -> Config {
    load_str(text, Format::Toml).unwrap()
}

#[test]
fn changes_read_as_the_reload_log_line_says() {
    let listen = "127.0.0.1:9000".parse().unwrap();
    let name = || "orders".to_owned();
    for (change, text) in [
        (
            Change::NeedsRestart("[issuer]"),
            "[issuer]: needs a restart (not applied)",
        ),
        (Change::CredentialAdded(name()), "credential orders: added"),
        (
            Change::CredentialChanged(name()),
            "credential orders: changed",
        ),
        (
            Change::CredentialRemoved(name()),
            "credential orders: removed",
        ),
        (
            Change::OutboundAdded {
                name: name(),
                listen,
            },
            "outbound orders: added on 127.0.0.1:9000",
        ),
        (
            Change::OutboundMoved {
                name: name(),
                listen,
            },
            "outbound orders: moved to 127.0.0.1:9000",
        ),
        (Change::OutboundRemoved(name()), "outbound orders: removed"),
        (Change::ForwardProxyRemoved, "forward_proxy: removed"),
        (
            Change::InboundKept,
            "inbound: not changed (the new key settings gave no keys within jwks_timeout)",
        ),
        (Change::InboundChanged, "inbound: changed"),
        (
            Change::InboundMoved(listen),
            "inbound: moved to 127.0.0.1:9000",
        ),
        (Change::InboundRemoved, "inbound: removed"),
        (Change::Limits, "limits: changed (new connections)"),
        (Change::Settings, "routes and settings updated"),
    ] {
        assert_eq!(change.to_string(), text);
    }
}

#[test]
fn admin_issuer_and_threads_need_a_restart() {
    let old = config("worker_threads = 2\n[admin]\nlisten = \"127.0.0.1:9901\"\n");
    assert!(restart_needed(None, &old).is_empty(), "nothing runs yet");
    assert!(restart_needed(Some(&old), &old).is_empty());
    let new = config("worker_threads = 1\n[admin]\nlisten = \"127.0.0.1:9902\"\n");
    assert_eq!(
        restart_needed(Some(&old), &new),
        ["admin.listen", "worker_threads"]
    );
}

fn inbound(jwks_file: &std::path::Path) -> crate::config::InboundSpec {
    let text = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\nissuer = \"https://issuer.test/\"\njwks_file = \"{}\"\naudiences = [\"https://orders.example.com\"]\ndefault = \"authenticated\"\n",
        jwks_file.display()
    );
    config(&text).inbound.unwrap()
}

/// RFC 7517 appendix A.1's P-256 key, as a verification key.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"1","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#;

#[tokio::test(start_paused = true)]
async fn waiting_for_keys_ends_at_the_deadline_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = Jwks::new(&inbound(&dir.path().join("jwks.json")));
    let start = Instant::now();
    assert!(!jwks.wait_loaded(start + Duration::from_secs(2)).await);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn waiting_for_keys_ends_when_they_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, JWKS).unwrap();
    let spec = inbound(&file);
    let set = Jwks::new(&spec);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::inbound::InboundMetrics::register(&mut registry);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(jwks::run(set.clone(), spec, metrics, stopped));
    let start = Instant::now();
    assert!(set.wait_loaded(start + Duration::from_secs(10)).await);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(set.keys().map(|k| k.len()), Some(1));
    let _ = stop.send(true);
    task.await.unwrap();
}
