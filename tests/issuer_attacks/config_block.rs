//! §3: a block in the config wins over the store, for good.

use super::*;

/// [`api`] and config apps `victim-0` … `victim-{n-1}` (orders:read, and
/// apps:read on the management API), each `blocked` as `blocked[i]` says.
fn with_victims(blocked: &[bool]) -> OrdersApi {
    blocked.iter().enumerate().fold(api(), |api, (i, b)| {
        api.app(
            App::new(&format!("victim-{i}"), SECRET)
                .blocked(*b)
                .orders(&["orders:read"])
                .mgmt(&["apps:read"]),
        )
    })
}

/// How each victim came to be named by the state (0..=4), and a control (5)
/// the config never blocks.
const HOW: [&str; 6] = [
    "grants changed at runtime",
    "blocked and unblocked at runtime",
    "secret rotated at runtime",
    "renamed at runtime",
    "blocked at runtime (and then in the config too)",
    "control: never blocked in the config",
];

/// Each victim's (orders, management) token from before the config blocked it.
type Old = [(String, String)];

/// `blocked = true` in the config blocks an app the state names too (the
/// state otherwise wins for ids both name), whatever runtime change put it
/// in the state: its token requests are refused and every token issued
/// before that start is dead (introspection, the management API, the feed),
/// permanently. The config never unblocks what the state blocked, and
/// removing `blocked` from the config again does not unblock either: only the
/// management API does, and then only new tokens work.
#[tokio::test]
async fn a_block_in_the_config_wins_over_the_state() {
    let mut s = Iss::start(with_victims(&[false; 6])).await;
    let (secrets, old) = named_by_the_state(&s).await;

    // The operator blocks 0..=4 in the config and restarts.
    let mut blocked = [true; 6];
    blocked[5] = false;
    s.api = with_victims(&blocked);
    let restarted_at = now();
    let mut s = s.restart().await;
    blocked_by_the_config(&s, &secrets, &old, restarted_at).await;

    // `blocked` taken out of the config again: the state keeps the block.
    s.api = with_victims(&[false; 6]);
    let s = s.restart().await;
    still_blocked(&s, &secrets, &old).await;
    only_the_api_unblocks(&s, &secrets, &old).await;
    s.stop().await;
}

/// Every victim named by the state as [`HOW`] says; their secrets and
/// tokens (victim-4's from before its runtime block).
async fn named_by_the_state(s: &Iss) -> (Vec<String>, Vec<(String, String)>) {
    let n = HOW.len();
    let root = s.mgmt_token("root").await;
    let mut secrets = vec![SECRET.to_owned(); n];
    let (status, _, v) = s
        .call(
            "PUT",
            "api/v1/apps/victim-0/grants",
            Some(&root),
            Some(&json(
                serde_json::json!({ORDERS: ["orders:read", "orders:write"], s.mgmt(): ["apps:read"]}),
            )),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for action in ["block", "unblock"] {
        let path = format!("api/v1/apps/victim-1/{action}");
        assert_eq!(s.call("POST", &path, Some(&root), None).await.0, 200);
    }
    let (status, _, v) = s
        .call(
            "POST",
            "api/v1/apps/victim-2/secrets",
            Some(&root),
            Some("{}"),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    secrets[2] = v["client_secret"].as_str().unwrap().to_owned();
    for id in ["victim-3", "victim-5"] {
        let (status, _, v) = s
            .call(
                "PATCH",
                &format!("api/v1/apps/{id}"),
                Some(&root),
                Some(r#"{"name":"renamed"}"#),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    // Tokens issued before the config blocks them (victim-4's before its
    // runtime block).
    let mut old = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let id = format!("victim-{i}");
        old.push((
            s.orders_token(&id, secret).await,
            token_of(s, &id, secret).await,
        ));
    }
    let (status, _, _) = s
        .call("POST", "api/v1/apps/victim-4/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    // The store names every victim now: without the fix, it would win.
    let rows = support::store::query(s.dir.path(), "SELECT client_id, blocked FROM apps");
    for (i, what) in HOW.iter().enumerate() {
        let id = format!("victim-{i}");
        let named = rows.iter().find(|r| r[0] == id.as_str());
        assert_eq!(named.unwrap()[1], i64::from(i == 4), "{what}: {id}");
    }

    (secrets, old)
}

/// After the restart: token requests refused, old tokens dead everywhere, the
/// apps blocked since the restart and in the feed; the control untouched.
async fn blocked_by_the_config(s: &Iss, secrets: &[String], old: &Old, restarted_at: u64) {
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    for (i, (what, (orders, mgmt))) in HOW.iter().zip(old).enumerate().take(5) {
        let id = format!("victim-{i}");
        for aud in [ORDERS.to_owned(), s.mgmt()] {
            let (status, v) = s.token(&id, &secrets[i], &aud).await;
            assert_eq!(
                (status, v["error"].as_str()),
                (400, Some("unauthorized_client")),
                "{what}: a token for {aud}: {v}"
            );
        }
        assert!(!s.active(orders).await, "{what}: old token active");
        assert!(!s.active(mgmt).await, "{what}: old token active");
        let (status, _, v) = s.call("GET", "api/v1/apps", Some(mgmt), None).await;
        assert_eq!(status, 401, "{what}: {v}");
        let app = s.app(&id).await;
        assert_eq!(app["blocked"], true, "{what}: {app}");
        let nb = app["not_before"].as_u64().unwrap();
        assert!(nb >= restarted_at, "{what}: not before {nb}");
        let listed = feed["blocked_clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["client_id"] == id);
        assert!(listed, "{what}: not in the feed {feed}");
    }
    // The control is untouched: its old tokens live, new ones are issued.
    let (orders, mgmt) = &old[5];
    assert!(s.active(orders).await && s.active(mgmt).await, "{}", HOW[5]);
    s.orders_token("victim-5", SECRET).await;
    assert_eq!(s.call("GET", "api/v1/apps", Some(mgmt), None).await.0, 200);
}

async fn still_blocked(s: &Iss, secrets: &[String], old: &Old) {
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    for (i, (what, (orders, _))) in HOW.iter().zip(old).enumerate().take(5) {
        let id = format!("victim-{i}");
        let (status, v) = s.token(&id, &secrets[i], ORDERS).await;
        assert_eq!(status, 400, "config unblocked: {what}: {v}");
        assert!(!s.active(orders).await, "config unblocked: {what}");
        assert_eq!(
            s.app(&id).await["blocked"],
            true,
            "config unblocked: {what}"
        );
        let listed = feed["blocked_clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["client_id"] == id);
        assert!(listed, "config unblocked: {what}: {feed}");
    }
}

/// Only the management API unblocks; the old tokens stay dead.
async fn only_the_api_unblocks(s: &Iss, secrets: &[String], old: &Old) {
    let root = s.mgmt_token("root").await;
    for i in 0..5 {
        let path = format!("api/v1/apps/victim-{i}/unblock");
        assert_eq!(s.call("POST", &path, Some(&root), None).await.0, 200);
        let id = format!("victim-{i}");
        let fresh = s.orders_token(&id, &secrets[i]).await;
        assert!(s.active(&fresh).await, "{}", HOW[i]);
        let (orders, mgmt) = &old[i];
        assert!(
            !s.active(orders).await && !s.active(mgmt).await,
            "{}",
            HOW[i]
        );
    }
}
