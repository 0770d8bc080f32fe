//! The issuer's management API: its own tokens protect it; runtime changes take
//! effect on the next token, survive a restart, and concurrent writes lose nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use support::config::{SidecarConfig, issuer_toml};
use support::http::client;
use support::sidecar::Sidecar;

const ORDERS: &str = "https://orders.example.com";
const ADMIN_SECRET: &str = "admin-secret-0123456789abcdef0123456789";

fn tables(port: u16) -> String {
    format!(
        r#"
[[issuer.apis]]
name = "Orders API"
identifier = "https://orders.example.com"
scopes = ["orders:read", "orders:write"]

[[issuer.apps]]
name = "admin"
client_id = "admin"
client_secret = "{ADMIN_SECRET}"
grants = {{ "http://127.0.0.1:{port}/api/v1/" = ["apis:read", "apis:write", "apps:read", "apps:write", "keys:write", "tokens:introspect"] }}

[[issuer.apps]]
name = "reader"
client_id = "reader"
client_secret = "{ADMIN_SECRET}"
grants = {{ "http://127.0.0.1:{port}/api/v1/" = ["apps:read"], "https://orders.example.com" = ["orders:read"] }}
"#
    )
}

struct Issuer {
    sidecar: Sidecar,
    url: String,
}

async fn start(dir: &std::path::Path, port: Option<u16>) -> Issuer {
    let addr = format!("127.0.0.1:{}", port.unwrap_or(0));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = SidecarConfig::new().raw(&issuer_toml(port, dir, &tables(port)));
    Issuer {
        sidecar: Sidecar::start_with(&config, Some(listener)).await,
        url: format!("http://127.0.0.1:{port}/"),
    }
}

impl Issuer {
    /// Stop this issuer and start a new one on the same port and state.
    async fn restart(self, dir: &std::path::Path) -> Issuer {
        let port = self
            .url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        self.sidecar.stop().await;
        start(dir, Some(port)).await
    }

    /// A token for `audience` (JSON body), or the error answer.
    async fn token(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"audience": audience, "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret});
        self.call("POST", "oauth/token", None, Some(body)).await
    }

    async fn admin_token(&self, who: &str) -> String {
        let (status, body) = self
            .token(who, ADMIN_SECRET, &format!("{}api/v1/", self.url))
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
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

#[tokio::test]
async fn the_management_api_is_protected_by_the_issuers_own_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    let (status, headers, body) = s.call_raw("GET", "api/v1/apps", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"m2m-sidecar\"");
    // A token for another audience is not a management token.
    let (_, orders) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let (status, headers, _) = s
        .call_raw("GET", "api/v1/apps", orders["access_token"].as_str(), None)
        .await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // Reading with apps:read works; writing needs apps:write.
    let reader = s.admin_token("reader").await;
    let (status, apps) = s.call("GET", "api/v1/apps", Some(&reader), None).await;
    assert_eq!(status, 200);
    assert!(
        !apps.to_string().contains("secret"),
        "no secrets listed: {apps}"
    );
    let (status, headers, body) = s
        .call_raw(
            "POST",
            "api/v1/apps",
            Some(&reader),
            Some(r#"{"name":"x"}"#.into()),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"apps:write\"")
    );
    // Bad JSON and unknown fields say what is wrong.
    let admin = s.admin_token("admin").await;
    let (status, _, body) = s
        .call_raw(
            "POST",
            "api/v1/apps",
            Some(&admin),
            Some(r#"{"name":"x","colour":"red"}"#.into()),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn apps_grants_blocking_and_secrets_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    let admin = s.admin_token("admin").await;
    // A new API and an app with a grant; the secret is returned once.
    let (status, api) = s.call("POST", "api/v1/apis", Some(&admin), Some(serde_json::json!({"name": "Stock API", "identifier": "https://stock.example.com", "scopes": ["stock:read", "stock:write"]}))).await;
    assert_eq!((status, api["id"].as_str()), (201, Some("stock-api")));
    let (_, discovery) = s
        .call("GET", ".well-known/oauth-authorization-server", None, None)
        .await;
    assert!(
        discovery["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&"stock:read".into()),
        "{discovery}"
    );
    let (status, app) = s.call("POST", "api/v1/apps", Some(&admin), Some(serde_json::json!({"name": "shop", "grants": {"https://stock.example.com": ["stock:read", "stock:write"]}}))).await;
    assert_eq!(status, 201, "{app}");
    let (id, secret) = (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    assert!(secret.len() >= 43, "256 bits");
    let (_, again) = s
        .call("GET", &format!("api/v1/apps/{id}"), Some(&admin), None)
        .await;
    assert!(again.get("client_secret").is_none());
    let (status, tok) = s.token(&id, &secret, "https://stock.example.com").await;
    assert_eq!(
        (status, tok["scope"].as_str()),
        (200, Some("stock:read stock:write"))
    );
    let old_token = tok["access_token"].as_str().unwrap().to_owned();

    // Limit the grant: the next token has less.
    let (status, _) = s
        .call(
            "PUT",
            &format!("api/v1/apps/{id}/grants"),
            Some(&admin),
            Some(serde_json::json!({"https://stock.example.com": ["stock:read"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, tok) = s.token(&id, &secret, "https://stock.example.com").await;
    assert_eq!(tok["scope"], "stock:read");
    let (status, _) = s
        .call(
            "PUT",
            &format!("api/v1/apps/{id}/grants"),
            Some(&admin),
            Some(serde_json::json!({"https://stock.example.com": ["stock:delete"]})),
        )
        .await;
    assert_eq!(status, 400, "an unknown scope is refused");

    // Block: token requests fail, introspection says inactive, the feed lists it.
    let (status, _) = s
        .call(
            "POST",
            &format!("api/v1/apps/{id}/block"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, err) = s.token(&id, &secret, "https://stock.example.com").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert!(
        err["error_description"]
            .as_str()
            .unwrap()
            .contains("blocked")
    );
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", old_token.as_str()),
            ("client_id", "admin"),
            ("client_secret", ADMIN_SECRET),
        ])
        .finish();
    let intro = client()
        .post(format!("{}oauth/introspect", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(intro, r#"{"active":false}"#);
    let (_, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(feed["blocked_clients"][0]["client_id"], id);
    assert!(feed["blocked_clients"][0]["blocked_at"].as_u64().unwrap() > 0);
    let (status, _) = s
        .call(
            "POST",
            &format!("api/v1/apps/{id}/unblock"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.token(&id, &secret, "https://stock.example.com").await.0,
        200
    );

    // Rotate with a grace period: both secrets work; without: only the new one.
    let (status, rotated) = s
        .call(
            "POST",
            &format!("api/v1/apps/{id}/secrets"),
            Some(&admin),
            Some(serde_json::json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(status, 201);
    let second = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.token(&id, &secret, "https://stock.example.com").await.0,
        200,
        "old secret in its grace period"
    );
    assert_eq!(
        s.token(&id, &second, "https://stock.example.com").await.0,
        200
    );
    let (_, rotated) = s
        .call(
            "POST",
            &format!("api/v1/apps/{id}/secrets"),
            Some(&admin),
            None,
        )
        .await;
    let third = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.token(&id, &second, "https://stock.example.com").await.0,
        401,
        "no grace: the old secret stops at once"
    );
    assert_eq!(
        s.token(&id, &third, "https://stock.example.com").await.0,
        200
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart_and_concurrent_writes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    let admin = s.admin_token("admin").await;
    let creates = (0..50).map(|i| {
        let (s, admin) = (&s, admin.clone());
        async move {
            let body = serde_json::json!({"client_id": format!("app-{i:02}"), "name": format!("app {i}"), "grants": {ORDERS: ["orders:read"]}});
            let (status, app) = s.call("POST", "api/v1/apps", Some(&admin), Some(body)).await;
            assert_eq!(status, 201, "{app}");
            app["client_secret"].as_str().unwrap().to_owned()
        }
    });
    let secrets = futures_util::future::join_all(creates).await;
    let (_, apps) = s.call("GET", "api/v1/apps", Some(&admin), None).await;
    assert_eq!(
        apps.as_array().unwrap().len(),
        52,
        "50 created + 2 from config"
    );
    let (status, _) = s
        .call("POST", "api/v1/apps/app-07/block", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call("DELETE", "api/v1/apps/reader", Some(&admin), None)
        .await;
    assert_eq!(status, 204);

    // A new issuer on the same state: every change is still there.
    let s = s.restart(dir.path()).await;
    let admin = s.admin_token("admin").await;
    let (_, apps) = s.call("GET", "api/v1/apps", Some(&admin), None).await;
    assert_eq!(
        apps.as_array().unwrap().len(),
        51,
        "reader stays deleted though the config names it"
    );
    assert_eq!(s.token("app-03", &secrets[3], ORDERS).await.0, 200);
    assert_eq!(
        s.token("app-07", &secrets[7], ORDERS).await.0,
        400,
        "still blocked"
    );
    assert_eq!(s.token("reader", ADMIN_SECRET, ORDERS).await.0, 401);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("issuer.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let state = std::fs::read_to_string(dir.path().join("issuer.json")).unwrap();
    assert!(
        !state.contains(&secrets[3]),
        "secrets are not stored in the clear"
    );
    s.sidecar.stop().await;
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

#[tokio::test]
async fn an_app_revokes_its_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let token = tok["access_token"].as_str().unwrap();
    let (_, active) = form_as(&s, "oauth/introspect", "admin", ADMIN_SECRET, token).await;
    assert!(active.contains(r#""active":true"#), "{active}");
    // Only the app the token was issued to may revoke it.
    let (status, body) = form_as(&s, "oauth/revoke", "admin", ADMIN_SECRET, token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unauthorized_client"));
    assert_eq!(
        form_as(&s, "oauth/revoke", "reader", ADMIN_SECRET, token)
            .await
            .0,
        200
    );
    assert_eq!(
        form_as(&s, "oauth/introspect", "admin", ADMIN_SECRET, token)
            .await
            .1,
        r#"{"active":false}"#
    );
    // Garbage is answered 200, as RFC 7009 asks.
    assert_eq!(
        form_as(&s, "oauth/revoke", "reader", ADMIN_SECRET, "not-a-token")
            .await
            .0,
        200
    );
    let (_, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(
        feed["revoked_tokens"].as_array().unwrap().len(),
        1,
        "{feed}"
    );
    assert!(feed["revoked_tokens"][0]["exp"].as_u64().unwrap() > 0);
    s.sidecar.stop().await;
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None).await;
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let old = tok["access_token"].as_str().unwrap().to_owned();
    let reader = s.admin_token("reader").await;
    let (status, _) = s
        .call("POST", "api/v1/keys/rotate", Some(&reader), None)
        .await;
    assert_eq!(status, 403, "keys:write is needed");
    let admin = s.admin_token("admin").await;
    let (status, rotated) = s
        .call("POST", "api/v1/keys/rotate", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    let new = tok["access_token"].as_str().unwrap().to_owned();
    assert_ne!(kid(&old), kid(&new), "the new key signs");
    assert_eq!(rotated["kid"], kid(&new));
    let (_, jwks) = s.call("GET", ".well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid(&old).as_str()) && kids.contains(&kid(&new).as_str()),
        "{kids:?}"
    );
    for t in [&old, &new] {
        let (_, active) = form_as(&s, "oauth/introspect", "admin", ADMIN_SECRET, t).await;
        assert!(active.contains(r#""active":true"#), "{active}");
    }
    // The rotation survives a restart.
    let s = s.restart(dir.path()).await;
    let (_, jwks) = s.call("GET", ".well-known/jwks.json", None, None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let (_, tok) = s.token("reader", ADMIN_SECRET, ORDERS).await;
    assert_eq!(kid(tok["access_token"].as_str().unwrap()), kid(&new));
    s.sidecar.stop().await;
}

/// The message of the start-up warning about a config secret the state overrides.
const SECRET_IGNORED: &str = "the client_secret in the config for this issuer app is not one of its secrets in the state: \
     the state's secret stays in effect and the config's is refused; to change the secret, \
     rotate it through the management API (POST /api/v1/apps/{client_id}/secrets, with \
     {\"grace\": \"1h\"} to keep the old one for a while) and give the client the secret it returns";

/// `m2m-sidecar issuer` on `config` with `env`: the process and its base URL.
async fn issuer_process(
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (support::process::Running, String) {
    let mut cmd = support::process::sidecar();
    cmd.args(["issuer", "--log-format", "json", "--config"])
        .arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = support::process::Running::spawn(cmd);
    let addr = run.addr_of("issuer ready").await;
    (run, format!("http://{addr}/"))
}

/// Once the state names a config app (any runtime change copies every app
/// into it), the state's secret wins; a config `client_secret` that is none of
/// the state's current secrets for that app is not silently ignored: the next
/// start warns, naming the client id and how to rotate, never a secret. Apps
/// whose config secret still verifies (unchanged, or the old one of a rotation
/// still in its grace period) get no warning. And `blocked = true` put in the
/// config for such an app warns that it took effect and how to undo it.
#[tokio::test]
async fn a_config_secret_the_state_overrides_is_warned_about_at_start() {
    const MGMT: &str = "http://127.0.0.1:1/api/v1/";
    let dir = tempfile::tempdir().unwrap();
    let app = |id: &str, env: &str, grants: &str, blocked: bool| {
        format!(
            "[[issuer.apps]]\nname = \"{id}\"\nclient_id = \"{id}\"\nclient_secret = {{ env = \"{env}\" }}\nblocked = {blocked}\ngrants = {{ {grants} }}\n"
        )
    };
    let orders = "\"https://orders.example.com\" = [\"orders:read\"]";
    let tables = |blocked: bool| {
        format!(
            "[[issuer.apis]]\nname = \"Orders API\"\nidentifier = \"https://orders.example.com\"\nscopes = [\"orders:read\"]\n{}{}{}{}{}{}",
            app(
                "admin",
                "ADMIN_SECRET",
                &format!("\"{MGMT}\" = [\"apps:read\", \"apps:write\"]"),
                false
            ),
            app("kept", "KEPT_SECRET", orders, false),
            app("changed", "CHANGED_SECRET", orders, false),
            app("rotated", "ROTATED_SECRET", orders, false),
            app("graced", "GRACED_SECRET", orders, false),
            app("incident", "INCIDENT_SECRET", orders, blocked),
        )
    };
    let config = |blocked: bool| {
        support::process::write_config(
            &support::config::issuer_toml(0, dir.path(), &tables(blocked))
                .replace("http://127.0.0.1:0/", "http://127.0.0.1:1/"),
        )
    };
    let first_secret = |id: &str| format!("{id}-first-secret-0123456789abcdef0123456789");
    let env: Vec<(String, String)> = [
        ("ADMIN_SECRET", "admin"),
        ("KEPT_SECRET", "kept"),
        ("CHANGED_SECRET", "changed"),
        ("ROTATED_SECRET", "rotated"),
        ("GRACED_SECRET", "graced"),
        ("INCIDENT_SECRET", "incident"),
    ]
    .into_iter()
    .map(|(k, id)| (k.to_owned(), first_secret(id)))
    .collect();
    let start = |f: &tempfile::NamedTempFile, env: Vec<(String, String)>| {
        let path = f.path().to_owned();
        async move {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            issuer_process(&path, &env).await
        }
    };

    let first_config = config(false);
    let (mut first, url) = start(&first_config, env.clone()).await;
    let (status, admin) =
        support::http::token_json(&url, "admin", &first_secret("admin"), MGMT).await;
    assert_eq!(status, 200, "{admin}");
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let call = |path: &str, body: &str| {
        client()
            .post(format!("{url}{path}"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    // Rotations at runtime (each change also copies every config app into the state).
    let resp = call("api/v1/apps/rotated/secrets", "{}").await.unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let rotated = v["client_secret"].as_str().unwrap().to_owned();
    let resp = call("api/v1/apps/graced/secrets", r#"{"grace":"1h"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let graced = v["client_secret"].as_str().unwrap().to_owned();
    assert!(
        first
            .lines
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains(SECRET_IGNORED)),
        "no warning before the config changes"
    );
    let exit = tokio::task::spawn_blocking(move || first.terminate())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));

    // The operator changes `changed`'s secret in the config and blocks `incident`.
    let changed = "changed-new-secret-in-the-config-0123456789abcdef";
    let mut env2 = env.clone();
    env2.iter_mut()
        .find(|(k, _)| k == "CHANGED_SECRET")
        .unwrap()
        .1 = changed.to_owned();
    let second_config = config(true);
    let (mut second, url) = start(&second_config, env2).await;
    second.wait_for_log(SECRET_IGNORED, 2).await;
    for (id, warned) in [
        ("changed", true),
        ("rotated", true),
        ("kept", false),
        ("graced", false),
        ("admin", false),
        ("incident", false),
    ] {
        assert_eq!(
            second.count_logs(SECRET_IGNORED, "client_id", id),
            usize::from(warned),
            "{id}"
        );
    }
    let blocked = second
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["level"] == "WARN"
                && v["client_id"] == "incident"
                && v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("blocked by the config")
        })
        .count();
    assert_eq!(blocked, 1, "{:?}", second.lines.lock().unwrap());
    // What the warning says is so: the state's secret works, the config's does not.
    let orders = "https://orders.example.com";
    for (id, secret, want) in [
        ("changed", first_secret("changed"), 200),
        ("changed", changed.to_owned(), 401),
        ("rotated", rotated.clone(), 200),
        ("rotated", first_secret("rotated"), 401),
        ("graced", graced.clone(), 200),
        ("graced", first_secret("graced"), 200),
        ("kept", first_secret("kept"), 200),
        ("incident", first_secret("incident"), 400),
    ] {
        let (status, v) = support::http::token_json(&url, id, &secret, orders).await;
        assert_eq!(status, want, "{id}: {v}");
    }
    // No secret, old or new, in any log line.
    let logs = second.lines.lock().unwrap().join("\n");
    for secret in
        env.iter()
            .map(|(_, v)| v.as_str())
            .chain([changed, rotated.as_str(), graced.as_str()])
    {
        assert!(!logs.contains(secret), "a secret in the logs:\n{logs}");
    }
    let exit = tokio::task::spawn_blocking(move || second.terminate())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}
