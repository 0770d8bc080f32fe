//! Many credentials on one token endpoint, seen from that endpoint: start-up
//! requests come at `token_requests_per_second` (after a burst of 10), a
//! request waiting for a token moves its credential to the front of the line
//! but the pace holds, and the first refreshes spread out instead of coming
//! back as a wave.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::Duration;
use support::config::{Cred, SidecarConfig};
use support::echo::Echo;
use support::http::get;
use support::sidecar::Sidecar;
use support::token_server::TokenServer;
use support::{LONG, until};

const BURST: usize = 10;
use tokio::time::Instant;

/// `n` credentials `c00`, `c01`… on `idp`, each its own client id.
fn credentials(mut config: SidecarConfig, idp: &TokenServer, n: usize) -> SidecarConfig {
    for i in 0..n {
        config = config.credential(
            Cred::new(&format!("c{i:02}"), &idp.url()).text("client_id", &format!("client-{i}")),
        );
    }
    config
}

/// The most requests in any window of `width` (sliding, starting at a request).
fn densest(times: &[Instant], width: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < width)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn start_up_requests_come_at_the_endpoints_pace() {
    let idp = TokenServer::start().await;
    let config = credentials(
        SidecarConfig::new().top("token_requests_per_second = 20"),
        &idp,
        40,
    );
    let sidecar = Sidecar::start(&config).await;
    until(LONG, "all 40 credentials ready", async || {
        get(&sidecar.admin_url("/readyz")).await.0 == 200
    })
    .await;
    let times: Vec<Instant> = idp.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 40, "one token request per credential");
    // A burst of 10, then one every 50 ms: 30 more take at least 1.5 s.
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    assert!(
        last - first >= Duration::from_millis(1400),
        "40 requests came within {:?}: a burst",
        last - first
    );
    let peak = densest(&times, Duration::from_secs(1));
    assert!(
        peak <= 31,
        "{peak} requests within one second (pace 20/s + burst 10)"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn a_waiting_request_does_not_wait_its_credentials_turn() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    // At one request a second, c39's turn comes after half a minute, far past
    // how long a request waits for a token (timeout + 1 s = 11 s).
    let config = credentials(
        SidecarConfig::new().top("token_requests_per_second = 1"),
        &idp,
        40,
    )
    .outbound("orders", &echo.url(), "c39");
    let sidecar = Sidecar::start(&config).await;
    let (status, body) = get(&format!("{}/x", sidecar.outbound("orders"))).await;
    assert_eq!(status, 200, "{body}");
    let seen = echo.seen();
    assert_eq!(seen.len(), 1);
    let asked = idp.count();
    assert!(
        asked < 40,
        "the pace was kept for the others: {asked} requests"
    );
    sidecar.stop().await;
}

/// Which credential (`client-N`) a recorded token request came from
/// (client_secret_basic: the client id is in the Authorization header).
fn client_of(r: &support::token_server::Recorded) -> String {
    use base64::Engine as _;
    let basic = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&decoded);
    text.split(':').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn requests_at_start_go_first_but_keep_the_pace() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    // 30 credentials at 4/s; the app calls c20..c29 as the sidecar starts:
    // in line, they come after c10..c19.
    let mut config = credentials(
        SidecarConfig::new().top("token_requests_per_second = 4"),
        &idp,
        30,
    );
    for i in 20..30 {
        config = config.outbound(&format!("l{i}"), &echo.url(), &format!("c{i:02}"));
    }
    let sidecar = Sidecar::start(&config).await;
    let calls = (20..30).map(|i| {
        let url = format!("{}/x", sidecar.outbound(&format!("l{i}")));
        async move { get(&url).await }
    });
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(echo.seen().len(), 10);
    let mut requests = idp.requests();
    requests.sort_by_key(|r| r.at);
    let times: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    let peak = densest(&times, Duration::from_millis(900));
    assert!(
        peak <= 15,
        "{peak} token requests within 0.9 s: the calls brought the burst back (pace 4/s + burst 10)"
    );
    // The credentials called went before c10..c19, nobody waited for (but
    // the one or two whose turn came before the calls did).
    let order: Vec<String> = requests.iter().map(client_of).collect();
    let called = |c: &String| {
        c.strip_prefix("client-")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 20)
    };
    let last_called = order.iter().rposition(called).unwrap();
    let idle_before = order[BURST..last_called]
        .iter()
        .filter(|c| !called(c))
        .count();
    assert!(idle_before <= 2, "order of token requests: {order:?}");
    sidecar.stop().await;
}

#[tokio::test]
async fn first_refreshes_spread_over_the_refresh_period() {
    let idp = TokenServer::start().await;
    // 10 s tokens, refreshed at 8 s ± 5%: without spreading, 20 credentials
    // started together all refresh within about one second.
    idp.set_ttl(10);
    let config = credentials(SidecarConfig::new(), &idp, 20);
    let sidecar = Sidecar::start(&config).await;
    let refreshes = until(LONG, "every credential refreshed once", async || {
        let requests = idp.requests();
        let mut per_client = std::collections::HashMap::<String, Vec<Instant>>::new();
        for r in &requests {
            // client_secret_basic: the client id is in the Authorization header.
            let client = r
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            per_client.entry(client).or_default().push(r.at);
        }
        let second: Vec<Instant> = per_client
            .values()
            .filter_map(|times| times.get(1).copied())
            .collect();
        (per_client.len() == 20 && second.len() == 20).then_some(second)
    })
    .await;
    let first = *refreshes.iter().min().unwrap();
    let last = *refreshes.iter().max().unwrap();
    assert!(
        last - first >= Duration::from_secs(3),
        "20 first refreshes within {:?}: a wave",
        last - first
    );
    sidecar.stop().await;
}
