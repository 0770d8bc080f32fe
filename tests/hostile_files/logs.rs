//! Logs: a JWKS of ten thousand unusable keys logs one line per change.

use super::*;
use std::sync::{Arc, Mutex};
use support::config::quote;
use support::process::Running;
use support::{LONG, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_of_ten_thousand_unusable_keys_logs_one_line_per_change() {
    let key = support::jwt::TestKey::es256("good");
    let mut keys: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"kty": "oct", "kid": format!("bad-{i}"), "k": "c2VjcmV0"}))
        .collect();
    keys.push(key.jwk());
    let jwks = Arc::new(Mutex::new(serde_json::json!({ "keys": keys }).to_string()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let served = jwks.clone();
    support::http::serve(listener, move |_req| {
        let body = served.lock().unwrap().clone();
        async move { hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body))) }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\nissuer = \"https://idp.example.com/\"\n\
             audiences = [{ORDERS:?}]\njwks_url = {}\njwks_refresh = \"1s\"\n",
            quote(&url)
        ),
    )
    .unwrap();
    let run = Running::start(&config);
    let admin = run.addr_of("admin listener ready").await;
    let fetches = || async {
        let text = support::http::get(&format!("http://{admin}/metrics"))
            .await
            .1;
        support::metric(&text, "m2m_inbound_jwks_fetches_total{outcome=\"success\"}")
    };
    let lines = || run.count_logs("JWKS keys not used", "level", "WARN");
    // Four fetches of the same set: one line.
    until(LONG, "four JWKS fetches", async || fetches().await >= 4).await;
    assert_eq!(lines(), 1);
    let line = run.wait_for_log("JWKS keys not used", 1).await;
    assert_eq!(line["skipped"], 10_000, "{line}");
    assert!(line.to_string().len() < 2_000, "{line}");
    // The set changes (one unusable key less): one more line, then quiet again.
    keys.remove(0);
    *jwks.lock().unwrap() = serde_json::json!({ "keys": keys }).to_string();
    run.wait_for_log("JWKS keys not used", 2).await;
    let seen = fetches().await;
    until(LONG, "three more JWKS fetches", async || {
        fetches().await >= seen + 3
    })
    .await;
    assert_eq!(lines(), 2);
    let total = run.lines.lock().unwrap().len();
    assert!(total < 1_000, "{total} log lines");
}
