//! Inbound verification of the built-in issuer's tokens: keys found through
//! RFC 8414 discovery, and blocking an app (or revoking a token) takes effect
//! within one poll of the revocation feed, even for tokens already issued.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use support::config::{SidecarConfig, quote};
use support::echo::Echo;
use support::http::{bearer_status, client, until_bearer_status};
use support::issuer::{App, Issuer, ORDERS, OrdersApi, Reserved};

const SECRET: &str = "secret-0123456789abcdef0123456789abcdef";

/// The Orders API, a reader app, the inbound sidecar's own app (`gateway`,
/// granted `tokens:introspect` for introspection) and an admin app allowed to
/// block apps.
fn api() -> OrdersApi {
    OrdersApi::new()
        .app(App::new("reader", SECRET).orders(&["orders:read"]))
        .app(
            App::new("gateway", SECRET)
                .named("orders API gateway")
                .mgmt(&["tokens:introspect"]),
        )
        .app(App::new("admin", SECRET).mgmt(&["apps:write"]))
}

/// `POST {issuer}api/v1/apps/{action}` (e.g. `reader/block`) as the admin app.
async fn manage(iss: &Issuer, admin: &str, action: &str) {
    let resp = client()
        .post(format!("{}api/v1/apps/{action}", iss.url))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{action}");
}

/// An inbound sidecar (`checking`: its revocation settings, TOML lines) in front
/// of an echo, with the built-in issuer of [`api`] in the same process; ready.
struct Setup {
    iss: Issuer,
    echo: Echo,
    /// `http://inbound/orders/1`
    url: String,
}

async fn setup(checking: impl FnOnce(&str) -> String) -> Setup {
    let echo = Echo::start().await;
    let reserved = Reserved::new().await;
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\n{}\n[[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n",
        quote(&echo.url()),
        quote(&reserved.url),
        quote(ORDERS),
        checking(&reserved.url),
    );
    let iss = reserved
        .start(SidecarConfig::new().raw(&inbound), &api())
        .await;
    iss.sidecar.ready().await;
    Setup {
        url: iss.sidecar.inbound("/orders/1"),
        iss,
        echo,
    }
}

#[tokio::test]
async fn blocking_an_app_reaches_tokens_already_issued() {
    let Setup { iss, echo, url } = setup(|issuer| {
        format!(
            "revocations_url = {}\nrevocations_interval = \"1s\"",
            quote(&format!("{issuer}api/v1/revocations"))
        )
    })
    .await;

    let reader = iss.access_token("reader", SECRET, ORDERS).await;
    assert_eq!(
        bearer_status(&url, &reader).await,
        200,
        "keys found through discovery"
    );
    assert_eq!(
        echo.seen().pop().unwrap().headers["x-m2m-client-id"],
        "reader"
    );

    let admin = iss.access_token("admin", SECRET, &iss.mgmt()).await;
    manage(&iss, &admin, "reader/block").await;
    // The token was issued before the block: refused within a poll or two.
    until_bearer_status(&url, &reader, 401).await;
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

    manage(&iss, &admin, "reader/unblock").await;
    let fresh = iss.access_token("reader", SECRET, ORDERS).await;
    until_bearer_status(&url, &fresh, 200).await;

    // A single revoked token is refused too.
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", fresh.as_str()),
            ("client_id", "reader"),
            ("client_secret", SECRET),
        ])
        .finish();
    let revoked = client()
        .post(format!("{}oauth/revoke", iss.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    until_bearer_status(&url, &fresh, 401).await;
    iss.sidecar.stop().await;
}

#[tokio::test]
async fn introspection_reaches_blocked_apps_with_one_call_per_token_and_ttl() {
    // No revocation feed: introspection alone must notice the block. No url
    // either: the issuer's metadata names its introspection_endpoint.
    let Setup { iss, url, .. } = setup(|_| {
        format!(
            "[inbound.introspection]\nclient_id = \"gateway\"\nclient_secret = {}\ncache_ttl = \"5s\"",
            quote(SECRET)
        )
    })
    .await;

    // 20 concurrent requests with a fresh token: one introspection call.
    let reader = iss.access_token("reader", SECRET, ORDERS).await;
    let calls: Vec<_> = (0..20).map(|_| bearer_status(&url, &reader)).collect();
    for s in futures_util::future::join_all(calls).await {
        assert_eq!(s, 200);
    }
    let text = support::http::get(&iss.sidecar.admin_url("/metrics"))
        .await
        .1;
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

    let admin = iss.access_token("admin", SECRET, &iss.mgmt()).await;
    manage(&iss, &admin, "reader/block").await;
    // Once the cached answer is older than cache_ttl, the issuer says inactive.
    until_bearer_status(&url, &reader, 401).await;
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
    iss.sidecar.stop().await;
}
