//! The issuer's embedded store (SQLite) from the outside: the JSON state of
//! the previous release imported once, the audit log, `--migrate-only`, one
//! issuer per database file, and the store key that seals the signing keys.
//! Most tests run the `m2m-sidecar issuer` binary, to read its logs and exit
//! codes as an operator would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod import;
mod lock;
mod migrate;
mod store_key;

use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use support::config::quote;
use support::issuer::OrdersApi;
use support::poll::{LONG, until};
use support::process::{Running, sidecar};

/// The issuer's URL (it listens elsewhere, on a free port): it names the
/// issuer (`iss`) and the management audience.
const URL: &str = "http://127.0.0.1:1/";

/// The `store = "sqlite://…"` line `OrdersApi::toml` writes for `dir`.
fn store_line(dir: &Path) -> String {
    let store = format!("sqlite://{}", dir.join("issuer.db").display());
    format!("store = {}\n", quote(&store))
}

/// The `[issuer]` table of `api` (listening on a free port, named [`URL`])
/// with its `store` line replaced by `store` (TOML lines; empty: no store).
fn issuer_toml(api: &OrdersApi, store: &str) -> String {
    let scratch = Path::new("/nonexistent-store-dir");
    api.toml(0, URL, scratch)
        .replacen(&store_line(scratch), store, 1)
}

/// A config file holding `text`.
fn config_file(text: &str) -> tempfile::NamedTempFile {
    support::process::write_config(text)
}

/// `m2m-sidecar issuer` on `config` (JSON logs), not waited for.
fn spawn_issuer(config: &Path, extra: &[&str]) -> Running {
    let mut cmd = sidecar();
    cmd.args(["issuer", "--log-format", "json", "--config"])
        .arg(config)
        .args(extra);
    Running::spawn(cmd)
}

/// `m2m-sidecar issuer` on `config` started and ready: the process and its
/// base URL (`http://ADDR/`).
async fn start_issuer(config: &Path) -> (Running, String) {
    let (run, addr) = Running::issuer(config, &[]).await;
    (run, format!("http://{addr}/"))
}

/// Wait (bounded) for `run` to exit; its status and every line it wrote to
/// stderr (the reader thread is done: it dropped its handle on the lines).
async fn finish(run: &mut Running) -> (ExitStatus, String) {
    let status = run.exit(LONG).await;
    until(LONG, "the end of the process's stderr", async || {
        Arc::strong_count(&run.lines) == 1
    })
    .await;
    let text = run.lines.lock().unwrap().join("\n");
    (status, text)
}

/// `m2m-sidecar issuer --config F [extra]` run to its end: status and stderr.
async fn run_issuer(config: &Path, extra: &[&str]) -> (ExitStatus, String) {
    let mut run = spawn_issuer(config, extra);
    finish(&mut run).await
}

/// The log lines of `run` whose message is `message`.
fn logged(run: &Running, message: &str) -> Vec<serde_json::Value> {
    run.logs()
        .into_iter()
        .filter(|v| v["message"] == message)
        .collect()
}

/// POST a form to `{base}{path}` as `client_id`/`secret`: status and JSON.
async fn form_as(
    base: &str,
    path: &str,
    client_id: &str,
    secret: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", token),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .finish();
    let resp = support::http::client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

/// Whether `haystack` holds `needle` anywhere.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
