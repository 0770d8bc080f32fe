//! §3: blocking revokes every earlier token for good, through a real inbound
//! sidecar that polls the revocation feed; revoked tokens leave the feed when
//! they expire, and revocation is rate-limited.

use super::*;
use support::http::{bearer_status, until_bearer_status};
use support::{LONG, until};

/// The issuer, and an inbound sidecar in front of an echo upstream that polls
/// the feed every second (both in one process).
async fn inbound_setup() -> (Iss, support::echo::Echo, String) {
    let echo = support::echo::Echo::start().await;
    let inbound = |issuer: &str| {
        format!(
            "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\nrevocations_url = {}\nrevocations_interval = \"1s\"\n[[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n",
            quote(&echo.url()),
            quote(issuer),
            quote(ORDERS),
            quote(&format!("{issuer}api/v1/revocations")),
        )
    };
    let s = Iss::around(inbound, api()).await;
    s.sidecar.ready().await;
    let url = s.sidecar.inbound("/orders/1");
    (s, echo, url)
}

/// Wait until the inbound sidecar has polled the feed after `since` (Unix s).
async fn polled_after(s: &Iss, since: u64) {
    let what = format!("a poll of the feed after {since}");
    until(LONG, &what, async || {
        let (_, text) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
        let last = support::metric(
            &text,
            "m2m_inbound_revocations_last_success_timestamp_seconds",
        );
        last > since
    })
    .await;
}

#[tokio::test]
async fn blocking_revokes_earlier_tokens_for_good_at_inbound() {
    let (s, echo, url) = inbound_setup().await;
    let root = s.mgmt_token("root").await;
    // Tokens issued before the block, in every way a client might hold one.
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(s.orders_token("billing", SECRET).await);
    }
    for t in &old {
        assert_eq!(bearer_status(&url, t).await, 200);
    }
    let (status, _, _) = s
        .call("POST", "api/v1/apps/billing/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    for t in &old {
        until_bearer_status(&url, t, 401).await;
    }
    let (status, _, _) = s
        .call("POST", "api/v1/apps/billing/unblock", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    let unblocked_at = now();
    // New tokens work at once (even in the second of the unblock)...
    let fresh = s.orders_token("billing", SECRET).await;
    until_bearer_status(&url, &fresh, 200).await;
    // ...and once the sidecar has seen the feed after the unblock, the old
    // ones are still refused: the unblock did not revive them.
    polled_after(&s, unblocked_at).await;
    let seen_before = echo.seen().len();
    for t in &old {
        let resp = client().get(&url).bearer_auth(t).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.text().await.unwrap().contains("revoked"));
        assert!(!s.active(t).await, "introspection agrees");
    }
    assert_eq!(
        echo.seen().len(),
        seen_before,
        "the upstream saw none of them"
    );
    assert!(s.active(&fresh).await);
    // The feed says so, with old fields kept for older sidecars.
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(feed["blocked_clients"], serde_json::json!([]), "{feed}");
    let nb = feed["client_not_before"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["client_id"] == "billing")
        .unwrap()["not_before"]
        .as_u64()
        .unwrap();
    assert!(nb <= unblocked_at, "{feed}");
    assert_eq!(s.app("billing").await["not_before"], nb);

    // Delete and create again under the same id: the old app's tokens stay dead.
    let before_delete = s.orders_token("billing", SECRET).await;
    assert_eq!(bearer_status(&url, &before_delete).await, 200);
    let (status, _, _) = s
        .call("DELETE", "api/v1/apps/billing", Some(&root), None)
        .await;
    assert_eq!(status, 204);
    let (status, _, v) = s
        .call(
            "POST",
            "api/v1/apps",
            Some(&root),
            Some(&json(serde_json::json!({"name": "billing", "client_id": "billing", "grants": {ORDERS: ["orders:read"]}}))),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let reborn = s
        .orders_token("billing", v["client_secret"].as_str().unwrap())
        .await;
    until_bearer_status(&url, &before_delete, 401).await;
    until_bearer_status(&url, &reborn, 200).await;
    polled_after(&s, now()).await;
    for t in old.iter().chain([&fresh, &before_delete]) {
        assert_eq!(bearer_status(&url, t).await, 401);
    }
    s.stop().await;
}

#[tokio::test]
async fn revoked_tokens_leave_the_feed_when_they_expire_and_revocation_is_rate_limited() {
    // Tokens living 2 s: entries must leave the feed and the state after that.
    let s = Iss::start(api().setting("token_ttl", &quote("2s"))).await;
    let dir = s.dir.path().to_owned();
    let t = s.orders_token("billing", SECRET).await;
    assert_eq!(s.revoke("billing", SECRET, &t).await.0, 200);
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(
        feed["revoked_tokens"].as_array().unwrap().len(),
        1,
        "{feed}"
    );
    until(
        Duration::from_secs(10),
        "the feed to drop the expired token",
        async || {
            let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
            if feed["revoked_tokens"].as_array().unwrap().is_empty() {
                Ok(())
            } else {
                Err(feed)
            }
        },
    )
    .await;
    // The next change prunes the store too.
    let root = s.mgmt_token("root").await;
    let (status, _, _) = s
        .call("POST", "api/v1/apps/billing/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    let revoked = support::store::query(&dir, "SELECT jti FROM revoked_tokens");
    assert!(revoked.is_empty(), "{revoked:?}");
    s.stop().await;

    // Self-revocation is rate-limited per app (30 in a burst).
    let s = Iss::start(api()).await;
    let mut answers = Vec::new();
    let started = std::time::Instant::now();
    for _ in 0..35 {
        let t = s.orders_token("billing", SECRET).await;
        answers.push(s.revoke("billing", SECRET, &t).await);
    }
    // One more is allowed per 6 s the burst took (a slow machine refills the
    // bucket while it runs); never fewer than 30, never all 35 on time.
    let refilled = usize::try_from(started.elapsed().as_secs() / 6).unwrap_or(usize::MAX);
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let statuses = answers.iter().map(|a| a.0).collect::<Vec<_>>();
    assert!(
        (30..=30 + refilled).contains(&ok) && ok < 35,
        "{ok} answered 200 with {refilled} refills: {statuses:?}"
    );
    assert!(answers[..30].iter().all(|a| a.0 == 200), "{statuses:?}");
    let limited = answers
        .iter()
        .rev()
        .find(|a| a.0 == 429)
        .unwrap_or_else(|| panic!("no 429: {statuses:?}"));
    assert_eq!(limited.0, 429, "{:?}", limited.2);
    assert!(limited.1.contains_key("retry-after"));
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(feed["revoked_tokens"].as_array().unwrap().len(), 30);
    // Another app is not affected.
    let ops_token = s.mgmt_token("ops").await;
    assert_eq!(s.revoke("ops", SECRET, &ops_token).await.0, 200);
    s.stop().await;
}
