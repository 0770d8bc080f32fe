//! Hostile files, peers and metadata: a config file rewritten in place under
//! steady traffic is never applied half written (and an emptied one never by
//! the watcher); token cache files swapped in from another credential (copied
//! or symlinked), planted in a world-writable directory or pointing at a huge
//! file are not used; an `https://` issuer whose metadata names `http://`
//! endpoints gets nothing sent to them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::config::{SidecarConfig, issuer_toml, quote};
use support::echo::Echo;
use support::http::client;
use support::process::Running;
use support::sidecar::Sidecar;

const ORDERS: &str = "https://orders.example.com";
const SECRET: &str = "secret-0123456789abcdef0123456789abcdef";
const LONG: Duration = Duration::from_secs(20);

/// The built-in issuer alone (in process): an Orders API with `orders:read`
/// and `admin`, an app `reader` granted `orders:read` only.
struct Idp {
    _sidecar: Sidecar,
    url: String,
    _dir: tempfile::TempDir,
}

impl Idp {
    async fn start(extra_apps: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tables = format!(
            "[[issuer.apis]]\nname = \"Orders API\"\nidentifier = \"{ORDERS}\"\nscopes = [\"orders:read\", \"orders:write\", \"admin\"]\n\
             [[issuer.apps]]\nname = \"reader\"\nclient_id = \"reader\"\nclient_secret = \"{SECRET}\"\n\
             grants = {{ \"{ORDERS}\" = [\"orders:read\"] }}\n{extra_apps}"
        );
        let config = SidecarConfig::new().raw(&issuer_toml(port, dir.path(), &tables));
        let sidecar = Sidecar::start_with(&config, Some(listener)).await;
        Idp {
            _sidecar: sidecar,
            url: format!("http://127.0.0.1:{port}/"),
            _dir: dir,
        }
    }

    async fn token(&self, client_id: &str) -> String {
        let (status, v) = support::http::token_json(&self.url, client_id, SECRET, ORDERS).await;
        assert_eq!(status, 200, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }
}

// ---------------------------------------------------------------------------
// The config watcher

/// An inbound sidecar config: `/orders/*` needs `orders:read`, `/admin/*`
/// needs `admin`, `/marker-N/*` is public (tells which version is applied).
fn watched_config(idp: &Idp, echo: &Echo, marker: usize) -> String {
    format!(
        "drain_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\ndefault = \"deny\"\n\
         [[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n\
         [[inbound.rules]]\npath = \"/admin/*\"\nscopes = [\"admin\"]\n\
         [[inbound.rules]]\npath = \"/marker-{marker}/*\"\npublic = true\n",
        quote(&echo.url()),
        quote(&idp.url),
        quote(ORDERS),
    )
}

/// Where an in-place rewrite stops before its pause: the text before it.
fn cut_points(text: &str) -> Vec<(&'static str, usize)> {
    let at = |needle: &str| text.find(needle).unwrap();
    vec![
        ("empty", 0),
        ("before the admin rule's scopes", at("scopes = [\"admin\"]")),
        (
            "inside the admin rule's scopes",
            at("scopes = [\"admin\"]") + "scopes = [\"ad".len(),
        ),
        ("before the orders rule", at("[[inbound.rules]]")),
        ("before default = deny", at("default = ")),
        ("before the inbound table", at("[inbound]")),
        ("inside the upstream", at("upstream = ") + 12),
        (
            "before the marker rule",
            text.rfind("[[inbound.rules]]").unwrap(),
        ),
    ]
}

/// Requests with an `orders:read` token, until stopped: `/admin/x` must get
/// 403 and `/orders/x` 200, every time. What broke that.
struct Probe {
    stop: Arc<AtomicBool>,
    wrong: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<u64>,
}

impl Probe {
    fn start(inbound: String, token: String) -> Self {
        let stop: Arc<AtomicBool> = Arc::default();
        let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, w) = (stop.clone(), wrong.clone());
        let task = tokio::spawn(async move {
            let c = client();
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                for (path, want) in [("/admin/x", 403), ("/orders/x", 200)] {
                    n += 1;
                    let got = c
                        .get(format!("http://{inbound}{path}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    if got.as_ref().ok() != Some(&want) {
                        w.lock().unwrap().push(format!("{path}: {got:?}"));
                    }
                }
            }
            n
        });
        Probe { stop, wrong, task }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.task.await.unwrap();
        (n, self.wrong.lock().unwrap().clone())
    }
}

/// Rewrite `path` in place as an editor without atomic saves does: truncate,
/// write `text[..cut]`, pause, write the rest.
async fn rewrite_in_place(path: &std::path::Path, text: &str, cut: usize, pause: Duration) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(&text.as_bytes()[..cut]).unwrap();
    f.sync_all().unwrap();
    tokio::time::sleep(pause).await;
    f.write_all(&text.as_bytes()[cut..]).unwrap();
    f.sync_all().unwrap();
}

async fn until_status(url: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let got = client().get(url).send().await.map(|r| r.status().as_u16());
        if got.as_ref().ok() == Some(&want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered {want} (last {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_rewritten_in_place_is_never_applied_half_written() {
    let idp = Idp::start("").await;
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, watched_config(&idp, &echo, 0)).unwrap();
    let run = Running::start(&path);
    let inbound = run.addr_of("inbound listener ready").await;
    let admin = run.addr_of("admin listener ready").await;
    support::http::wait_for_status(&format!("http://{admin}/readyz"), 200, LONG).await;
    let token = idp.token("reader").await;
    until_status(&format!("http://{inbound}/marker-0/x"), 200).await;

    let probe = Probe::start(inbound.clone(), token);
    let text = watched_config(&idp, &echo, 1);
    let cuts = cut_points(&text);
    for (i, (name, _)) in cuts.iter().enumerate() {
        // Each version differs (its marker), so each must be applied in the end.
        let text = watched_config(&idp, &echo, i + 1);
        let cut = cut_points(&text)[i].1;
        // Longer than the old 200 ms settle, shorter than the settle period.
        rewrite_in_place(&path, &text, cut, Duration::from_millis(500)).await;
        until_status(&format!("http://{inbound}/marker-{}/x", i + 1), 200).await;
        eprintln!("applied after a rewrite cut {name}");
    }
    let (sent, wrong) = probe.finish().await;
    assert!(
        wrong.is_empty(),
        "{} of {sent} requests saw a half-written config: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert_eq!(
        run.count_logs("configuration reloaded", "trigger", "config file changed"),
        cuts.len(),
        "one reload per rewrite, of the whole file"
    );
    assert_eq!(
        echo.seen()
            .iter()
            .filter(|s| s.uri.starts_with("/admin"))
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_config_file_is_applied_only_by_sighup() {
    let idp = Idp::start("").await;
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, watched_config(&idp, &echo, 0)).unwrap();
    let run = Running::start(&path);
    let inbound = run.addr_of("inbound listener ready").await;
    let admin = run.addr_of("admin listener ready").await;
    support::http::wait_for_status(&format!("http://{admin}/readyz"), 200, LONG).await;
    let marker = format!("http://{inbound}/marker-0/x");
    until_status(&marker, 200).await;

    // Truncated (and left so), or cut down to the admin table: settled, it
    // parses, and would remove every listener: refused.
    let cases = [
        "",
        "drain_timeout = \"2s\"\n",
        "drain_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    ];
    for (i, text) in cases.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        run.wait_for_log("reload refused: the changed config file has no listener ([[outbound]], [forward_proxy], [inbound]) and would remove every running one; send SIGHUP to apply it anyway", i + 1)
            .await;
        assert_eq!(
            client().get(&marker).send().await.unwrap().status(),
            200,
            "the inbound listener still serves"
        );
    }
    let metrics = support::http::get(&format!("http://{admin}/metrics"))
        .await
        .1;
    assert!(
        support::metric(&metrics, "m2m_config_reloads_total{outcome=\"error\"}") >= 3,
        "{metrics}"
    );
    // The operator means it: SIGHUP applies the empty config.
    std::fs::write(&path, "").unwrap();
    run.signal("-HUP");
    run.wait_for_log("configuration reloaded", 1).await;
    let deadline = tokio::time::Instant::now() + LONG;
    while client().get(&marker).send().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Downgrade through metadata

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

/// `/readyz` until `check` holds for its JSON (bounded); that JSON.
async fn readyz_until(
    admin: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let (_, v) = support::http::get_json(&format!("http://{admin}/readyz")).await;
        if check(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never showed it: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_issuer_whose_metadata_names_http_endpoints_gets_nothing_sent_there() {
    let pki = support::tls::pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let key = support::jwt::TestKey::es256("k1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, support::jwt::jwks(&[&key])).unwrap();
    let service = Echo::start().await;
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
        // A credential (token_endpoint) and an inbound listener (jwks_uri).
        let discovery = dir.path().join("discovery.toml");
        std::fs::write(
            &discovery,
            format!(
                "drain_timeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [credentials.orders]\nissuer = {issuer}\nclient_id = \"client\"\nclient_secret = {SECRET:?}\naudience = {ORDERS:?}\n\
                 [[outbound]]\nname = \"orders\"\nlisten = \"127.0.0.1:0\"\nupstream = {svc}\ncredential = \"orders\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {svc}\nissuer = {issuer}\naudiences = [{ORDERS:?}]\n",
                issuer = quote(&idp.url),
                svc = quote(&service.url()),
            ),
        )
        .unwrap();
        let run = run_trusting(&discovery, &ca);
        let admin = run.addr_of("admin listener ready").await;
        let ready = readyz_until(&admin, |v| {
            v["credentials"]["orders"]["last_error"].is_string()
                && v["inbound"]["last_error"].is_string()
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

        // Introspection (keys from a file, so tokens pass the local checks).
        let introspecting = dir.path().join("introspection.toml");
        std::fs::write(
            &introspecting,
            format!(
                "drain_timeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {svc}\nissuer = {issuer}\naudiences = [{ORDERS:?}]\njwks_file = {jwks}\n\
                 [inbound.introspection]\nclient_id = \"gateway\"\nclient_secret = {SECRET:?}\n",
                issuer = quote(&idp.url),
                svc = quote(&service.url()),
                jwks = quote(jwks_file.to_str().unwrap()),
            ),
        )
        .unwrap();
        let run = run_trusting(&introspecting, &ca);
        let inbound = run.addr_of("inbound listener ready").await;
        let admin = run.addr_of("admin listener ready").await;
        support::http::wait_for_status(&format!("http://{admin}/readyz"), 200, LONG).await;
        let token = key.sign(
            &key.header(),
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

        assert!(
            plain.seen().is_empty(),
            "{name}: sent in clear: {:?}",
            plain.seen().iter().map(|s| &s.uri).collect::<Vec<_>>()
        );
        assert!(
            service.seen().is_empty(),
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

// ---------------------------------------------------------------------------
// Token cache files

/// The claims of a JWT (unverified: the test only reads who it is for).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Cached {
    idp: Idp,
    echo: Echo,
    dir: tempfile::TempDir,
}

impl Cached {
    /// An issuer with an `admin` app granted `scopes` on the orders API.
    async fn with_admin(scopes: &str) -> Self {
        Cached {
            idp: Idp::start(&format!(
                "[[issuer.apps]]\nname = \"admin\"\nclient_id = \"admin\"\nclient_secret = \"{SECRET}\"\n\
                 grants = {{ \"{ORDERS}\" = [{scopes}] }}\n"
            ))
            .await,
            echo: Echo::start().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cache(&self) -> std::path::PathBuf {
        self.dir.path().join("tokens")
    }

    /// A sidecar with two credentials for the same API: `orders` (app
    /// `reader`: `orders:read`) and `wide` (app `admin`: `orders:read admin`),
    /// each behind an outbound route, keeping tokens in `token_cache_dir`.
    async fn sidecar(&self) -> Sidecar {
        self.sidecar_at(&self.cache()).await
    }

    /// [`Self::sidecar`] with `token_cache_dir = dir`.
    async fn sidecar_at(&self, dir: &std::path::Path) -> Sidecar {
        let cred = |name: &str, app: &str| {
            support::config::Cred::new(name, &format!("{}oauth/token", self.idp.url))
                .text("client_id", app)
                .text("client_secret", SECRET)
                .text("audience", ORDERS)
        };
        let config = SidecarConfig::new()
            .top(&format!(
                "token_cache_dir = {}",
                quote(dir.to_str().unwrap())
            ))
            .credential(cred("orders", "reader"))
            .credential(cred("wide", "admin"))
            .outbound("orders", &self.echo.url(), "orders")
            .outbound("wide", &self.echo.url(), "wide");
        let s = Sidecar::start(&config).await;
        support::http::wait_for_status(&s.admin_url("/readyz"), 200, LONG).await;
        s
    }

    /// The token the upstream receives through route `name` (and the request's path).
    async fn sent_through(&self, s: &Sidecar, name: &str, path: &str) -> String {
        let resp = client()
            .get(format!("{}{path}", s.outbound(name)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let seen = self.echo.seen();
        let seen = seen.iter().rev().find(|s| s.uri == path).unwrap();
        seen.authorization()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_owned()
    }

    /// The two cache files: (`orders`'s, `wide`'s), told apart by their token.
    fn files(&self, orders_token: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(self.cache())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        let holds =
            |p: &std::path::Path| std::fs::read_to_string(p).unwrap().contains(orders_token);
        if holds(&files[0]) {
            (files[0].clone(), files[1].clone())
        } else {
            (files[1].clone(), files[0].clone())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cache_file_swapped_in_from_another_credential_is_not_used() {
    let admin_app = format!(
        "[[issuer.apps]]\nname = \"admin\"\nclient_id = \"admin\"\nclient_secret = \"{SECRET}\"\n\
         grants = {{ \"{ORDERS}\" = [\"orders:read\", \"admin\"] }}\n"
    );
    let t = Cached {
        idp: Idp::start(&admin_app).await,
        echo: Echo::start().await,
        dir: tempfile::tempdir().unwrap(),
    };
    let first = t.sidecar().await;
    let orders_token = t.sent_through(&first, "orders", "/first/orders").await;
    let wide_token = t.sent_through(&first, "wide", "/first/wide").await;
    first.stop().await;
    assert_eq!(claims_of(&orders_token)["client_id"], "reader");
    assert_eq!(claims_of(&wide_token)["client_id"], "admin");
    let (orders_file, wide_file) = t.files(&orders_token);

    // A restart reuses each credential's own kept token.
    let again = t.sidecar().await;
    assert_eq!(
        t.sent_through(&again, "orders", "/again").await,
        orders_token
    );
    again.stop().await;

    type Swap = fn(&std::path::Path, &std::path::Path);
    let swaps: Vec<(&str, Swap)> = vec![
        ("copied", |from, to| {
            std::fs::copy(from, to).unwrap();
        }),
        ("renamed over", |from, to| {
            let tmp = to.with_extension("tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }),
        ("symlinked", |from, to| {
            std::fs::remove_file(to).unwrap();
            std::os::unix::fs::symlink(from, to).unwrap();
        }),
        ("hard-linked", |from, to| {
            std::fs::remove_file(to).unwrap();
            std::fs::hard_link(from, to).unwrap();
        }),
        ("symlinked through a relative path", |from, to| {
            std::fs::remove_file(to).unwrap();
            std::os::unix::fs::symlink(from.file_name().unwrap(), to).unwrap();
        }),
    ];
    for (i, (how, swap)) in swaps.into_iter().enumerate() {
        // `wide`'s kept file, with its wider token, planted as `orders`'s.
        let _ = std::fs::remove_file(&orders_file);
        std::fs::write(&orders_file, "{}").unwrap();
        swap(&wide_file, &orders_file);
        let s = t.sidecar().await;
        let path = format!("/swapped/{i}");
        let sent = t.sent_through(&s, "orders", &path).await;
        s.stop().await;
        assert_ne!(
            sent, wide_token,
            "{how}: the other credential's token was used"
        );
        let claims = claims_of(&sent);
        assert_eq!(claims["client_id"], "reader", "{how}: {claims}");
        assert_eq!(claims["scope"], "orders:read", "{how}: {claims}");
        // The wide credential's own file was not clobbered through the link.
        let wide_kept = std::fs::read_to_string(&wide_file).unwrap();
        assert!(wide_kept.contains(&wide_token), "{how}: {wide_kept}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = Cached::with_admin(r#""orders:read", "admin""#).await;
    let first = t.sidecar().await;
    let kept = t.sent_through(&first, "orders", "/first").await;
    first.stop().await;
    let (orders_file, _) = t.files(&kept);
    for (i, mode) in [0o777, 0o1777, 0o775, 0o757, 0o730].into_iter().enumerate() {
        std::fs::set_permissions(t.cache(), std::fs::Permissions::from_mode(mode)).unwrap();
        let s = t.sidecar().await;
        let sent = t.sent_through(&s, "orders", &format!("/exposed/{i}")).await;
        s.stop().await;
        assert_ne!(
            sent, kept,
            "{mode:o}: the kept token was read from an exposed directory"
        );
        assert_eq!(claims_of(&sent)["client_id"], "reader");
        // Nor was the fresh token written there.
        let on_disk = std::fs::read_to_string(&orders_file).unwrap();
        assert!(
            on_disk.contains(&kept) && !on_disk.contains(&sent),
            "{mode:o}"
        );
    }
    // Private again: used again.
    std::fs::set_permissions(t.cache(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let s = t.sidecar().await;
    assert_eq!(t.sent_through(&s, "orders", "/private").await, kept);
    s.stop().await;
}

/// Whether this test process may give files to another user (`chown`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `nobody`: another user, for entries an attacker would own.
const NOBODY: u32 = 65534;

/// One way to reach the kept cache directory: what to build under the test's
/// private directory `base` (the kept directory is `real`), returning the
/// configured `token_cache_dir` and where `real` was moved to, if it was.
type Way =
    fn(&std::path::Path, &std::path::Path) -> (std::path::PathBuf, Option<std::path::PathBuf>);

/// Move `real` into `dir` (created with `mode`) as `tokens`.
fn move_into(real: &std::path::Path, dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("tokens");
    std::fs::rename(real, &to).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

/// As OpenSSH's `StrictModes`: the kept token is used only when every
/// directory on the way to `token_cache_dir` is ours or root's and writable by
/// no one else (or sticky, as `/tmp`, with our entry in it), and every
/// symbolic link on the way is ours or root's. Otherwise it is neither read
/// nor overwritten, and the credential fetches its own token. Layouts with
/// another user's entries need root (`chown` to `nobody`); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cache_directory_reached_through_an_unsafe_way_is_not_used() {
    use std::os::unix::fs::{lchown, symlink};
    let t = Cached::with_admin(r#""orders:read""#).await;
    let first = t.sidecar().await;
    let kept = t.sent_through(&first, "orders", "/first").await;
    first.stop().await;
    let (orders_file, _) = t.files(&kept);
    let real = t.cache();
    let ways: Vec<(&str, bool, bool, Way)> = vec![
        // (what, needs root, kept token used, layout)
        ("a world-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-1"), 0o777);
            (to.clone(), Some(to))
        }),
        ("a group-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-2"), 0o775);
            (to.clone(), Some(to))
        }),
        ("an others-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-3"), 0o757);
            (to.clone(), Some(to))
        }),
        ("a setgid world-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-4"), 0o2777);
            (to.clone(), Some(to))
        }),
        ("a world-writable grandparent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-5/private"), 0o700);
            std::fs::set_permissions(
                b.join("open-5"),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            (to.clone(), Some(to))
        }),
        (
            "our link, to a directory in a world-writable one",
            false,
            false,
            |b, r| {
                let to = move_into(r, &b.join("open-6"), 0o777);
                symlink(&to, b.join("link-6")).unwrap();
                (b.join("link-6"), Some(to))
            },
        ),
        (
            "our link on the way, to a world-writable directory",
            false,
            false,
            |b, r| {
                let to = move_into(r, &b.join("open-7"), 0o777);
                symlink(b.join("open-7"), b.join("via-7")).unwrap();
                (b.join("via-7/tokens"), Some(to))
            },
        ),
        (
            "a sticky parent (as /tmp), our directory",
            false,
            true,
            |b, r| {
                let to = move_into(r, &b.join("sticky-8"), 0o1777);
                (to.clone(), Some(to))
            },
        ),
        ("our link at the configured path", false, true, |b, r| {
            symlink(r, b.join("link-9")).unwrap();
            (b.join("link-9"), None)
        }),
        (
            "our relative link in a sticky directory",
            false,
            true,
            |b, _| {
                std::fs::create_dir(b.join("sticky-10")).unwrap();
                std::fs::set_permissions(
                    b.join("sticky-10"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                )
                .unwrap();
                symlink("../tokens", b.join("sticky-10/link")).unwrap();
                (b.join("sticky-10/link"), None)
            },
        ),
        (
            "another user's link at the configured path",
            true,
            false,
            |b, r| {
                symlink(r, b.join("link-11")).unwrap();
                lchown(b.join("link-11"), Some(NOBODY), None).unwrap();
                (b.join("link-11"), None)
            },
        ),
        (
            "another user's link in a sticky directory (as /tmp)",
            true,
            false,
            |b, r| {
                std::fs::create_dir(b.join("sticky-12")).unwrap();
                std::fs::set_permissions(
                    b.join("sticky-12"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                )
                .unwrap();
                symlink(r, b.join("sticky-12/link")).unwrap();
                lchown(b.join("sticky-12/link"), Some(NOBODY), None).unwrap();
                (b.join("sticky-12/link"), None)
            },
        ),
        ("another user's link on the way", true, false, |b, _| {
            symlink(b, b.join("via-13")).unwrap();
            lchown(b.join("via-13"), Some(NOBODY), None).unwrap();
            (b.join("via-13/tokens"), None)
        }),
        (
            "a parent of another user (mode 755)",
            true,
            false,
            |b, r| {
                let to = move_into(r, &b.join("theirs-14"), 0o755);
                lchown(b.join("theirs-14"), Some(NOBODY), None).unwrap();
                (to.clone(), Some(to))
            },
        ),
        (
            "another user's directory in a sticky parent",
            true,
            false,
            |b, r| {
                let to = move_into(r, &b.join("sticky-15"), 0o1777);
                lchown(&to, Some(NOBODY), None).unwrap();
                (to.clone(), Some(to))
            },
        ),
    ];
    let mut skipped = Vec::new();
    for (i, (what, needs_root, used, way)) in ways.into_iter().enumerate() {
        if needs_root && !is_root() {
            skipped.push(what);
            continue;
        }
        let (configured, moved) = way(t.dir.path(), &real);
        let s = t.sidecar_at(&configured).await;
        let sent = t.sent_through(&s, "orders", &format!("/way/{i}")).await;
        s.stop().await;
        if let Some(at) = moved {
            std::fs::rename(at, &real).unwrap();
        }
        if is_root() {
            lchown(&real, Some(0), None).unwrap();
        }
        let on_disk = std::fs::read_to_string(&orders_file).unwrap();
        if used {
            assert_eq!(sent, kept, "{what}: the kept token was not used");
        } else {
            assert_ne!(sent, kept, "{what}: the kept token was read");
            assert_eq!(claims_of(&sent)["client_id"], "reader", "{what}");
            assert!(
                on_disk.contains(&kept) && !on_disk.contains(&sent),
                "{what}: the fresh token was written there"
            );
        }
    }
    if !skipped.is_empty() {
        eprintln!("not root, skipped (need chown): {skipped:?}");
    }
    // Back in place: used again.
    let s = t.sidecar().await;
    assert_eq!(t.sent_through(&s, "orders", "/back").await, kept);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_cache_file_is_not_read_whole() {
    let t = Cached::with_admin(r#""orders:read""#).await;
    let first = t.sidecar().await;
    let kept = t.sent_through(&first, "orders", "/first").await;
    first.stop().await;
    let (orders_file, _) = t.files(&kept);
    // 512 MiB, sparse: no disk, but reading it whole would take the memory.
    let huge = t.dir.path().join("huge.json");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(512 * 1024 * 1024).unwrap();
    drop(f);
    let before = peak_rss_kib();
    for (i, how) in ["symlink", "in place"].into_iter().enumerate() {
        std::fs::remove_file(&orders_file).unwrap();
        if how == "symlink" {
            std::os::unix::fs::symlink(&huge, &orders_file).unwrap();
        } else {
            use std::os::unix::fs::OpenOptionsExt as _;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&orders_file)
                .unwrap();
            f.set_len(512 * 1024 * 1024).unwrap();
        }
        let s = t.sidecar().await;
        let sent = t.sent_through(&s, "orders", &format!("/huge/{i}")).await;
        s.stop().await;
        assert_eq!(claims_of(&sent)["client_id"], "reader", "{how}");
        assert_ne!(sent, kept, "{how}");
    }
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < 128 * 1024, "peak memory grew by {grew} KiB");
}

// ---------------------------------------------------------------------------
// Logs

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
    let deadline = tokio::time::Instant::now() + LONG;
    while fetches().await < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "too few JWKS fetches"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines(), 1);
    let line = run.wait_for_log("JWKS keys not used", 1).await;
    assert_eq!(line["skipped"], 10_000, "{line}");
    assert!(line.to_string().len() < 2_000, "{line}");
    // The set changes (one unusable key less): one more line, then quiet again.
    keys.remove(0);
    *jwks.lock().unwrap() = serde_json::json!({ "keys": keys }).to_string();
    run.wait_for_log("JWKS keys not used", 2).await;
    let seen = fetches().await;
    while fetches().await < seen + 3 {
        assert!(
            tokio::time::Instant::now() < deadline + LONG,
            "too few JWKS fetches"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines(), 2);
    let total = run.lines.lock().unwrap().len();
    assert!(total < 1_000, "{total} log lines");
}
