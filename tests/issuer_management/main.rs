//! The issuer's management API: its own tokens protect it; runtime changes take
//! effect on the next token, survive a restart, and concurrent writes lose nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod apps;
mod config_secrets;
mod pages;
mod races;
mod state;

use support::http::client;
use support::issuer::{App, Issuer, ORDERS, OrdersApi};

const ADMIN_SECRET: &str = "admin-secret-0123456789abcdef0123456789";

/// The Orders API, `admin` (every management scope) and `reader` (apps:read,
/// orders:read), both with [`ADMIN_SECRET`].
fn api() -> OrdersApi {
    let all = [
        "apis:read",
        "apis:write",
        "apps:read",
        "apps:write",
        "keys:write",
        "tokens:introspect",
    ];
    OrdersApi::new()
        .app(App::new("admin", ADMIN_SECRET).mgmt(&all))
        .app(
            App::new("reader", ADMIN_SECRET)
                .mgmt(&["apps:read"])
                .orders(&["orders:read"]),
        )
}

async fn start() -> Issuer {
    Issuer::start(&api()).await
}

/// The management API as its tests call it: with a management token, JSON
/// bodies, JSON answers (parsed strictly).
trait Management {
    async fn admin_token(&self, who: &str) -> String;

    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value);

    async fn call_raw(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value);
}

impl Management for Issuer {
    /// A management token of `who` (secret [`ADMIN_SECRET`]).
    async fn admin_token(&self, who: &str) -> String {
        self.access_token(who, ADMIN_SECRET, &self.mgmt()).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (status, _, body) = self
            .call_raw(method, path, bearer, body.map(|b| b.to_string()))
            .await;
        (status, body)
    }

    async fn call_raw(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut req = client().request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, headers, json)
    }
}

/// POST a form to `path` as `client_id`/`secret` (client_secret_post).
async fn form_as(
    s: &Issuer,
    path: &str,
    client_id: &str,
    secret: &str,
    token: &str,
) -> (u16, String) {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", token),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .finish();
    let resp = client()
        .post(format!("{}{path}", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}
