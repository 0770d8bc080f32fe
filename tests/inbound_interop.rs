//! Inbound verification against tokens no one here signed: minted by the npm
//! package `jose` (RS256, PS256, ES256, EdDSA) and issued by `oidc-provider`
//! (keys found through its discovery). Plus the JWKS fetcher's behaviour: an
//! unknown-kid flood makes at most one fetch per cooldown, and an outage keeps
//! the last good keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use bytes::Bytes;
use http_body_util::Full;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::config::{SidecarConfig, quote};
use support::echo::Echo;
use support::http::client;
use support::jwt::{TestKey, claims, jwks};
use support::sidecar::Sidecar;

const ISS: &str = "https://issuer.test/";
const AUD: &str = "https://orders.example.com";

fn peer(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name);
    if dir.join("node_modules").is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "{name} peer not installed: run `npm ci --prefix tests/peers/{name}` (test.sh does)"
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

async fn inbound(echo: &Echo, keys: &str, extra: &str) -> Sidecar {
    let config = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\naudiences = [{}]\ndefault = \"authenticated\"\n{keys}\n{extra}\n",
        quote(&echo.url()),
        quote(AUD)
    );
    Sidecar::start(&SidecarConfig::new().raw(&config)).await
}

async fn status(s: &Sidecar, token: &str) -> u16 {
    support::http::bearer_status(&s.inbound("/x"), token).await
}

#[tokio::test]
async fn tokens_minted_by_jose_are_accepted() {
    let Some(dir) = peer("jose") else { return };
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("sign.mjs"))
            .args([ISS, AUD, "orders:read"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("jwks.json");
    std::fs::write(&file, v["jwks"].to_string()).unwrap();
    let echo = Echo::start().await;
    let keys = format!(
        "issuer = {}\njwks_file = {}",
        quote(ISS),
        quote(file.to_str().unwrap())
    );
    let s = inbound(&echo, &keys, "").await;
    s.ready().await;
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        assert_eq!(
            status(&s, v["tokens"][alg].as_str().unwrap()).await,
            200,
            "{alg}"
        );
    }
    assert_eq!(
        echo.seen().pop().unwrap().headers["x-m2m-client-id"],
        "jose-client"
    );
    s.stop().await;
}

#[tokio::test]
async fn tokens_from_oidc_provider_are_accepted_through_its_discovery() {
    let Some(dir) = peer("oidc-provider") else {
        return;
    };
    let mut child = std::process::Command::new("node")
        .arg(dir.join("server.js"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let p: serde_json::Value = serde_json::from_str(&line).unwrap();
    let (issuer, token_endpoint) = (
        p["issuer"].as_str().unwrap().to_owned(),
        p["token_endpoint"].as_str().unwrap().to_owned(),
    );
    let form = "grant_type=client_credentials&client_id=post-client&client_secret=p0st+s3cr3t%3A+%2B%25%2F%26%3D%3F%7E&resource=https%3A%2F%2Forders.example.com&scope=orders%3Aread";
    let resp = client()
        .post(&token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let token = v["access_token"].as_str().unwrap().to_owned();
    let echo = Echo::start().await;
    let s = inbound(&echo, &format!("issuer = {}", quote(&issuer)), "").await;
    s.ready().await;
    assert_eq!(status(&s, &token).await, 200);
    let seen = echo.seen().pop().unwrap();
    assert_eq!(seen.headers["x-m2m-client-id"], "post-client");
    assert_eq!(seen.headers["x-m2m-scopes"], "orders:read");
    s.stop().await;
    let _ = child.kill();
    let _ = child.wait();
}

/// A JWKS endpoint that counts its requests and can be told to fail.
#[derive(Clone)]
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let s = JwksServer {
            url,
            body: Arc::new(Mutex::new(body)),
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::default(),
        };
        let st = s.clone();
        support::http::serve(listener, move |_req| {
            let st = st.clone();
            async move {
                st.hits.fetch_add(1, Ordering::SeqCst);
                let body = st.body.lock().unwrap().clone();
                http::Response::builder()
                    .status(st.status.load(Ordering::SeqCst))
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
        });
        s
    }
}

#[tokio::test]
async fn an_unknown_kid_flood_fetches_at_most_once_per_cooldown() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let echo = Echo::start().await;
    let keys = format!(
        "issuer = {}\njwks_url = {}\njwks_cooldown = \"1h\"",
        quote(ISS),
        quote(&server.url)
    );
    let s = inbound(&echo, &keys, "").await;
    s.ready().await;
    let before = server.hits.load(Ordering::SeqCst);
    let url = s.inbound("/x");
    let c = client();
    let requests = (0..1000).map(|i| {
        let mut h = key.header();
        h["kid"] = format!("random-{i}").into();
        let token = key.sign(&h, &claims(ISS, AUD, ""));
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 401));
    let fetches = server.hits.load(Ordering::SeqCst) - before;
    assert!(
        fetches <= 1,
        "{fetches} fetches for 1000 unknown kids within one cooldown"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_jwks_outage_keeps_the_last_good_keys() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let echo = Echo::start().await;
    let keys = format!(
        "issuer = {}\njwks_url = {}\njwks_refresh = \"1s\"\njwks_cooldown = \"0s\"",
        quote(ISS),
        quote(&server.url)
    );
    let s = inbound(&echo, &keys, "").await;
    s.ready().await;
    server.status.store(500, Ordering::SeqCst);
    *server.body.lock().unwrap() = "oops".into();
    let before = server.hits.load(Ordering::SeqCst);
    support::until(
        Duration::from_secs(10),
        "refreshes during the outage",
        async || server.hits.load(Ordering::SeqCst) >= before + 2,
    )
    .await;
    let token = key.sign(&key.header(), &claims(ISS, AUD, ""));
    assert_eq!(
        status(&s, &token).await,
        200,
        "the last good keys still verify"
    );
    let (status_code, body) = support::http::get_json(&s.admin_url("/readyz")).await;
    assert_eq!(status_code, 200);
    assert!(
        body["inbound"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{body}"
    );
    s.stop().await;
}
