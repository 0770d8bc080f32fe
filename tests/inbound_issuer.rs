//! Inbound verification of the built-in issuer's tokens: keys found through
//! RFC 8414 discovery, and blocking an app (or revoking a token) takes effect
//! within one poll of the revocation feed, even for tokens already issued.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::Duration;
use support::config::{SidecarConfig, issuer_toml, quote};
use support::echo::Echo;
use support::http::{bearer_status, client};
use support::sidecar::Sidecar;

const ORDERS: &str = "https://orders.example.com";
const SECRET: &str = "secret-0123456789abcdef0123456789abcdef";

async fn token(issuer: &str, client_id: &str, audience: &str) -> String {
    let (status, v) = support::http::token_json(issuer, client_id, SECRET, audience).await;
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

/// The Orders API, a reader app, the inbound sidecar's own app (`gateway`,
/// granted `tokens:introspect` for introspection) and an admin app allowed to
/// block apps.
fn tables(issuer: &str) -> String {
    format!(
        r#"
[[issuer.apis]]
name = "Orders API"
identifier = "{ORDERS}"
scopes = ["orders:read", "orders:write"]
[[issuer.apps]]
name = "reader"
client_id = "reader"
client_secret = "{SECRET}"
grants = {{ "{ORDERS}" = ["orders:read"] }}
[[issuer.apps]]
name = "orders API gateway"
client_id = "gateway"
client_secret = "{SECRET}"
grants = {{ "{issuer}api/v1/" = ["tokens:introspect"] }}
[[issuer.apps]]
name = "admin"
client_id = "admin"
client_secret = "{SECRET}"
grants = {{ "{issuer}api/v1/" = ["apps:write"] }}
"#
    )
}

/// `POST {issuer}api/v1/apps/{action}` (e.g. `reader/block`) as the admin app.
async fn manage(issuer: &str, admin: &str, action: &str) {
    let resp = client()
        .post(format!("{issuer}api/v1/apps/{action}"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{action}");
}

async fn until_status(url: &str, token: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bearer_status(url, token).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An inbound sidecar (`checking`: its revocation settings, TOML lines) in front
/// of an echo, with the built-in issuer of [`tables`] in the same process; ready.
struct Setup {
    sidecar: Sidecar,
    echo: Echo,
    issuer: String,
    /// `http://inbound/orders/1`
    url: String,
    _dir: tempfile::TempDir,
}

async fn setup(checking: impl FnOnce(&str) -> String) -> Setup {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}/");
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\n{}\n[[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n",
        quote(&echo.url()),
        quote(&issuer),
        quote(ORDERS),
        checking(&issuer),
    );
    let config =
        SidecarConfig::new()
            .raw(&inbound)
            .raw(&issuer_toml(port, dir.path(), &tables(&issuer)));
    let sidecar = Sidecar::start_with(&config, Some(listener)).await;
    let url = format!("http://{}/orders/1", sidecar.handle.inbound_addr.unwrap());
    support::http::wait_for_status(&sidecar.admin_url("/readyz"), 200, Duration::from_secs(10))
        .await;
    Setup {
        sidecar,
        echo,
        issuer,
        url,
        _dir: dir,
    }
}

#[tokio::test]
async fn blocking_an_app_reaches_tokens_already_issued() {
    let Setup {
        sidecar,
        echo,
        issuer,
        url,
        _dir,
    } = setup(|issuer| {
        format!(
            "revocations_url = {}\nrevocations_interval = \"1s\"",
            quote(&format!("{issuer}api/v1/revocations"))
        )
    })
    .await;

    let reader = token(&issuer, "reader", ORDERS).await;
    assert_eq!(
        bearer_status(&url, &reader).await,
        200,
        "keys found through discovery"
    );
    assert_eq!(
        echo.seen().pop().unwrap().headers["x-m2m-client-id"],
        "reader"
    );

    let admin = token(&issuer, "admin", &format!("{issuer}api/v1/")).await;
    manage(&issuer, &admin, "reader/block").await;
    // The token was issued before the block: refused within a poll or two.
    until_status(&url, &reader, 401).await;
    let body = client()
        .get(&url)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("revoked"), "{body}");

    manage(&issuer, &admin, "reader/unblock").await;
    let fresh = token(&issuer, "reader", ORDERS).await;
    until_status(&url, &fresh, 200).await;

    // A single revoked token is refused too.
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", fresh.as_str()),
            ("client_id", "reader"),
            ("client_secret", SECRET),
        ])
        .finish();
    let revoked = client()
        .post(format!("{issuer}oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    until_status(&url, &fresh, 401).await;
    sidecar.stop().await;
}

#[tokio::test]
async fn introspection_reaches_blocked_apps_with_one_call_per_token_and_ttl() {
    // No revocation feed: introspection alone must notice the block. No url
    // either: the issuer's metadata names its introspection_endpoint.
    let Setup {
        sidecar,
        issuer,
        url,
        _dir,
        ..
    } = setup(|_| {
        format!(
            "[inbound.introspection]\nclient_id = \"gateway\"\nclient_secret = {}\ncache_ttl = \"5s\"",
            quote(SECRET)
        )
    })
    .await;

    // 20 concurrent requests with a fresh token: one introspection call.
    let reader = token(&issuer, "reader", ORDERS).await;
    let calls: Vec<_> = (0..20).map(|_| bearer_status(&url, &reader)).collect();
    for s in futures_util::future::join_all(calls).await {
        assert_eq!(s, 200);
    }
    let text = support::http::get(&sidecar.admin_url("/metrics")).await.1;
    assert_eq!(
        support::metric(
            &text,
            "m2m_inbound_introspections_total{outcome=\"active\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        support::metric(
            &text,
            "m2m_inbound_introspections_total{outcome=\"cached_active\"}"
        ),
        19
    );

    let admin = token(&issuer, "admin", &format!("{issuer}api/v1/")).await;
    manage(&issuer, &admin, "reader/block").await;
    // Once the cached answer is older than cache_ttl, the issuer says inactive.
    until_status(&url, &reader, 401).await;
    let resp = client()
        .get(&url)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("inactive"), "{body}");
    assert!(!body.contains(&reader), "the token is not echoed");
    sidecar.stop().await;
}
