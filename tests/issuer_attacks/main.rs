//! Attacks on the built-in issuer, by class (issue 10 §2, §3, §4 issuer part,
//! §5, §7, §8 issuer part), each table-driven with many variants, against a
//! real issuer on 127.0.0.1:0. Every refusal is checked against the state that
//! resulted (the app still there, still blocked, its secret still working, the
//! upstream never reached), not only the status.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod bounds;
mod callers;
mod config_block;
mod escalation;
mod exposed_metrics;
mod json_bodies;
mod revocation;
mod slow_bodies;
mod syntax;
mod throttling;

use std::time::Duration;
use support::config::{SidecarConfig, quote};
use support::http::client;
use support::issuer::{App, Issuer, ORDERS, OrdersApi, Reserved};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SECRET: &str = "attack-suite-secret-0123456789abcdef0123";
const WRONG: &str = "wrong-secret-0123456789abcdef0123456789ab";
const ALL_MGMT: [&str; 6] = [
    "apis:read",
    "apis:write",
    "apps:read",
    "apps:write",
    "keys:write",
    "tokens:introspect",
];

/// The Orders API and the apps every test starts with, all with [`SECRET`]:
/// `root` (every management scope), `ops` (apps:read apps:write), `writer`
/// (apps:write only), `gateway` (tokens:introspect only), `billing`
/// (orders:read orders:write).
fn api() -> OrdersApi {
    OrdersApi::new()
        .app(App::new("root", SECRET).mgmt(&ALL_MGMT))
        .app(App::new("ops", SECRET).mgmt(&["apps:read", "apps:write"]))
        .app(App::new("writer", SECRET).mgmt(&["apps:write"]))
        .app(App::new("gateway", SECRET).mgmt(&["tokens:introspect"]))
        .app(App::new("billing", SECRET).orders(&["orders:read", "orders:write"]))
}

/// An issuer of [`api`] (in a sidecar of its own) and what it serves, for a restart.
struct Iss {
    issuer: Issuer,
    api: OrdersApi,
}

impl std::ops::Deref for Iss {
    type Target = Issuer;
    fn deref(&self) -> &Issuer {
        &self.issuer
    }
}

type Answer = (u16, reqwest::header::HeaderMap, serde_json::Value);

async fn answer(resp: reqwest::Response) -> Answer {
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, headers, json)
}

impl Iss {
    /// An issuer serving `api` (and `around`, which may name its URL).
    async fn start(api: OrdersApi) -> Iss {
        Iss::around(|_| String::new(), api).await
    }

    /// An issuer serving `api`, in a sidecar that also runs `around(url)`.
    async fn around(around: impl FnOnce(&str) -> String, api: OrdersApi) -> Iss {
        let reserved = Reserved::new().await;
        let config = SidecarConfig::new().raw(&around(&reserved.url));
        Iss {
            issuer: reserved.start(config, &api).await,
            api,
        }
    }

    /// Stop, and start again alone on the same port and state.
    async fn restart(self) -> Iss {
        let Iss { issuer, api } = self;
        Iss {
            issuer: issuer.restart(&api).await,
            api,
        }
    }

    async fn stop(self) {
        self.issuer.sidecar.stop().await;
    }

    /// A management token of `client_id` (secret [`SECRET`]).
    async fn mgmt_token(&self, client_id: &str) -> String {
        self.access_token(client_id, SECRET, &self.mgmt()).await
    }

    async fn orders_token(&self, client_id: &str, secret: &str) -> String {
        self.access_token(client_id, secret, ORDERS).await
    }

    /// A management call; `body` is sent as JSON.
    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client().request(method, format!("{}{path}", self.url));
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        answer(req.send().await.unwrap()).await
    }

    /// POST a form to `path` (`oauth/token`, `oauth/introspect`, `oauth/revoke`).
    async fn form(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let resp = client()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    async fn introspect(&self, client_id: &str, secret: &str, token: &str) -> Answer {
        self.form(
            "oauth/introspect",
            &[
                ("token", token),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        )
        .await
    }

    async fn revoke(&self, client_id: &str, secret: &str, token: &str) -> Answer {
        self.form(
            "oauth/revoke",
            &[
                ("token", token),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        )
        .await
    }

    /// Whether `token` is active, as `gateway` introspects it.
    async fn active(&self, token: &str) -> bool {
        let (status, _, v) = self.introspect("gateway", SECRET, token).await;
        assert_eq!(status, 200, "{v}");
        v["active"] == true
    }

    /// `app` as `root` sees it (`Null` when absent).
    async fn app(&self, client_id: &str) -> serde_json::Value {
        let root = self.mgmt_token("root").await;
        let (status, _, v) = self
            .call(
                "GET",
                &format!("api/v1/apps/{client_id}"),
                Some(&root),
                None,
            )
            .await;
        match status {
            200 => v,
            404 => serde_json::Value::Null,
            other => panic!("GET app {client_id}: {other} {v}"),
        }
    }

    /// Every client id, as `root` sees them.
    async fn client_ids(&self) -> Vec<String> {
        let root = self.mgmt_token("root").await;
        let (status, _, v) = self
            .call("GET", "api/v1/apps?limit=1000", Some(&root), None)
            .await;
        assert_eq!(status, 200);
        assert!(v["next"].is_null(), "more apps than one page: {v}");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["client_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// One raw HTTP/1.1 request (`Connection: close`): status and the whole answer.
    async fn raw(&self, head_and_body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        s.write_all(head_and_body.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
            .await
            .expect("answered and closed")
            .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

fn json(v: serde_json::Value) -> String {
    v.to_string()
}

fn now() -> u64 {
    support::jwt::now()
}

/// `root` creates `id` with apps:read and apps:write on the management API; its secret.
async fn create_operator(s: &Iss, id: &str) -> String {
    let root = s.mgmt_token("root").await;
    let body = json(serde_json::json!({
        "name": id, "client_id": id,
        "grants": {s.mgmt(): ["apps:read", "apps:write"], ORDERS: ["orders:read"]},
    }));
    let (status, _, v) = s
        .call("POST", "api/v1/apps", Some(&root), Some(&body))
        .await;
    assert_eq!(status, 201, "{v}");
    v["client_secret"].as_str().unwrap().to_owned()
}

/// A management token of `id` with `secret`.
async fn token_of(s: &Iss, id: &str, secret: &str) -> String {
    s.access_token(id, secret, &s.mgmt()).await
}

/// A `private_key_jwt` token request with an assertion for `client_id` signed by `key`.
async fn assert_as(s: &Iss, key: &support::jwt::TestKey, client_id: &str, jti: &str) -> Answer {
    let now = now();
    let claims = serde_json::json!({"iss": client_id, "sub": client_id, "aud": s.url, "jti": jti, "iat": now, "exp": now + 60});
    let assertion = key.sign(
        &serde_json::json!({"alg": key.alg, "kid": key.kid}),
        &claims,
    );
    s.form(
        "oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("audience", ORDERS),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ],
    )
    .await
}

/// An app `keyholder` registered with `key`'s public JWKS (file in `dir`).
fn keyholder(dir: &std::path::Path, key: &support::jwt::TestKey) -> App {
    let file = dir.join("keyholder.jwks.json");
    std::fs::write(&file, support::jwt::jwks(&[key])).unwrap();
    App::keyed("keyholder")
        .with("jwks_file", &quote(file.to_str().unwrap()))
        .orders(&["orders:read"])
}
