//! Caching, single flight, refresh ahead of expiry, outages, throttling and
//! early refresh, observed from outside: at the token endpoint and the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use futures_util::future::join_all;
use std::time::Duration;
use support::config::{Cred, SidecarConfig};
use support::echo::Echo;
use support::http::{client, get, get_json, until_status};
use support::sidecar::Sidecar;
use support::token_server::{Mode, TokenServer};
use support::{LONG, until};

async fn setup(idp: &TokenServer, echo: &Echo) -> Sidecar {
    setup_cred(Cred::new("orders", &idp.url()), echo).await
}

async fn setup_cred(cred: Cred, echo: &Echo) -> Sidecar {
    let config = SidecarConfig::new()
        .credential(cred)
        .outbound("orders", &echo.url(), "orders");
    Sidecar::start(&config).await
}

#[tokio::test]
async fn one_token_serves_many_requests() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    let sidecar = setup(&idp, &echo).await;
    let c = client();
    for i in 0..100 {
        let resp = c
            .get(format!("{}/r/{i}", sidecar.outbound("orders")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(idp.count(), 1);
    let seen = echo.seen();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .all(|s| s.authorization() == Some("Bearer tok-1"))
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn concurrent_cold_requests_make_one_token_request() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    // The first token takes a while, so every request arrives before it.
    idp.set_mode(Mode::IssueAfter(Duration::from_millis(700)));
    let sidecar = setup(&idp, &echo).await;
    let c = client();
    let url = sidecar.outbound("orders");
    let answers = join_all((0..500).map(|i| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.get(format!("{url}/cold/{i}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    }))
    .await;
    let ok = answers.iter().filter(|a| matches!(a, Ok(200))).count();
    assert_eq!(
        ok,
        500,
        "{:?}",
        answers
            .iter()
            .filter(|a| !matches!(a, Ok(200)))
            .take(3)
            .collect::<Vec<_>>()
    );
    assert_eq!(idp.count(), 1, "exactly one token request");
    assert!(
        echo.seen()
            .iter()
            .all(|s| s.authorization() == Some("Bearer tok-1"))
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn refreshes_before_expiry_and_never_sends_an_expired_token() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    idp.set_ttl(2);
    let sidecar = setup(&idp, &echo).await;
    let c = client();
    let url = sidecar.outbound("orders");
    // Steady traffic over several token lifetimes.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    while tokio::time::Instant::now() < until {
        let resp = c.get(format!("{url}/tick/{n}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {n}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let issued = idp.issued();
    assert!(issued.len() >= 3, "refreshed: {} tokens", issued.len());
    for s in echo.seen() {
        let auth = s.authorization().unwrap();
        let t = issued
            .iter()
            .find(|t| format!("Bearer {}", t.token) == auth)
            .expect("a token we issued");
        assert!(s.at < t.expires, "{} arrived after it expired", t.token);
    }
    // Each refresh was requested before the previous token expired.
    let requests = idp.requests();
    for (i, t) in issued.iter().enumerate().skip(1) {
        assert!(
            requests[i].at < issued[i - 1].expires,
            "token {} was fetched late",
            t.token
        );
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn outage_uses_cached_token_then_503_then_recovers() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    idp.set_ttl(3);
    let sidecar = setup(&idp, &echo).await;
    let url = format!("{}/x", sidecar.outbound("orders"));
    assert_eq!(get(&url).await.0, 200);
    idp.set_mode(Mode::Fail {
        status: 500,
        body: r#"{"error":"server_error"}"#.into(),
    });

    // The cached token keeps working while the IdP fails, until it expires.
    let mut statuses = Vec::new();
    let c = client();
    let resp = until(LONG, "the app to get something else than 200", async || {
        let resp = c.get(&url).send().await.unwrap();
        if resp.status() != 200 {
            return Ok(resp);
        }
        statuses.push(200);
        Err("200")
    })
    .await;
    assert!(statuses.len() > 5, "cached token used during the outage");
    assert_eq!(resp.status(), 503);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "token_unavailable");
    assert_eq!(body["credential"], "orders");
    assert!(body["reason"].as_str().unwrap().contains("500"), "{body}");
    // Nothing reached the upstream without a token.
    assert!(
        echo.seen()
            .iter()
            .all(|s| s.authorization() == Some("Bearer tok-1"))
    );

    idp.set_mode(Mode::Issue);
    until_status(&url, 200, LONG).await;
    sidecar.stop().await;
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    idp.set_mode(Mode::Throttle { retry_after: 3 });
    let sidecar = setup(&idp, &echo).await;
    until(LONG, "the first token request", async || idp.count() >= 1).await;
    idp.set_mode(Mode::Issue);
    until(LONG, "the retry", async || idp.count() >= 2).await;
    let r = idp.requests();
    let gap = r[1].at - r[0].at;
    // Plain backoff would retry after about 1 s.
    assert!(gap >= Duration::from_millis(2900), "retried after {gap:?}");
    sidecar.stop().await;
}

#[tokio::test]
async fn upstream_401_triggers_one_early_refresh() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    let sidecar = setup(&idp, &echo).await;
    let url = format!("{}/x", sidecar.outbound("orders"));
    assert_eq!(get(&url).await.0, 200);
    echo.reject(Some("Bearer tok-1"));
    assert_eq!(get(&url).await.0, 401, "the upstream's 401 reaches the app");
    // The very next request carries a fresh token.
    assert_eq!(get(&url).await.0, 200);
    assert_eq!(
        echo.seen().last().unwrap().authorization(),
        Some("Bearer tok-2")
    );
    assert_eq!(idp.count(), 2);
    // A second rejection within 30 s does not refresh again.
    echo.reject(Some("Bearer tok-2"));
    assert_eq!(get(&url).await.0, 401);
    assert_eq!(get(&url).await.0, 401);
    assert_eq!(idp.count(), 2);
    sidecar.stop().await;
}

#[tokio::test]
async fn readyz_flips_both_ways() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    idp.set_ttl(2);
    idp.set_mode(Mode::Fail {
        status: 401,
        body: r#"{"error":"invalid_client"}"#.into(),
    });
    let sidecar = setup(&idp, &echo).await;
    let readyz = sidecar.admin_url("/readyz");
    until(LONG, "a failed fetch", async || idp.count() >= 1).await;
    let (status, body) = get_json(&readyz).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["credentials"]["orders"]["state"], "failing");
    assert!(
        body["credentials"]["orders"]["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_client")
    );

    idp.set_mode(Mode::Issue);
    let body = sidecar.ready().await;
    assert_eq!(body["ready"], true);
    assert_eq!(body["credentials"]["orders"]["state"], "valid");
    assert!(!body.to_string().contains("tok-"), "no token in /readyz");

    // The IdP fails again: once the token expires, not ready.
    idp.set_mode(Mode::Fail {
        status: 500,
        body: "oops".into(),
    });
    let body = until_status(&readyz, 503, LONG).await;
    assert!(body.contains(r#""state":"expired""#), "{body}");
    sidecar.stop().await;
}

#[tokio::test]
async fn jwt_exp_is_used_without_expires_in() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    idp.set_mode(Mode::IssueJwt);
    idp.set_ttl(120);
    let sidecar = setup(&idp, &echo).await;
    until(LONG, "ready", async || {
        sidecar.handle.credentials[0].snapshot().valid
    })
    .await;
    let exp = sidecar.handle.credentials[0].snapshot().expires_at.unwrap();
    let left = exp.duration_since(std::time::SystemTime::now()).unwrap();
    // default_ttl is 300 s: 120 s proves the JWT's exp was read.
    assert!(
        left <= Duration::from_secs(121) && left >= Duration::from_secs(100),
        "{left:?}"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn a_rejected_token_is_used_again_while_refreshes_keep_failing() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    let sidecar = setup_cred(Cred::new("orders", &idp.url()).text("timeout", "1s"), &echo).await;
    let url = format!("{}/x", sidecar.outbound("orders"));
    assert_eq!(get(&url).await.0, 200);
    idp.set_mode(Mode::Stall);
    echo.reject(Some("Bearer tok-1"));
    // The 401 triggers a refresh that times out after 1 s; meanwhile requests wait.
    assert_eq!(get(&url).await.0, 401);
    until(LONG, "the early refresh to fail", async || {
        sidecar.handle.credentials[0]
            .snapshot()
            .last_error
            .is_some()
    })
    .await;
    // Retries keep stalling; requests no longer wait for them.
    until(LONG, "the next retry", async || idp.count() >= 3).await;
    let started = tokio::time::Instant::now();
    assert_eq!(get(&url).await.0, 401, "the old token is sent again");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "waited {:?} for a stalled refresh",
        started.elapsed()
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn lifetime_counts_from_the_request_not_the_answer() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    idp.set_ttl(4);
    idp.set_mode(Mode::IssueAfter(Duration::from_millis(1500)));
    let sidecar = setup(&idp, &echo).await;
    until(LONG, "the first token", async || {
        sidecar.handle.credentials[0].snapshot().valid
    })
    .await;
    let exp = sidecar.handle.credentials[0].snapshot().expires_at.unwrap();
    let left = exp
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        left <= Duration::from_millis(2600),
        "{left:?} left of a 4 s token that took 1.5 s to arrive"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn the_hourly_budget_holds_under_a_refresh_storm() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    // One-second tokens: a refresh every 0.8 s, and after each expiry every
    // request waits for a new one.
    idp.set_ttl(1);
    let sidecar = setup_cred(
        Cred::new("orders", &idp.url()).with("max_token_requests_per_hour", "3"),
        &echo,
    )
    .await;
    let metrics = sidecar.admin_url("/metrics");
    until(LONG, "a token request over the budget", async || {
        let _ = client()
            .get(format!("{}/storm", sidecar.outbound("orders")))
            .send()
            .await
            .unwrap();
        let text = get(&metrics).await.1;
        let over = support::metric(
            &text,
            "m2m_token_requests_over_budget_total{credential=\"orders\"}",
        );
        if over >= 1 { Ok(()) } else { Err(text) }
    })
    .await;
    assert_eq!(idp.count(), 3, "the budget holds");
    sidecar.stop().await;
}

#[tokio::test]
async fn a_restart_reuses_the_kept_token_unless_expired_or_exposed() {
    use std::os::unix::fs::PermissionsExt as _;
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tokens");
    let start = || {
        let config = SidecarConfig::new()
            .top(&format!(
                "token_cache_dir = {}",
                support::config::quote(cache.to_str().unwrap())
            ))
            .credential(Cred::new("orders", &idp.url()))
            .outbound("orders", &echo.url(), "orders");
        async move { Sidecar::start(&config).await }
    };
    let first = start().await;
    first.ready().await;
    first.stop().await;
    assert_eq!(idp.count(), 1);
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = &idp.issued()[0].token;
    assert!(
        !file.to_str().unwrap().contains(token.as_str()),
        "the file name says nothing of the token"
    );

    // Restart: the kept token is used, no token request.
    let second = start().await;
    second.ready().await;
    let resp = client()
        .get(format!("{}/after-restart", second.outbound("orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        echo.seen().pop().unwrap().authorization(),
        Some(format!("Bearer {token}").as_str())
    );
    second.stop().await;
    assert_eq!(idp.count(), 1, "no token request after the restart");

    // Readable by others: ignored, a new token is fetched.
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let third = start().await;
    third.ready().await;
    third.stop().await;
    assert_eq!(idp.count(), 2, "an exposed file is not trusted");

    // Expired: ignored too.
    let mut kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    kept["expires_at"] = (support::jwt::now() - 10).into();
    std::fs::write(file, kept.to_string()).unwrap();
    let fourth = start().await;
    fourth.ready().await;
    fourth.stop().await;
    assert_eq!(idp.count(), 3, "an expired token is not reused");
}
