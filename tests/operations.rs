//! Operating the sidecar as a platform team does: configuration reloads (SIGHUP
//! and a changed file) under steady traffic with no failed request, an invalid
//! reload that keeps the running config, SIGTERM under load (readiness first, no
//! request cut, exit 0), and the listener limits (slowloris, connection cap,
//! header size). The binary runs as a child process where signals matter.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::config::{Cred, SECRET, SidecarConfig};
use support::echo::Echo;
use support::http::{client, wait_for_status};
use support::process::Running;
use support::sidecar::Sidecar;
use support::token_server::TokenServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(20);

/// Replace `path` the way a ConfigMap update or an editor does: write a new
/// file beside it, then rename it over.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Requests in a loop until stopped: how many, and how many failed.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(url: String) -> Self {
        let stop: Arc<AtomicBool> = Arc::default();
        let (sent, failed): (Arc<AtomicU64>, Arc<AtomicU64>) = (Arc::default(), Arc::default());
        let (s, n, f) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            let c = client();
            while !s.load(Ordering::Relaxed) {
                let ok = matches!(c.get(&url).send().await, Ok(r) if r.status() == 200);
                n.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Traffic {
            stop,
            sent,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn until_seen(echo: &Echo, path_start: &str) {
    support::until(LONG, path_start, async || {
        echo.seen().iter().any(|s| s.uri.starts_with(path_start))
    })
    .await;
}

#[tokio::test]
async fn reloads_apply_under_traffic_without_a_failed_request() {
    let idp = TokenServer::start().await;
    let (a, b) = (Echo::start().await, Echo::start().await);
    let config = |upstream: &str, extra: &str| {
        SidecarConfig::new()
            .credential(Cred::new("orders", &idp.url()))
            .outbound("orders", upstream, "orders")
            .raw(extra)
            .toml()
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, config(&format!("{}/a", a.url()), "")).unwrap();
    let run = Running::start(&path);
    let outbound = run.addr_of("outbound listener ready").await;
    let admin = run.addr_of("admin listener ready").await;
    wait_for_status(&format!("http://{admin}/readyz"), 200, LONG).await;
    let traffic = Traffic::start(format!("http://{outbound}/t"));
    until_seen(&a, "/a/t").await;

    // SIGHUP: the route now goes to B. (Writing the file is seen by the watch
    // too; a reload by SIGHUP must happen either way.)
    let reloads = |trigger: &str| run.count_logs("configuration reloaded", "trigger", trigger);
    std::fs::write(&path, config(&format!("{}/b", b.url()), "")).unwrap();
    run.signal("-HUP");
    support::until(LONG, "a reload by SIGHUP", async || reloads("SIGHUP") == 1).await;
    until_seen(&b, "/b/t").await;

    // A changed file alone: back to A, and a second listener appears.
    let by_file = reloads("config file changed");
    replace_file(
        &path,
        &config(
            &format!("{}/a2", a.url()),
            &format!(
                "[[outbound]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}/extra\"\ncredential = \"orders\"\n",
                b.url()
            ),
        ),
    );
    support::until(LONG, "a reload by the file change", async || {
        reloads("config file changed") > by_file
    })
    .await;
    until_seen(&a, "/a2/t").await;
    let extra = run.wait_for_log("outbound listener ready", 2).await;
    let (status, _) =
        support::http::get(&format!("http://{}/x", extra["addr"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    until_seen(&b, "/extra/x").await;

    // An invalid config: refused, every problem logged, the old one keeps serving.
    std::fs::write(
        &path,
        "[[outbound]]\nname = \"orders\"\nupstream = \"not a url\"\n",
    )
    .unwrap();
    run.signal("-HUP");
    let refused = run
        .wait_for_log("reload refused; the running configuration is kept", 1)
        .await;
    assert!(refused["problems"].as_u64().unwrap() >= 2, "{refused}");
    let before = a.seen().len();
    support::until(LONG, "traffic after the refused reload", async || {
        a.seen().len() > before + 5
    })
    .await;
    let (_, metrics) = support::http::get(&format!("http://{admin}/metrics")).await;
    // (The write is seen by the file watch as well as by SIGHUP: one or two.)
    assert!(
        support::metric(&metrics, "m2m_config_reloads_total{outcome=\"error\"}") >= 1,
        "{metrics}"
    );
    assert!(support::metric(&metrics, "m2m_config_reloads_total{outcome=\"success\"}") >= 2);

    let (sent, failed) = traffic.finish().await;
    assert!(sent > 20, "{sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert_eq!(idp.count(), 1, "the unchanged credential kept its token");
    let logs = run.lines.lock().unwrap().join("\n");
    assert!(!logs.contains(SECRET), "no secret in the logs");
    assert!(!logs.contains("tok-1"), "no token in the logs");
    // One access line per request, parseable, without the query string.
    let access: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["target"] == "access")
        .collect();
    assert!(
        access.len() as u64 >= sent / 2,
        "{} access lines",
        access.len()
    );
    let line = &access[0];
    for field in [
        "listener",
        "method",
        "path",
        "status",
        "latency_ms",
        "upstream",
    ] {
        assert!(!line[field].is_null(), "{field} in {line}");
    }
}

#[tokio::test]
async fn sigterm_flips_readiness_first_and_cuts_no_request() {
    let idp = TokenServer::start().await;
    let echo = Echo::start().await;
    let config = SidecarConfig::new()
        .top("drain_grace = \"2s\"")
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders");
    let f = support::process::write_config(config.toml());
    let (mut run, outbound, admin) = Running::start_ready(f.path()).await;

    // A response in flight: the upstream holds all but its first chunk.
    let mut slow = client()
        .get(format!("http://{outbound}/stream-out/200000"))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    let first = slow.chunk().await.unwrap().unwrap();
    run.signal("-TERM");
    // Readiness turns first, while the listener still accepts (drain_grace).
    wait_for_status(&format!("http://{admin}/readyz"), 503, LONG).await;
    let (status, _) = support::http::get(&format!("http://{outbound}/during-grace")).await;
    assert_eq!(status, 200, "accepted during the grace period");
    // The in-flight response completes.
    let mut total = first.len();
    loop {
        echo.release();
        match tokio::time::timeout(LONG, slow.chunk()).await.unwrap() {
            Ok(Some(c)) => total += c.len(),
            Ok(None) => break,
            Err(e) => panic!("the in-flight response was cut: {e}"),
        }
    }
    assert_eq!(total, 200000);
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = run.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(
        TcpStream::connect(&outbound).await.is_err(),
        "no new connections after exit"
    );
}

async fn limited(limits: &str) -> (Sidecar, Echo, TokenServer) {
    let idp = TokenServer::start().await;
    let echo = Echo::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders")
        .raw(&format!("[limits]\n{limits}"));
    let sidecar = Sidecar::start(&config).await;
    wait_for_status(&sidecar.admin_url("/readyz"), 200, LONG).await;
    (sidecar, echo, idp)
}

/// Read until the peer closes the connection (bounded); what it sent.
async fn read_to_close(c: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the connection was not closed");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let (sidecar, _echo, _idp) = limited("header_read_timeout = \"1s\"").await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        .await
        .unwrap();
    // Others are served meanwhile.
    let (status, _) = support::http::get(&format!("{}/fast", sidecar.outbound("orders"))).await;
    assert_eq!(status, 200);
    let answer = read_to_close(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn the_connection_cap_holds() {
    let (sidecar, _echo, _idp) = limited("max_connections = 2").await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    let url = sidecar.outbound("orders");
    // Two connections held open (a request each, kept alive).
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("GET /held/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    // A third is closed at once.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(read_to_close(&mut third).await, "");
    let (_, metrics) = support::http::get(&sidecar.admin_url("/metrics")).await;
    assert!(
        support::metric(
            &metrics,
            "m2m_listener_refused_connections_total{listener=\"orders\"}"
        ) >= 1,
        "{metrics}"
    );
    // One closed: room for a new connection again.
    drop(held.pop());
    support::http::until_ok(&reqwest::Client::new(), &format!("{url}/again"), LONG).await;
    sidecar.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let (sidecar, echo, _idp) = limited("max_header_bytes = 16384").await;
    let resp = client()
        .get(format!("{}/big", sidecar.outbound("orders")))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert!(echo.seen().is_empty());
    let resp = client()
        .get(format!("{}/small", sidecar.outbound("orders")))
        .header("x-small", "a".repeat(8_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sidecar.stop().await;
}

fn load(config: &SidecarConfig) -> m2m_sidecar::config::Config {
    m2m_sidecar::config::load_str(config.toml(), m2m_sidecar::config::Format::Toml).unwrap()
}

#[tokio::test]
async fn a_reload_adds_and_removes_credentials_and_listeners() {
    let idp = TokenServer::start().await;
    let echo = Echo::start().await;
    let base = || {
        SidecarConfig::new()
            .credential(Cred::new("orders", &idp.url()))
            .outbound("orders", &echo.url(), "orders")
    };
    let sidecar = Sidecar::start(&base()).await;
    wait_for_status(&sidecar.admin_url("/readyz"), 200, LONG).await;
    let orders = sidecar.handle.outbound_addr("orders").unwrap();

    // Add a credential, a forward proxy and an inbound listener.
    let key = support::jwt::TestKey::es256("k");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, support::jwt::jwks(&[&key])).unwrap();
    let bigger = base()
        .credential(Cred::new("stock", &idp.url()))
        .raw(&format!(
            "[forward_proxy]\nlisten = \"127.0.0.1:0\"\n[[forward_proxy.routes]]\nhost = \"localhost\"\ncredential = \"stock\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\nissuer = \"https://issuer.test/\"\njwks_file = {}\naudiences = [\"https://orders.example.com\"]\ndefault = \"authenticated\"\n",
            echo.url(),
            support::config::quote(jwks.to_str().unwrap())
        ));
    let changes = sidecar.handle.reload(load(&bigger)).await.unwrap();
    assert!(
        changes.iter().any(|c| c == "credential stock: added"),
        "{changes:?}"
    );
    let addrs = sidecar.handle.addresses().await;
    let (proxy, inbound) = (addrs.forward_proxy.unwrap(), addrs.inbound.unwrap());
    assert_eq!(
        addrs.outbound,
        vec![("orders".to_owned(), orders)],
        "kept in place"
    );
    wait_for_status(&sidecar.admin_url("/readyz"), 200, LONG).await;
    let (_, ready) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
    assert_eq!(ready["credentials"]["stock"]["state"], "valid", "{ready}");
    let via_proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
        .build()
        .unwrap();
    let resp = via_proxy
        .get(format!("http://localhost:{}/via-proxy", echo.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = key.sign(
        &key.header(),
        &support::jwt::claims("https://issuer.test/", "https://orders.example.com", ""),
    );
    let resp = client()
        .get(format!("http://{inbound}/in"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A reload that cannot bind (the admin port is taken) changes nothing.
    let clash = base().raw(&format!(
        "[[outbound]]\nname = \"clash\"\nlisten = \"{}\"\nupstream = \"{}\"\ncredential = \"orders\"\n",
        sidecar.handle.admin_addr,
        echo.url()
    ));
    let err = sidecar.handle.reload(load(&clash)).await.unwrap_err();
    assert!(err.contains("cannot listen"), "{err}");
    assert_eq!(sidecar.handle.addresses().await.inbound, Some(inbound));

    // Back to the base: the extra credential and listeners go away.
    let changes = sidecar.handle.reload(load(&base())).await.unwrap();
    for want in [
        "credential stock: removed",
        "forward_proxy: removed",
        "inbound: removed",
    ] {
        assert!(changes.iter().any(|c| c == want), "{want} in {changes:?}");
    }
    let (_, ready) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
    assert!(ready["credentials"]["stock"].is_null(), "{ready}");
    assert!(ready["inbound"].is_null(), "{ready}");
    let deadline = tokio::time::Instant::now() + LONG;
    while TcpStream::connect(inbound).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbound still accepts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = support::http::get(&format!("http://{orders}/still")).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
}

/// A ConfigMap volume as kubelet lays it out: `sidecar.toml` → `..data/sidecar.toml`,
/// `..data` → a timestamped directory; an update writes a new directory and
/// renames a `..data_tmp` symlink over `..data`.
fn configmap_write(dir: &std::path::Path, generation: u32, text: &str) {
    use std::os::unix::fs::symlink;
    let versioned = format!("..2026_11_28_{generation}");
    std::fs::create_dir(dir.join(&versioned)).unwrap();
    std::fs::write(dir.join(&versioned).join("sidecar.toml"), text).unwrap();
    symlink(&versioned, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if generation == 0 {
        symlink("..data/sidecar.toml", dir.join("sidecar.toml")).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_update_is_picked_up() {
    let idp = TokenServer::start().await;
    let (a, b) = (Echo::start().await, Echo::start().await);
    let config = |upstream: &str| {
        SidecarConfig::new()
            .credential(Cred::new("orders", &idp.url()))
            .outbound("orders", upstream, "orders")
            .toml()
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    configmap_write(dir.path(), 0, &config(&format!("{}/a", a.url())));
    let run = Running::start(&dir.path().join("sidecar.toml"));
    let outbound = run.addr_of("outbound listener ready").await;
    let admin = run.addr_of("admin listener ready").await;
    wait_for_status(&format!("http://{admin}/readyz"), 200, LONG).await;
    let traffic = Traffic::start(format!("http://{outbound}/cm"));
    until_seen(&a, "/a/cm").await;
    configmap_write(dir.path(), 1, &config(&format!("{}/b", b.url())));
    until_seen(&b, "/b/cm").await;
    let (sent, failed) = traffic.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} failed");
    assert!(run.count_logs("configuration reloaded", "trigger", "config file changed") >= 1);
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    for (setting, want) in [("access_log = true", 1), ("access_log = false", 0)] {
        let config = SidecarConfig::new()
            .top(setting)
            .credential(Cred::new("orders", &idp.url()))
            .outbound("orders", &echo.url(), "orders");
        let f = support::process::write_config(config.toml());
        let (mut run, outbound, _admin) = Running::start_ready(f.path()).await;
        let (status, _) = support::http::get(&format!("http://{outbound}/logged?secret=q")).await;
        assert_eq!(status, 200);
        let exit = tokio::task::spawn_blocking(move || {
            let s = run.terminate();
            (s, run)
        })
        .await
        .unwrap();
        let (status, run) = exit;
        assert_eq!(status.code(), Some(0));
        let lines = run.lines.lock().unwrap().clone();
        let access: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .collect();
        assert_eq!(access.len(), want, "{setting}: {lines:?}");
        if let Some(a) = access.first() {
            assert_eq!(a["path"], "/logged", "no query string: {a}");
            assert_eq!(a["status"], 200);
            assert_eq!(a["listener"], "orders");
        }
    }
}

#[tokio::test]
async fn a_reload_whose_new_keys_do_not_load_keeps_the_running_inbound() {
    let echo = Echo::start().await;
    let key = support::jwt::TestKey::es256("k");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, support::jwt::jwks(&[&key])).unwrap();
    let config = |jwks_file: &str| {
        SidecarConfig::new().raw(&format!(
            "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\nissuer = \"https://issuer.test/\"\njwks_file = {}\njwks_timeout = \"200ms\"\naudiences = [\"https://orders.example.com\"]\ndefault = \"authenticated\"\n",
            echo.url(),
            support::config::quote(jwks_file)
        ))
    };
    let sidecar = Sidecar::start(&config(jwks.to_str().unwrap())).await;
    wait_for_status(&sidecar.admin_url("/readyz"), 200, LONG).await;
    let url = format!("http://{}/in", sidecar.handle.inbound_addr.unwrap());
    let token = key.sign(
        &key.header(),
        &support::jwt::claims("https://issuer.test/", "https://orders.example.com", ""),
    );
    let ok = || async {
        client()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(ok().await, 200);
    // A typo in the key source: no keys, so the running inbound stays.
    let changes = sidecar
        .handle
        .reload(load(&config("/nonexistent/jwks.json")))
        .await
        .unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("inbound: not changed")),
        "{changes:?}"
    );
    assert_eq!(ok().await, 200, "still verified with the running keys");
    wait_for_status(&sidecar.admin_url("/readyz"), 200, LONG).await;
    // Fixed: the next reload applies.
    let jwks2 = dir.path().join("jwks2.json");
    std::fs::write(&jwks2, support::jwt::jwks(&[&key])).unwrap();
    let changes = sidecar
        .handle
        .reload(load(&config(jwks2.to_str().unwrap())))
        .await
        .unwrap();
    assert!(
        changes.iter().any(|c| c == "inbound: changed"),
        "{changes:?}"
    );
    assert_eq!(ok().await, 200);
    sidecar.stop().await;
}
