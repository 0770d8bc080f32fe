//! Reloads: by SIGHUP and by a changed file (a ConfigMap update too) under
//! traffic with no failed request; an invalid reload keeps the running
//! config; credentials and listeners added and removed; keys that do not
//! load keep the running inbound.

use super::*;

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
    let admin = run.ready().await;
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

    an_invalid_config_is_refused(&run, &path, &a, &admin).await;

    let (sent, failed) = traffic.finish().await;
    assert!(sent > 20, "{sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert_eq!(idp.count(), 1, "the unchanged credential kept its token");
    logs_hold_no_secret_and_an_access_line_per_request(&run, sent);
}

/// An invalid config: refused, every problem logged, the old one keeps serving.
async fn an_invalid_config_is_refused(
    run: &Running,
    path: &std::path::Path,
    a: &Echo,
    admin: &str,
) {
    std::fs::write(
        path,
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
}

/// No secret or token in the logs; one access line per request, parseable,
/// without the query string.
fn logs_hold_no_secret_and_an_access_line_per_request(run: &Running, sent: u64) {
    let logs = run.lines.lock().unwrap().join("\n");
    assert!(!logs.contains(SECRET), "no secret in the logs");
    assert!(!logs.contains("tok-1"), "no token in the logs");
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
    run.ready().await;
    let traffic = Traffic::start(format!("http://{outbound}/cm"));
    until_seen(&a, "/a/cm").await;
    configmap_write(dir.path(), 1, &config(&format!("{}/b", b.url())));
    until_seen(&b, "/b/cm").await;
    let (sent, failed) = traffic.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} failed");
    assert!(run.count_logs("configuration reloaded", "trigger", "config file changed") >= 1);
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
    sidecar.ready().await;
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
    sidecar.ready().await;
    let (_, ready) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
    assert_eq!(ready["credentials"]["stock"]["state"], "valid", "{ready}");
    the_new_listeners_serve(&echo, &key, proxy, inbound).await;

    // A reload that cannot bind (the admin port is taken) changes nothing.
    let clash = base().raw(&format!(
        "[[outbound]]\nname = \"clash\"\nlisten = \"{}\"\nupstream = \"{}\"\ncredential = \"orders\"\n",
        sidecar.handle.admin_addr,
        echo.url()
    ));
    let err = sidecar.handle.reload(load(&clash)).await.unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
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
    until(LONG, "the inbound listener to close", async || {
        TcpStream::connect(inbound).await.is_err()
    })
    .await;
    let (status, _) = support::http::get(&format!("http://{orders}/still")).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
}

/// The forward proxy added passes a request on; the inbound listener added
/// lets a token of `key` through.
async fn the_new_listeners_serve(
    echo: &Echo,
    key: &support::jwt::TestKey,
    proxy: std::net::SocketAddr,
    inbound: std::net::SocketAddr,
) {
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
    sidecar.ready().await;
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
    sidecar.ready().await;
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
