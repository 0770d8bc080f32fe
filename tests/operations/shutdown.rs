//! SIGTERM under load (readiness first, no request cut, exit 0), and the
//! access log.

use super::*;

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
    until_status(&format!("http://{admin}/readyz"), 503, LONG).await;
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
    let exit = run.exit(LONG).await;
    assert_eq!(exit.code(), Some(0));
    assert!(
        TcpStream::connect(&outbound).await.is_err(),
        "no new connections after exit"
    );
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
        let status = run.terminate().await;
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
