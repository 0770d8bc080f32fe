//! The config watcher: a file rewritten in place under steady traffic is
//! never applied half written, and an emptied one only by SIGHUP.

use super::*;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::config::quote;
use support::echo::Echo;
use support::http::client;
use support::process::Running;
use support::{LONG, until};

/// An inbound sidecar config: `/orders/*` needs `orders:read`, `/admin/*`
/// needs `admin`, `/marker-N/*` is public (tells which version is applied).
fn watched_config(idp: &Issuer, echo: &Echo, marker: usize) -> String {
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

/// GET `url` (connections refused count as not yet) until it answers `want`.
async fn until_status(url: &str, want: u16) {
    until(LONG, &format!("{url} to answer {want}"), async || {
        let got = client().get(url).send().await.map(|r| r.status().as_u16());
        if got.as_ref().ok() == Some(&want) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_rewritten_in_place_is_never_applied_half_written() {
    let idp = idp(None).await;
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, watched_config(&idp, &echo, 0)).unwrap();
    let run = Running::start(&path);
    let inbound = run.addr_of("inbound listener ready").await;
    run.ready().await;
    let token = idp.access_token("reader", SECRET, ORDERS).await;
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
    let idp = idp(None).await;
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, watched_config(&idp, &echo, 0)).unwrap();
    let run = Running::start(&path);
    let inbound = run.addr_of("inbound listener ready").await;
    let admin = run.ready().await;
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
    until(LONG, "the listener to go", async || {
        client().get(&marker).send().await.is_err()
    })
    .await;
}
