//! Downgrade through metadata: an `https://` issuer whose metadata names
//! `http://` endpoints gets nothing sent to them; loopback ones may be plain.

use super::*;
use std::sync::{Arc, Mutex};
use support::config::quote;
use support::echo::Echo;
use support::http::client;
use support::process::Running;
use support::{LONG, until};

/// A TLS authorization server (test CA, `localhost`) whose metadata document
/// names `endpoint(path)` for its token, JWKS and introspection endpoints; it
/// records the paths it was asked for.
struct HostileMetadata {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl HostileMetadata {
    async fn start(tls: rustls::ServerConfig, endpoint: impl Fn(&str) -> String) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}/",
            listener.local_addr().unwrap().port()
        );
        let doc = serde_json::json!({
            "issuer": url,
            "token_endpoint": endpoint("oauth/token"),
            "jwks_uri": endpoint("jwks.json"),
            "introspection_endpoint": endpoint("oauth/introspect"),
        })
        .to_string();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (acceptor, log) = (tokio_rustls::TlsAcceptor::from(Arc::new(tls)), seen.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log, doc) = (acceptor.clone(), log.clone(), doc.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            log.lock().unwrap().push(req.uri().path().to_owned());
                            let body = if req.uri().path().starts_with("/.well-known/") {
                                doc.clone()
                            } else {
                                String::new()
                            };
                            async move {
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(body)),
                                ))
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        HostileMetadata { url, seen }
    }
}

/// The sidecar binary on `config`, trusting only the test CA `ca_pem`.
fn run_trusting(config: &std::path::Path, ca_pem: &std::path::Path) -> Running {
    let mut cmd = support::process::sidecar();
    cmd.args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("SSL_CERT_FILE", ca_pem);
    Running::spawn(cmd)
}

/// A sidecar binary's surroundings: a directory, the test CA (trusted), keys
/// for tokens and the service it fronts.
struct Trusting {
    dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    key: support::jwt::TestKey,
    jwks_file: std::path::PathBuf,
    service: Echo,
}

impl Trusting {
    async fn new(ca_pem: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let key = support::jwt::TestKey::es256("k1");
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, support::jwt::jwks(&[&key])).unwrap();
        Trusting {
            dir,
            ca,
            key,
            jwks_file,
            service: Echo::start().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_issuer_whose_metadata_names_http_endpoints_gets_nothing_sent_there() {
    let pki = support::tls::pki();
    let t = Trusting::new(&pki.ca_pem).await;
    // Plain http, reachable: 0.0.0.0 reaches 127.0.0.1 on Linux, but it is no
    // loopback address, so an https issuer may not send anyone there.
    let plain = Echo::start().await;
    let port = plain.addr.port();
    type Endpoint = Box<dyn Fn(&str) -> String>;
    let variants: Vec<(&str, Endpoint)> = vec![
        (
            "http://0.0.0.0",
            Box::new(move |p| format!("http://0.0.0.0:{port}/{p}")),
        ),
        (
            "HTTP:// upper case",
            Box::new(move |p| format!("HTTP://0.0.0.0:{port}/{p}")),
        ),
        (
            "http:// with user info",
            Box::new(move |p| format!("http://user:hunter2@0.0.0.0:{port}/{p}")),
        ),
        (
            "http:// with a query",
            Box::new(move |p| format!("http://0.0.0.0:{port}/{p}?x=1")),
        ),
    ];
    for (name, endpoint) in variants {
        let idp = HostileMetadata::start(pki.server.clone(), endpoint).await;
        discovery_refused(&t, name, &idp).await;
        introspection_refused(&t, name, &idp).await;
        assert!(
            plain.seen().is_empty(),
            "{name}: sent in clear: {:?}",
            plain.seen().iter().map(|s| &s.uri).collect::<Vec<_>>()
        );
        assert!(
            t.service.seen().is_empty(),
            "{name}: nothing reached the service"
        );
        // The metadata was read (so the test could fail), nothing else.
        let asked = idp.seen.lock().unwrap().clone();
        assert!(
            asked.iter().any(|p| p.starts_with("/.well-known/")),
            "{asked:?}"
        );
    }
}

/// A credential (token_endpoint) and an inbound listener (jwks_uri) of the
/// sidecar trusting `idp`: both refuse the downgrade, and the app's call gets 503.
async fn discovery_refused(t: &Trusting, name: &str, idp: &HostileMetadata) {
    let discovery = t.dir.path().join("discovery.toml");
    std::fs::write(
        &discovery,
        format!(
            "drain_timeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [credentials.orders]\nissuer = {issuer}\nclient_id = \"client\"\nclient_secret = {SECRET:?}\naudience = {ORDERS:?}\n\
             [[outbound]]\nname = \"orders\"\nlisten = \"127.0.0.1:0\"\nupstream = {svc}\ncredential = \"orders\"\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {svc}\nissuer = {issuer}\naudiences = [{ORDERS:?}]\n",
            issuer = quote(&idp.url),
            svc = quote(&t.service.url()),
        ),
    )
    .unwrap();
    let run = run_trusting(&discovery, &t.ca);
    let admin = run.addr_of("admin listener ready").await;
    let ready = until(LONG, "both errors on /readyz", async || {
        let (_, v) = support::http::get_json(&format!("http://{admin}/readyz")).await;
        let both = v["credentials"]["orders"]["last_error"].is_string()
            && v["inbound"]["last_error"].is_string();
        if both { Ok(v) } else { Err(v) }
    })
    .await;
    let (cred, keys) = (
        ready["credentials"]["orders"]["last_error"]
            .as_str()
            .unwrap(),
        ready["inbound"]["last_error"].as_str().unwrap(),
    );
    assert!(
        cred.contains("token_endpoint") && cred.contains("downgrade"),
        "{name}: {cred}"
    );
    assert!(
        keys.contains("jwks_uri") && keys.contains("downgrade"),
        "{name}: {keys}"
    );
    assert_eq!(ready["ready"], false);
    assert!(!ready.to_string().contains("hunter2"), "{ready}");
    // The app's call waits for a token that never comes: 503, nothing sent.
    let outbound = run.addr_of("outbound listener ready").await;
    let resp = client()
        .get(format!("http://{outbound}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "{name}");
    drop(run);
}

/// Introspection (keys from a file, so tokens pass the local checks) at an
/// endpoint the sidecar refuses: every request 503.
async fn introspection_refused(t: &Trusting, name: &str, idp: &HostileMetadata) {
    let introspecting = t.dir.path().join("introspection.toml");
    std::fs::write(
        &introspecting,
        format!(
            "drain_timeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {svc}\nissuer = {issuer}\naudiences = [{ORDERS:?}]\njwks_file = {jwks}\n\
             [inbound.introspection]\nclient_id = \"gateway\"\nclient_secret = {SECRET:?}\n",
            issuer = quote(&idp.url),
            svc = quote(&t.service.url()),
            jwks = quote(t.jwks_file.to_str().unwrap()),
        ),
    )
    .unwrap();
    let run = run_trusting(&introspecting, &t.ca);
    let inbound = run.addr_of("inbound listener ready").await;
    run.ready().await;
    let token = t.key.sign(
        &t.key.header(),
        &support::jwt::claims(&idp.url, ORDERS, "orders:read"),
    );
    for _ in 0..3 {
        let resp = client()
            .get(format!("http://{inbound}/orders/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{name}: on_error = deny");
    }
    run.wait_for_log("token introspection failed", 1).await;
    drop(run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_endpoints_may_be_plain_http() {
    // The exception, and proof that the plain server is reachable at all.
    let pki = support::tls::pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let plain = Echo::start().await;
    let port = plain.addr.port();
    let idp = HostileMetadata::start(pki.server.clone(), move |p| {
        format!("http://127.0.0.1:{port}/{p}")
    })
    .await;
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\
             [credentials.orders]\nissuer = {issuer}\nclient_id = \"client\"\nclient_secret = {SECRET:?}\naudience = {ORDERS:?}\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\nissuer = {issuer}\naudiences = [{ORDERS:?}]\n",
            issuer = quote(&idp.url),
        ),
    )
    .unwrap();
    let _run = run_trusting(&config, &ca);
    support::until(LONG, "requests at the loopback endpoints", async || {
        let uris: Vec<String> = plain.seen().iter().map(|s| s.uri.clone()).collect();
        uris.iter().any(|u| u.ends_with("/oauth/token"))
            && uris.iter().any(|u| u.ends_with("/jwks.json"))
    })
    .await;
}
