//! Attacks on the built-in issuer, by class (issue 10 §2, §3, §4 issuer part,
//! §5, §7, §8 issuer part), each table-driven with many variants, against a
//! real issuer on 127.0.0.1:0. Every refusal is checked against the state that
//! resulted (the app still there, still blocked, its secret still working, the
//! upstream never reached), not only the status.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use base64::Engine as _;
use std::time::Duration;
use support::config::{SidecarConfig, issuer_toml, quote};
use support::http::{bearer_status, client};
use support::sidecar::Sidecar;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ORDERS: &str = "https://orders.example.com";
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
/// (orders:read orders:write); then `extra`.
fn tables(port: u16, extra: &str) -> String {
    let m = format!("http://127.0.0.1:{port}/api/v1/");
    let app = |id: &str, grants: String| {
        format!(
            "[[issuer.apps]]\nname = {id:?}\nclient_id = {id:?}\nclient_secret = {}\ngrants = {{ {grants} }}\n",
            quote(SECRET)
        )
    };
    let list = |scopes: &[&str]| format!("{scopes:?}");
    format!(
        "[[issuer.apis]]\nname = \"Orders API\"\nidentifier = {}\nscopes = [\"orders:read\", \"orders:write\"]\n{}{}{}{}{}{extra}",
        quote(ORDERS),
        app("root", format!("{} = {}", quote(&m), list(&ALL_MGMT))),
        app(
            "ops",
            format!("{} = {}", quote(&m), list(&["apps:read", "apps:write"]))
        ),
        app(
            "writer",
            format!("{} = {}", quote(&m), list(&["apps:write"]))
        ),
        app(
            "gateway",
            format!("{} = {}", quote(&m), list(&["tokens:introspect"]))
        ),
        app(
            "billing",
            format!(
                "{} = {}",
                quote(ORDERS),
                list(&["orders:read", "orders:write"])
            )
        ),
    )
}

struct Iss {
    sidecar: Sidecar,
    url: String,
    port: u16,
    opts: Opts,
    dir: tempfile::TempDir,
}

/// What an issuer starts with beyond [`tables`]: `top`, TOML before the
/// `[issuer]` table (`{ISSUER}` is replaced by its URL); `extra` apps
/// (`{PORT}` is replaced by its port); its `token_ttl`.
#[derive(Clone)]
struct Opts {
    top: String,
    extra: String,
    ttl: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            top: String::new(),
            extra: String::new(),
            ttl: "1h",
        }
    }
}

async fn start(top: &str, extra: &str) -> Iss {
    let opts = Opts {
        top: top.to_owned(),
        extra: extra.to_owned(),
        ..Opts::default()
    };
    start_on(None, tempfile::tempdir().unwrap(), opts).await
}

async fn start_on(port: Option<u16>, dir: tempfile::TempDir, opts: Opts) -> Iss {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let issuer = issuer_toml(
        port,
        dir.path(),
        &tables(port, &opts.extra.replace("{PORT}", &port.to_string())),
    )
    .replace(
        "token_ttl = \"1h\"",
        &format!("token_ttl = {}", quote(opts.ttl)),
    );
    let config = SidecarConfig::new()
        .raw(&opts.top.replace("{ISSUER}", &url))
        .raw(&issuer);
    Iss {
        sidecar: Sidecar::start_with(&config, Some(listener)).await,
        url,
        port,
        opts,
        dir,
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
    /// The management API's audience.
    fn mgmt(&self) -> String {
        format!("{}api/v1/", self.url)
    }

    /// Stop, and start again on the same port and state.
    async fn restart(self) -> Iss {
        let Iss {
            sidecar,
            port,
            opts,
            dir,
            ..
        } = self;
        sidecar.stop().await;
        start_on(Some(port), dir, opts).await
    }

    /// A token request with the seed's JSON body.
    async fn token(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
    ) -> (u16, serde_json::Value) {
        support::http::token_json(&self.url, client_id, secret, audience).await
    }

    /// A management token of `client_id` (secret [`SECRET`]).
    async fn mgmt_token(&self, client_id: &str) -> String {
        let (status, v) = self.token(client_id, SECRET, &self.mgmt()).await;
        assert_eq!(status, 200, "{client_id}: {v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn orders_token(&self, client_id: &str, secret: &str) -> String {
        let (status, v) = self.token(client_id, secret, ORDERS).await;
        assert_eq!(status, 200, "{client_id}: {v}");
        v["access_token"].as_str().unwrap().to_owned()
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
        let (status, _, v) = self.call("GET", "api/v1/apps", Some(&root), None).await;
        assert_eq!(status, 200);
        v.as_array()
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

// ---------------------------------------------------------------------------
// §2: the management API checks its caller as introspection does.
// ---------------------------------------------------------------------------

/// Calls an attacker holding a dead management token tries; each must be 401.
fn attacker_calls(me: &str) -> Vec<(String, String, Option<String>)> {
    let me_grants = json(serde_json::json!({"http://x/": []}));
    vec![
        ("GET".into(), "api/v1/apps".into(), None),
        ("GET".into(), format!("api/v1/apps/{me}"), None),
        ("POST".into(), format!("api/v1/apps/{me}/unblock"), None),
        (
            "POST".into(),
            format!("api/v1/apps/{me}/secrets"),
            Some("{}".into()),
        ),
        (
            "POST".into(),
            "api/v1/apps".into(),
            Some(json(
                serde_json::json!({"name": "evil", "client_id": "evil"}),
            )),
        ),
        (
            "PUT".into(),
            format!("api/v1/apps/{me}/grants"),
            Some(me_grants),
        ),
        ("DELETE".into(), "api/v1/apps/billing".into(), None),
        ("POST".into(), "api/v1/apps/billing/block".into(), None),
    ]
}

async fn all_refused(s: &Iss, token: &str, me: &str, why: &str) {
    for (method, path, body) in attacker_calls(me) {
        let (status, headers, v) = s.call(&method, &path, Some(token), body.as_deref()).await;
        assert_eq!(status, 401, "{why}: {method} {path}: {v}");
        assert_eq!(v["error"], "invalid_token", "{why}: {method} {path}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{why}"
        );
    }
    // Nothing the attacker tried happened.
    assert!(s.app("evil").await.is_null(), "{why}: no app created");
    assert_eq!(s.app("billing").await["blocked"], false, "{why}");
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

async fn token_of(s: &Iss, id: &str, secret: &str) -> String {
    let (status, v) = s.token(id, secret, &s.mgmt()).await;
    assert_eq!(status, 200, "{id}: {v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn management_refuses_blocked_revoked_and_deleted_callers() {
    let s = start("", "").await;
    let root = s.mgmt_token("root").await;

    // A working operator token first: the calls below can succeed.
    let secret = create_operator(&s, "op-blocked").await;
    let token = token_of(&s, "op-blocked", &secret).await;
    let (status, _, _) = s.call("GET", "api/v1/apps", Some(&token), None).await;
    assert_eq!(status, 200, "the token works before the attack");

    // Blocked: refused, and cannot unblock itself.
    let (status, _, _) = s
        .call("POST", "api/v1/apps/op-blocked/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    all_refused(&s, &token, "op-blocked", "blocked").await;
    assert_eq!(s.app("op-blocked").await["blocked"], true, "still blocked");
    // Unblocked: the token from before the block stays dead; a new one works.
    let (status, _, _) = s
        .call("POST", "api/v1/apps/op-blocked/unblock", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    all_refused(&s, &token, "op-blocked", "issued before the block").await;
    let fresh = token_of(&s, "op-blocked", &secret).await;
    assert_eq!(
        s.call("GET", "api/v1/apps", Some(&fresh), None).await.0,
        200
    );
    assert!(!s.active(&token).await && s.active(&fresh).await);

    // Revoked by its own app through /oauth/revoke.
    let secret = create_operator(&s, "op-revoked").await;
    let token = token_of(&s, "op-revoked", &secret).await;
    assert_eq!(s.revoke("op-revoked", &secret, &token).await.0, 200);
    all_refused(&s, &token, "op-revoked", "revoked").await;

    // Deleted, then created again under the same id at once (same second).
    let secret = create_operator(&s, "op-deleted").await;
    let token = token_of(&s, "op-deleted", &secret).await;
    let (status, _, _) = s
        .call("DELETE", "api/v1/apps/op-deleted", Some(&root), None)
        .await;
    assert_eq!(status, 204);
    all_refused(&s, &token, "op-deleted", "deleted").await;
    let again = create_operator(&s, "op-deleted").await;
    all_refused(&s, &token, "op-deleted", "deleted, same id created again").await;
    assert!(!s.active(&token).await, "introspection agrees");
    let deleted_token = token;
    let new_token = token_of(&s, "op-deleted", &again).await;
    assert_eq!(
        s.call("GET", "api/v1/apps", Some(&new_token), None).await.0,
        200,
        "the new app's own token works"
    );

    // A grant taken away takes effect at once, whatever the token says.
    let secret = create_operator(&s, "op-demoted").await;
    let token = token_of(&s, "op-demoted", &secret).await;
    let (status, _, _) = s
        .call(
            "PUT",
            "api/v1/apps/op-demoted/grants",
            Some(&root),
            Some(&json(serde_json::json!({ORDERS: ["orders:read"]}))),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, v) = s.call("GET", "api/v1/apps", Some(&token), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // And across a restart: the deleted app's old token stays dead.
    let s = s.restart().await;
    all_refused(&s, &deleted_token, "op-deleted", "deleted, after restart").await;
    let (status, _, _) = s.call("GET", "api/v1/apps", Some(&new_token), None).await;
    assert_eq!(status, 200, "the new app's token survives the restart");
    s.sidecar.stop().await;
}

#[tokio::test]
async fn a_deleted_apps_tokens_stay_dead_across_restarts_and_recreation() {
    let s = start("", "").await;
    // Many rounds, so a delete and a re-create often share a second.
    let mut dead = Vec::new();
    for round in 0..6 {
        let secret = create_operator(&s, "phoenix").await;
        let token = token_of(&s, "phoenix", &secret).await;
        let orders = s.orders_token("phoenix", &secret).await;
        assert_eq!(
            s.call("GET", "api/v1/apps", Some(&token), None).await.0,
            200
        );
        let root = s.mgmt_token("root").await;
        let (status, _, _) = s
            .call("DELETE", "api/v1/apps/phoenix", Some(&root), None)
            .await;
        assert_eq!(status, 204, "round {round}");
        dead.push(token);
        dead.push(orders);
    }
    let secret = create_operator(&s, "phoenix").await;
    let live = token_of(&s, "phoenix", &secret).await;
    let s = s.restart().await;
    for (i, t) in dead.iter().enumerate() {
        assert!(!s.active(t).await, "token {i} of a deleted app");
        if i % 2 == 0 {
            assert_eq!(s.call("GET", "api/v1/apps", Some(t), None).await.0, 401);
        }
    }
    assert!(s.active(&live).await);
    assert_eq!(s.call("GET", "api/v1/apps", Some(&live), None).await.0, 200);
    // The feed carries the not-before, so inbound sidecars refuse them too.
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    let nb = feed["client_not_before"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["client_id"] == "phoenix")
        .expect("phoenix in client_not_before");
    assert!(nb["not_before"].as_u64().unwrap() > 0);
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §2: no privilege escalation.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn no_escalation_through_any_route() {
    let s = start("", "").await;
    let m = s.mgmt();
    let key = support::jwt::TestKey::es256("evil");
    let pem = key.public_pem();
    let jwk_doc = serde_json::json!({"keys": [key.jwk()]});
    let before_root = s.app("root").await;
    let before_gateway = s.app("gateway").await;
    for caller in ["writer", "ops"] {
        let token = s.mgmt_token(caller).await;
        let mine = if caller == "writer" {
            vec!["apps:write"]
        } else {
            vec!["apps:read", "apps:write"]
        };
        let with = |extra: &[&str]| {
            let mut v = mine.clone();
            v.extend_from_slice(extra);
            serde_json::json!({ m.clone(): v })
        };
        let mut cases: Vec<(String, &str, String, Option<String>)> = Vec::new();
        let mut case =
            |what: &str, method: &'static str, path: String, body: Option<serde_json::Value>| {
                cases.push((what.to_owned(), method, path, body.map(json)));
            };
        for extra in [
            vec!["keys:write"],
            vec!["apis:write"],
            vec!["apis:read"],
            vec!["tokens:introspect"],
            ALL_MGMT.to_vec(),
        ] {
            case(
                &format!("PUT own grants + {extra:?}"),
                "PUT",
                format!("api/v1/apps/{caller}/grants"),
                Some(with(&extra)),
            );
            case(
                &format!("PATCH own grants + {extra:?}"),
                "PATCH",
                format!("api/v1/apps/{caller}"),
                Some(serde_json::json!({"grants": with(&extra)})),
            );
            case(
                &format!("POST app with {extra:?}"),
                "POST",
                "api/v1/apps".into(),
                Some(
                    serde_json::json!({"name": "evil", "client_id": "evil", "grants": {m.clone(): extra}}),
                ),
            );
            case(
                &format!("PUT billing's grants + {extra:?}"),
                "PUT",
                "api/v1/apps/billing/grants".into(),
                Some(serde_json::json!({m.clone(): extra, ORDERS: ["orders:read"]})),
            );
        }
        if caller == "writer" {
            // The writer lacks apps:read, which ops holds.
            case(
                "PUT own grants + apps:read",
                "PUT",
                "api/v1/apps/writer/grants".into(),
                Some(with(&["apps:read"])),
            );
            case(
                "PATCH ops",
                "PATCH",
                "api/v1/apps/ops".into(),
                Some(serde_json::json!({"name": "x"})),
            );
            case("block ops", "POST", "api/v1/apps/ops/block".into(), None);
            case("delete ops", "DELETE", "api/v1/apps/ops".into(), None);
            case(
                "rotate ops",
                "POST",
                "api/v1/apps/ops/secrets".into(),
                Some(serde_json::json!({})),
            );
        }
        for target in ["root", "%72oot", "r%6F%6Ft", "gateway", "%67ateway"] {
            case(
                "rename",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"name": "pwned"})),
            );
            case(
                "register a key",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"public_key_pem": pem})),
            );
            case(
                "register a JWKS",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"jwks": jwk_doc})),
            );
            case(
                "PATCH blocked",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"blocked": true})),
            );
            case(
                "reduce grants",
                "PUT",
                format!("api/v1/apps/{target}/grants"),
                Some(serde_json::json!({})),
            );
            case(
                "reduce grants by PATCH",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"grants": {}})),
            );
            case("block", "POST", format!("api/v1/apps/{target}/block"), None);
            case(
                "unblock",
                "POST",
                format!("api/v1/apps/{target}/unblock"),
                None,
            );
            case(
                "rotate",
                "POST",
                format!("api/v1/apps/{target}/secrets"),
                None,
            );
            case(
                "rotate with grace",
                "POST",
                format!("api/v1/apps/{target}/secrets"),
                Some(serde_json::json!({"grace": "1h"})),
            );
            case("delete", "DELETE", format!("api/v1/apps/{target}"), None);
        }
        assert!(cases.len() > 60, "{}", cases.len());
        for (what, method, path, body) in &cases {
            let (status, headers, v) = s.call(method, path, Some(&token), body.as_deref()).await;
            assert_eq!(status, 403, "{caller}: {what}: {method} {path}: {v}");
            assert_eq!(v["error"], "insufficient_scope", "{caller}: {what}");
            assert!(
                v.get("client_secret").is_none(),
                "{caller}: {what}: no secret handed out"
            );
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains("insufficient_scope"),
                "{caller}: {what}"
            );
        }
        // Nothing changed: root and gateway as before and still working,
        // the caller's own grants as before, no app created.
        assert_eq!(s.app("root").await, before_root, "{caller}");
        assert_eq!(s.app("gateway").await, before_gateway, "{caller}");
        assert!(s.app("evil").await.is_null());
        assert_eq!(
            s.app(caller).await["grants"][&m],
            serde_json::json!(mine),
            "{caller}"
        );
        assert_eq!(s.app("billing").await["grants"].get(&m), None);
        let _ = s.mgmt_token("root").await;
        assert_eq!(s.introspect("gateway", SECRET, &token).await.0, 200);
        if caller == "writer" {
            assert_eq!(s.app("ops").await["name"], "ops");
        }

        // What the caller may do, it can: the rule is not "refuse everything".
        let id = format!("{caller}-child");
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&token),
                Some(&json(serde_json::json!({"name": id, "client_id": id, "grants": {m.clone(): mine, ORDERS: ["orders:write"]}}))),
            )
            .await;
        assert_eq!(status, 201, "{caller}: {v}");
        for (method, path) in [
            ("POST", format!("api/v1/apps/{id}/block")),
            ("POST", format!("api/v1/apps/{id}/unblock")),
            ("POST", format!("api/v1/apps/{id}/secrets")),
            ("POST", "api/v1/apps/billing/block".to_owned()),
            ("POST", "api/v1/apps/billing/unblock".to_owned()),
        ] {
            let (status, _, v) = s.call(method, &path, Some(&token), None).await;
            assert!(
                status == 200 || status == 201,
                "{caller}: {method} {path}: {v}"
            );
        }
        // Delete and create again: only with what the caller has.
        let (status, _, _) = s
            .call("DELETE", &format!("api/v1/apps/{id}"), Some(&token), None)
            .await;
        assert_eq!(status, 204);
        let (status, _, _) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&token),
                Some(&json(serde_json::json!({"name": id, "client_id": id, "grants": {m.clone(): ALL_MGMT}}))),
            )
            .await;
        assert_eq!(status, 403, "{caller}: re-created with more");
        assert!(s.app(&id).await.is_null());
    }
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §2: schemes and media types are case-insensitive.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn schemes_and_media_types_are_case_insensitive() {
    let s = start("", "").await;
    let root = s.mgmt_token("root").await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for sep in [" ", "  "] {
            let resp = client()
                .get(format!("{}api/v1/apps", s.url))
                .header("authorization", format!("{scheme}{sep}{root}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{scheme:?}{sep:?}");
        }
    }
    for bad in [
        format!("Bearerx {root}"),
        format!("Token {root}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Basic {root}"),
    ] {
        let resp = client()
            .get(format!("{}api/v1/apps", s.url))
            .header("authorization", bad.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
    }
    // Two Authorization headers: refused, even when the first is good.
    let resp = client()
        .get(format!("{}api/v1/apps", s.url))
        .header("authorization", format!("Bearer {root}"))
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Basic at the token and introspection endpoints.
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let basic = |id: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(SECRET)))
    };
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let resp = client()
            .post(format!("{}oauth/token", s.url))
            .header("authorization", format!("{scheme} {}", basic("billing")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&audience={}",
                enc(ORDERS)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
        let resp = client()
            .post(format!("{}oauth/introspect", s.url))
            .header("authorization", format!("{scheme}  {}", basic("gateway")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={root}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
        let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(v["active"], true);
    }
    // JSON in any case, with parameters.
    let body = json(
        serde_json::json!({"audience": ORDERS, "grant_type": "client_credentials", "client_id": "billing", "client_secret": SECRET}),
    );
    for media in [
        "application/json",
        "APPLICATION/JSON",
        "Application/Json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON;CHARSET=UTF-8",
        "application/json ; charset=\"utf-8\"",
    ] {
        let resp = client()
            .post(format!("{}oauth/token", s.url))
            .header("content-type", media)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{media}");
        let resp = client()
            .post(format!("{}api/v1/apps", s.url))
            .bearer_auth(&root)
            .header("content-type", media)
            .body(json(serde_json::json!({"name": "m"})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{media}");
    }
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §2: client and API ids.
// ---------------------------------------------------------------------------

const BAD_IDS: [&str; 17] = [
    "a/b",
    "a b",
    "a?b",
    "a#b",
    "café",
    "a\0b",
    "a\rb",
    "a\nb",
    "a\r\nX-Injected: 1",
    "",
    ".",
    "..",
    "a%2Fb",
    "a\\b",
    "a;b",
    "a:b",
    "a@b",
];

#[tokio::test]
async fn client_and_api_ids_are_validated_and_path_segments_decoded() {
    let s = start("", "").await;
    let root = s.mgmt_token("root").await;
    let long = "x".repeat(129);
    let mut bad: Vec<String> = BAD_IDS.iter().map(|s| (*s).to_owned()).collect();
    bad.push(long.clone());
    let before = s.client_ids().await;
    for id in &bad {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&root),
                Some(&json(serde_json::json!({"name": "n", "client_id": id}))),
            )
            .await;
        assert_eq!(status, 400, "client id {id:?}: {v}");
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apis",
                Some(&root),
                Some(&json(serde_json::json!({"id": id, "name": "n", "identifier": format!("https://api.example/{}", id.len())}))),
            )
            .await;
        assert_eq!(status, 400, "API id {id:?}: {v}");
    }
    assert_eq!(s.client_ids().await, before, "no app created");
    // Names whose derived id would be invalid.
    for (i, name) in ["???", "ééé", &"long name ".repeat(20)].iter().enumerate() {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apis",
                Some(&root),
                Some(&json(serde_json::json!({"name": name, "identifier": format!("https://derived.example/{i}")}))),
            )
            .await;
        assert_eq!(status, 400, "{name}: {v}");
    }
    // Valid ids, reachable by their path, plain or percent-encoded.
    for id in ["a.b_c~d-e", "A1", &"y".repeat(128)] {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&root),
                Some(&json(serde_json::json!({"name": "n", "client_id": id}))),
            )
            .await;
        assert_eq!(status, 201, "{id}: {v}");
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, text) = s
            .raw(&format!(
                "GET /api/v1/apps/{encoded} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{id} percent-encoded: {text}");
        let (status, text) = s
            .raw(&format!(
                "POST /api/v1/apps/{encoded}/block HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{id}: {text}");
        assert_eq!(s.app(id).await["blocked"], true);
        let (status, text) = s
            .raw(&format!(
                "DELETE /api/v1/apps/{encoded} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 204, "{id}: {text}");
        assert!(s.app(id).await.is_null());
    }
    // Invalid percent-encoding in a path is not found, never a crash.
    for path in ["%", "%G1", "%C3%28", "%FF", "a%2"] {
        let (status, _) = s
            .raw(&format!(
                "GET /api/v1/apps/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 404, "{path}");
    }
    s.sidecar.stop().await;

    // The config refuses them too.
    for id in &bad {
        let toml = format!(
            "[issuer]\nurl = \"http://127.0.0.1:1/\"\n[[issuer.apis]]\nname = \"A\"\nid = {}\nidentifier = \"https://a\"\n[[issuer.apps]]\nname = \"n\"\nclient_id = {}\nclient_secret = {}\n",
            quote(if id.is_empty() { "ok" } else { id }),
            quote(id),
            quote(SECRET),
        );
        let err = m2m_sidecar::config::load_str(&toml, m2m_sidecar::config::Format::Toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("issuer.apps[0].client_id"), "{id:?}: {err}");
        if !id.is_empty() {
            assert!(err.contains("issuer.apis[0].id"), "{id:?}: {err}");
        }
    }
    let toml = format!(
        "[issuer]\nurl = \"http://127.0.0.1:1/\"\n[[issuer.apis]]\nname = \"???\"\nidentifier = \"https://a\"\n[[issuer.apps]]\nname = \"n\"\nclient_id = {}\nclient_secret = {}\n",
        quote(&"z".repeat(128)),
        quote(SECRET)
    );
    let err = m2m_sidecar::config::load_str(&toml, m2m_sidecar::config::Format::Toml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("issuer.apis[0].name") && err.contains("set `id`"),
        "{err}"
    );
    assert!(!err.contains("client_id"), "128 characters are fine: {err}");
}

// ---------------------------------------------------------------------------
// §2: metric labels never come from requests.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn metric_labels_never_come_from_requests() {
    let s = start("", "").await;
    let (_, before) = support::http::get(&format!("{}metrics", s.url)).await;
    let root = s.mgmt_token("root").await;
    let mut calls = Vec::new();
    for i in 0..300 {
        let method = format!("INVENTED{i}");
        let path = format!("api/v1/apps/x{i}");
        let (s, root) = (&s, root.clone());
        calls.push(async move {
            let bearer = (i % 2 == 0).then_some(root.as_str());
            s.call(&method, &path, bearer, None).await.0
        });
    }
    for status in futures_util::future::join_all(calls).await {
        assert!(status == 404 || status == 401, "{status}");
    }
    // Invented client ids, audiences, grant types and scopes at the token endpoint.
    let tokens = (0..100).map(|i| {
        let s = &s;
        async move {
            let id = format!("invented-client-{i}");
            let aud = format!("https://invented-{i}.example");
            s.token(&id, SECRET, &aud).await;
            let grant = format!("invented-grant-{i}");
            let scope = format!("invented-scope-{i}");
            s.form(
                "oauth/token",
                &[
                    ("grant_type", grant.as_str()),
                    ("client_id", "billing"),
                    ("client_secret", SECRET),
                    ("audience", ORDERS),
                    ("scope", scope.as_str()),
                ],
            )
            .await;
        }
    });
    futures_util::future::join_all(tokens).await;
    let (_, after) = support::http::get(&format!("{}metrics", s.url)).await;
    assert!(after.contains("method=\"other\""), "{after}");
    for invented in ["INVENTED", "invented-client", "invented-"] {
        assert!(
            !after.contains(invented),
            "{invented} in /metrics:\n{after}"
        );
    }
    let series = after
        .lines()
        .filter(|l| l.starts_with("m2m_issuer_management_calls_total{"))
        .count();
    assert!(series <= 6, "{series} management series:\n{after}");
    assert!(
        after.len() < before.len() + 4096,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    s.sidecar.stop().await;
}

/// The issuer's `/metrics` is unauthenticated: after tokens were issued to
/// every kind of app (admin apps on the management audience, API clients, an
/// app created at runtime, by secret in Basic, form and JSON), it names no
/// client id, so it tells an outsider neither which ids exist nor which are
/// admin apps. The issued count is there, by audience.
#[tokio::test]
async fn issuer_metrics_never_name_a_client_id() {
    let extra = format!(
        "[[issuer.apps]]\nname = \"Tenant\"\nclient_id = \"tenant-7f3a.quiet_app~x\"\nclient_secret = {}\ngrants = {{ {} = [\"orders:read\"] }}\n",
        quote(SECRET),
        quote(ORDERS)
    );
    let s = start("", &extra).await;
    let mgmt = s.mgmt();
    let mut ids: Vec<String> = ["root", "ops", "writer", "gateway", "billing"]
        .map(str::to_owned)
        .to_vec();
    ids.push("tenant-7f3a.quiet_app~x".into());
    let mut orders = 0;
    let mut management = 0;
    for id in ["root", "ops", "writer", "gateway"] {
        s.mgmt_token(id).await;
        management += 1;
    }
    for id in ["billing", "tenant-7f3a.quiet_app~x"] {
        s.orders_token(id, SECRET).await;
        orders += 1;
    }
    // An app created at runtime, with a generated id and secret.
    let root = s.mgmt_token("root").await;
    management += 1;
    let body = format!(
        r#"{{"name":"runtime app","grants":{{{}:["orders:read"]}}}}"#,
        quote(ORDERS)
    );
    let (status, _, app) = s
        .call("POST", "api/v1/apps", Some(&root), Some(&body))
        .await;
    assert_eq!(status, 201, "{app}");
    let created = app["client_id"].as_str().unwrap().to_owned();
    let created_secret = app["client_secret"].as_str().unwrap().to_owned();
    s.orders_token(&created, &created_secret).await;
    orders += 1;
    ids.push(created);
    // The other ways to authenticate: form body and Basic.
    let (status, _, v) = s
        .form(
            "oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "billing"),
                ("client_secret", SECRET),
                ("audience", ORDERS),
            ],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    orders += 1;
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .basic_auth("tenant-7f3a.quiet_app~x", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&audience={}",
            form_urlencoded::byte_serialize(ORDERS.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    orders += 1;
    // Failures, of known and unknown ids, label nothing either.
    for id in ["billing", "root", "no-such-app-3c9d"] {
        let (status, _) = s.token(id, WRONG, ORDERS).await;
        assert_eq!(status, 401, "{id}");
    }
    ids.push("no-such-app-3c9d".into());

    let (status, text) = support::http::get(&format!("{}metrics", s.url)).await;
    assert_eq!(status, 200);
    assert!(!text.contains("client_id"), "{text}");
    for id in &ids {
        // As a label value; the longer (distinctive) ids anywhere at all.
        assert!(
            !text.contains(&format!("\"{id}\"")) && (id.len() < 10 || !text.contains(id.as_str())),
            "{id} in /metrics:\n{text}"
        );
    }
    // Every issued token is counted, by audience only.
    let line = |aud: &str| format!("m2m_issuer_tokens_issued_total{{audience=\"{aud}\"}}");
    assert_eq!(support::metric(&text, &line(ORDERS)), orders, "{text}");
    assert_eq!(support::metric(&text, &line(&mgmt)), management, "{text}");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("m2m_issuer_tokens_issued_total"))
        .collect();
    assert_eq!(series.len(), 2, "{series:?}");
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §2: introspection needs tokens:introspect.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn introspection_needs_the_tokens_introspect_scope() {
    let extra = format!(
        "[[issuer.apps]]\nname = \"blocked introspector\"\nclient_id = \"stale\"\nclient_secret = {}\nblocked = true\ngrants = {{ \"http://127.0.0.1:{{PORT}}/api/v1/\" = [\"tokens:introspect\"] }}\n",
        quote(SECRET)
    );
    let s = start("", &extra).await;
    let admin_token = s.mgmt_token("root").await;
    let orders = s.orders_token("billing", SECRET).await;
    let refused: [(&str, &str, u16); 7] = [
        ("billing", SECRET, 403),
        ("ops", SECRET, 403),
        ("writer", SECRET, 403),
        ("stale", SECRET, 403),
        ("gateway", WRONG, 401),
        ("nobody", SECRET, 401),
        ("", "", 401),
    ];
    for t in [&admin_token, &orders] {
        for (who, secret, want) in refused {
            let (status, _, v) = s.introspect(who, secret, t).await;
            assert_eq!(status, want, "{who}: {v}");
            let text = v.to_string();
            for leaked in ["active", "orders:read", "apps:write", "client_id\":\"root"] {
                assert!(!text.contains(leaked), "{who}: {text}");
            }
        }
        for who in ["gateway", "root"] {
            let (status, _, v) = s.introspect(who, SECRET, t).await;
            assert_eq!(
                (status, &v["active"]),
                (200, &serde_json::Value::Bool(true)),
                "{who}: {v}"
            );
        }
    }
    // Granted at runtime by an app that holds the scope itself: it works at once.
    let (status, _, _) = s
        .call(
            "PUT",
            "api/v1/apps/billing/grants",
            Some(&admin_token),
            Some(&json(serde_json::json!({s.mgmt(): ["tokens:introspect"]}))),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.introspect("billing", SECRET, &orders).await.0, 200);
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §3: blocking revokes every earlier token for good, through a real inbound
// sidecar that polls the revocation feed.
// ---------------------------------------------------------------------------

/// The issuer, and an inbound sidecar in front of an echo upstream that polls
/// the feed every second (both in one process).
async fn inbound_setup() -> (Iss, support::echo::Echo, String) {
    let echo = support::echo::Echo::start().await;
    let issuer = "{ISSUER}";
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\nrevocations_url = {}\nrevocations_interval = \"1s\"\n[[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n",
        quote(&echo.url()),
        quote(issuer),
        quote(ORDERS),
        quote(&format!("{issuer}api/v1/revocations")),
    );
    let s = start(&inbound, "").await;
    support::http::wait_for_status(
        &s.sidecar.admin_url("/readyz"),
        200,
        Duration::from_secs(20),
    )
    .await;
    let url = format!("http://{}/orders/1", s.sidecar.handle.inbound_addr.unwrap());
    (s, echo, url)
}

async fn until_inbound(url: &str, token: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bearer_status(url, token).await != want {
        assert!(tokio::time::Instant::now() < deadline, "never {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the inbound sidecar has polled the feed after `since` (Unix s).
async fn polled_after(s: &Iss, since: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
        let last = support::metric(
            &text,
            "m2m_inbound_revocations_last_success_timestamp_seconds",
        );
        if last > since {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no poll after {since}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now() -> u64 {
    support::jwt::now()
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
        until_inbound(&url, t, 401).await;
    }
    let (status, _, _) = s
        .call("POST", "api/v1/apps/billing/unblock", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    let unblocked_at = now();
    // New tokens work at once (even in the second of the unblock)...
    let fresh = s.orders_token("billing", SECRET).await;
    until_inbound(&url, &fresh, 200).await;
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
    until_inbound(&url, &before_delete, 401).await;
    until_inbound(&url, &reborn, 200).await;
    polled_after(&s, now()).await;
    for t in old.iter().chain([&fresh, &before_delete]) {
        assert_eq!(bearer_status(&url, t).await, 401);
    }
    s.sidecar.stop().await;
}

/// Config apps `victim-0` … `victim-{n-1}` (orders:read, and apps:read on the
/// management API), each `blocked` as `blocked[i]` says.
fn victims(blocked: &[bool]) -> String {
    blocked
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "[[issuer.apps]]\nname = \"victim-{i}\"\nclient_id = \"victim-{i}\"\nclient_secret = {}\nblocked = {b}\n\
                 grants = {{ {} = [\"orders:read\"], \"http://127.0.0.1:{{PORT}}/api/v1/\" = [\"apps:read\"] }}\n",
                quote(SECRET),
                quote(ORDERS)
            )
        })
        .collect()
}

/// `blocked = true` in the config blocks an app the state names too (the
/// state otherwise wins for ids both name), whatever runtime change put it
/// in the state: its token requests are refused and every token issued
/// before that start is dead (introspection, the management API, the feed),
/// permanently. The config never unblocks what the state blocked, and
/// removing `blocked` from the config again does not unblock either: only the
/// management API does, and then only new tokens work.
#[tokio::test]
async fn a_block_in_the_config_wins_over_the_state() {
    // How each victim came to be named by the state (0..=4), and a control (5)
    // the config never blocks.
    let how = [
        "grants changed at runtime",
        "blocked and unblocked at runtime",
        "secret rotated at runtime",
        "copied into the state by another app's change",
        "blocked at runtime (and then in the config too)",
        "control: never blocked in the config",
    ];
    let n = how.len();
    let opts = Opts {
        extra: victims(&[false; 6]),
        ..Opts::default()
    };
    let mut s = start_on(None, tempfile::tempdir().unwrap(), opts).await;
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
    // Tokens issued before the config blocks them (victim-4's before its
    // runtime block).
    let mut old = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let id = format!("victim-{i}");
        old.push((
            s.orders_token(&id, secret).await,
            token_of(&s, &id, secret).await,
        ));
    }
    let (status, _, _) = s
        .call("POST", "api/v1/apps/victim-4/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    // The state names every victim now: without the fix, it would win.
    let state = std::fs::read_to_string(s.dir.path().join("issuer.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    for (i, what) in how.iter().enumerate() {
        let id = format!("victim-{i}");
        let named = state["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["client_id"] == id);
        assert_eq!(named.unwrap()["blocked"], i == 4, "{what}: {id}");
    }

    // The operator blocks 0..=4 in the config and restarts.
    let mut blocked = [true; 6];
    blocked[5] = false;
    s.opts.extra = victims(&blocked);
    let restarted_at = now();
    let s = s.restart().await;
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    for (i, (what, (orders, mgmt))) in how.iter().zip(&old).enumerate().take(5) {
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
    assert!(s.active(orders).await && s.active(mgmt).await, "{}", how[5]);
    s.orders_token("victim-5", SECRET).await;
    assert_eq!(s.call("GET", "api/v1/apps", Some(mgmt), None).await.0, 200);

    // `blocked` taken out of the config again: the state keeps the block.
    let mut s = s;
    s.opts.extra = victims(&[false; 6]);
    let s = s.restart().await;
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    for (i, (what, (orders, _))) in how.iter().zip(&old).enumerate().take(5) {
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
    // Only the management API unblocks; the old tokens stay dead.
    let root = s.mgmt_token("root").await;
    for i in 0..5 {
        let path = format!("api/v1/apps/victim-{i}/unblock");
        assert_eq!(s.call("POST", &path, Some(&root), None).await.0, 200);
        let id = format!("victim-{i}");
        let fresh = s.orders_token(&id, &secrets[i]).await;
        assert!(s.active(&fresh).await, "{}", how[i]);
        let (orders, mgmt) = &old[i];
        assert!(
            !s.active(orders).await && !s.active(mgmt).await,
            "{}",
            how[i]
        );
    }
    s.sidecar.stop().await;
}

#[tokio::test]
async fn revoked_tokens_leave_the_feed_when_they_expire_and_revocation_is_rate_limited() {
    // Tokens living 2 s: entries must leave the feed and the state after that.
    let opts = Opts {
        ttl: "2s",
        ..Opts::default()
    };
    let s = start_on(None, tempfile::tempdir().unwrap(), opts).await;
    let dir = s.dir.path().to_owned();
    let t = s.orders_token("billing", SECRET).await;
    assert_eq!(s.revoke("billing", SECRET, &t).await.0, 200);
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(
        feed["revoked_tokens"].as_array().unwrap().len(),
        1,
        "{feed}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
        if feed["revoked_tokens"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{feed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next change prunes the state file too.
    let root = s.mgmt_token("root").await;
    let (status, _, _) = s
        .call("POST", "api/v1/apps/billing/block", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("issuer.json")).unwrap()).unwrap();
    assert_eq!(state["revoked"], serde_json::json!({}), "{state}");
    s.sidecar.stop().await;

    // Self-revocation is rate-limited per app (30 in a burst).
    let s = start("", "").await;
    let mut answers = Vec::new();
    for _ in 0..35 {
        let t = s.orders_token("billing", SECRET).await;
        answers.push(s.revoke("billing", SECRET, &t).await);
    }
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(
        ok,
        30,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let limited = &answers[34];
    assert_eq!(limited.0, 429, "{:?}", limited.2);
    assert!(limited.1.contains_key("retry-after"));
    let (_, _, feed) = s.call("GET", "api/v1/revocations", None, None).await;
    assert_eq!(feed["revoked_tokens"].as_array().unwrap().len(), 30);
    // Another app is not affected.
    let ops_token = s.mgmt_token("ops").await;
    assert_eq!(s.revoke("ops", SECRET, &ops_token).await.0, 200);
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §5: throttling never refuses correct credentials; ids known or not look alike.
// ---------------------------------------------------------------------------

/// One client authentication at the token endpoint, `how` = post | basic | json.
async fn authenticate(s: &Iss, how: &str, client_id: &str, secret: &str) -> Answer {
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let req = client().post(format!("{}oauth/token", s.url));
    let req = match how {
        "post" => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&audience={}&client_id={}&client_secret={}",
                enc(ORDERS),
                enc(client_id),
                enc(secret)
            )),
        "basic" => req
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", enc(client_id), enc(secret)))
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&audience={}", enc(ORDERS))),
        _ => req.header("content-type", "application/json").body(json(
            serde_json::json!({"audience": ORDERS, "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}),
        )),
    };
    answer(req.send().await.unwrap()).await
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
fn keyholder(dir: &std::path::Path, key: &support::jwt::TestKey) -> String {
    let file = dir.join("keyholder.jwks.json");
    std::fs::write(&file, support::jwt::jwks(&[key])).unwrap();
    format!(
        "[[issuer.apps]]\nname = \"keyholder\"\nclient_id = \"keyholder\"\njwks_file = {}\ngrants = {{ {} = [\"orders:read\"] }}\n",
        quote(file.to_str().unwrap()),
        quote(ORDERS)
    )
}

#[tokio::test]
async fn an_attack_on_an_app_never_locks_its_correct_credentials_out() {
    let keys = tempfile::tempdir().unwrap();
    let key = support::jwt::TestKey::es256("kh");
    let forged = support::jwt::TestKey::es256("kh");
    let s = start("", &keyholder(keys.path(), &key)).await;
    let mut throttled = 0;
    // Strictly interleaved: a wrong secret, then the right one, many times,
    // in each client authentication form.
    for how in ["post", "basic", "json"] {
        for round in 0..14 {
            let (status, headers, v) = authenticate(&s, how, "billing", WRONG).await;
            assert!(
                status == 401 || status == 429,
                "{how} {round}: {status} {v}"
            );
            if status == 429 {
                throttled += 1;
                assert!(headers.contains_key("retry-after"));
            }
            let (status, _, v) = authenticate(&s, how, "billing", SECRET).await;
            assert_eq!(status, 200, "{how} round {round}: the right secret: {v}");
        }
    }
    assert!(throttled >= 20, "failures were throttled ({throttled})");
    // A flood of wrong secrets and forged assertions in parallel with the
    // real client: every real request succeeds.
    let attack = async {
        for wave in 0..4 {
            let wrong = (0..10).map(|i| {
                let s = &s;
                let forged = &forged;
                async move {
                    match i % 4 {
                        0 => authenticate(s, "post", "billing", WRONG).await.0,
                        1 => authenticate(s, "basic", "gateway", WRONG).await.0,
                        2 => s.introspect("gateway", WRONG, "x").await.0,
                        _ => {
                            assert_as(s, forged, "keyholder", &format!("forged-{wave}-{i}"))
                                .await
                                .0
                        }
                    }
                }
            });
            for status in futures_util::future::join_all(wrong).await {
                assert!(status == 401 || status == 429, "{status}");
            }
        }
    };
    let legit = async {
        for i in 0..12 {
            assert_eq!(
                authenticate(&s, "post", "billing", SECRET).await.0,
                200,
                "billing {i}"
            );
            let t = s.orders_token("billing", SECRET).await;
            let (status, _, v) = s.introspect("gateway", SECRET, &t).await;
            assert_eq!(
                (status, &v["active"]),
                (200, &serde_json::Value::Bool(true)),
                "gateway {i}"
            );
            let (status, _, v) = assert_as(&s, &key, "keyholder", &format!("real-{i}")).await;
            assert_eq!(status, 200, "keyholder {i}: {v}");
        }
    };
    tokio::join!(attack, legit);
    let (_, metrics) = support::http::get(&format!("{}metrics", s.url)).await;
    assert!(
        support::metric(&metrics, "m2m_issuer_auth_throttled_total") > 20,
        "{metrics}"
    );
    s.sidecar.stop().await;
}

/// The parts of an answer an attacker compares (not `date`, not the
/// `retry-after` value, which is checked for range).
fn looks(a: &Answer) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let mut h: Vec<(String, String)> =
        a.1.iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| {
                let v = if k == "retry-after" {
                    let n: u64 = v.to_str().unwrap().parse().unwrap();
                    assert!((1..=6).contains(&n), "retry-after {n}");
                    "N".to_owned()
                } else {
                    v.to_str().unwrap().to_owned()
                };
                (k.to_string(), v)
            })
            .collect();
    h.sort();
    (a.0, h, a.2.clone())
}

#[tokio::test]
async fn known_and_unknown_client_ids_answer_alike() {
    let keys = tempfile::tempdir().unwrap();
    let key = support::jwt::TestKey::es256("kh");
    let forged = support::jwt::TestKey::es256("kh");
    // Pairs (known, unknown) per method, failing side by side until both are
    // throttled: each step answers the same. (A fresh issuer per method, so
    // the per-address budget, shared by both, stays out of the way.)
    let mut timing = (Vec::new(), Vec::new());
    for (how, known_id) in [
        ("post", "billing"),
        ("basic", "billing"),
        ("json", "billing"),
    ] {
        let s = start("", "").await;
        let unknown = format!("nobody-{how}");
        for step in 0..12 {
            let t = std::time::Instant::now();
            let known = authenticate(&s, how, known_id, WRONG).await;
            let tk = t.elapsed();
            let t = std::time::Instant::now();
            let other = authenticate(&s, how, &unknown, WRONG).await;
            let tu = t.elapsed();
            assert_eq!(looks(&known), looks(&other), "{how} step {step}");
            if known.0 == 401 {
                timing.0.push(tk);
                timing.1.push(tu);
            }
            assert_eq!(known.0, if step < 10 { 401 } else { 429 }, "{how} {step}");
        }
        // Even now the right credentials work.
        assert_eq!(
            authenticate(&s, how, known_id, SECRET).await.0,
            200,
            "{how}"
        );
        s.sidecar.stop().await;
    }
    // Similar timing while not throttled (medians within 25 ms).
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut timing.0), median(&mut timing.1));
    assert!(
        k.abs_diff(u) < Duration::from_millis(25),
        "known {k:?} vs unknown {u:?}"
    );
    let s = start("", &keyholder(keys.path(), &key)).await;
    // Assertions: a known app's forged signature, an unknown iss, an app
    // without keys: the same answer.
    let answers = [
        assert_as(&s, &forged, "keyholder", "a1").await,
        assert_as(&s, &forged, "nobody", "a2").await,
        assert_as(&s, &forged, "billing", "a3").await,
    ];
    let first = looks(&answers[0]);
    for a in &answers[1..] {
        assert_eq!(looks(a), first);
    }
    assert_eq!(assert_as(&s, &key, "keyholder", "a4").await.0, 200);
    s.sidecar.stop().await;
}

#[tokio::test]
async fn an_inbound_sidecars_introspection_client_cannot_be_locked_out() {
    let echo = support::echo::Echo::start().await;
    let inbound = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = \"{{ISSUER}}\"\naudiences = [{}]\n[inbound.introspection]\nclient_id = \"gateway\"\nclient_secret = {}\ncache_ttl = \"1s\"\n[[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n",
        quote(&echo.url()),
        quote(ORDERS),
        quote(SECRET),
    );
    let s = start(&inbound, "").await;
    support::http::wait_for_status(
        &s.sidecar.admin_url("/readyz"),
        200,
        Duration::from_secs(20),
    )
    .await;
    let url = format!("http://{}/orders/1", s.sidecar.handle.inbound_addr.unwrap());
    let attack = (0..60).map(|i| {
        let s = &s;
        async move {
            if i % 2 == 0 {
                s.introspect("gateway", WRONG, "x").await.0
            } else {
                authenticate(s, "basic", "gateway", WRONG).await.0
            }
        }
    });
    let statuses = futures_util::future::join_all(attack).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    // Every new token needs a fresh introspection call: all pass.
    for i in 0..10 {
        let t = s.orders_token("billing", SECRET).await;
        assert_eq!(bearer_status(&url, &t).await, 200, "token {i}");
    }
    let (_, text) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
    assert_eq!(
        support::metric(&text, "m2m_inbound_introspections_total{outcome=\"error\"}"),
        0,
        "{text}"
    );
    assert!(
        support::metric(
            &text,
            "m2m_inbound_introspections_total{outcome=\"active\"}"
        ) >= 10
    );
    assert_eq!(echo.seen().len(), 10);
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §7: duplicate JSON keys and out-of-range durations.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_json_keys_are_refused_at_every_level() {
    let s = start("", "").await;
    let root = s.mgmt_token("root").await;
    let good =
        format!(r#""grant_type":"client_credentials","audience":"{ORDERS}","client_id":"billing""#);
    let bodies = [
        format!(r#"{{{good},"client_secret":"{WRONG}","client_secret":"{SECRET}"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","client_secret":"{WRONG}"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","client_\u0073ecret":"{WRONG}"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","audience":"https://other"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","client_id":"root"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","grant_type":"client_credentials"}}"#),
        format!(
            r#"{{{good},"client_secret":"{SECRET}","scope":"orders:read","scope":"orders:write"}}"#
        ),
    ];
    for body in &bodies {
        let resp = client()
            .post(format!("{}oauth/token", s.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, _, v) = answer(resp).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {v}"
        );
        assert!(v.get("access_token").is_none());
    }
    // The same without the repetition works.
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/json")
        .body(format!(r#"{{{good},"client_secret":"{SECRET}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let m = s.mgmt();
    let before_apps = s.client_ids().await;
    let before_billing = s.app("billing").await;
    let cases: [(&str, &str, String); 10] = [
        (
            "POST",
            "api/v1/apps",
            r#"{"name":"a","name":"b","client_id":"dup1"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apps",
            r#"{"name":"a","client_id":"dup2","client_id":"dup3"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apps",
            format!(
                r#"{{"name":"a","client_id":"dup4","grants":{{"{ORDERS}":["orders:read"],"{ORDERS}":["orders:write"]}}}}"#
            ),
        ),
        (
            "POST",
            "api/v1/apps",
            r#"{"name":"a","client_id":"dup5","jwks":{"keys":[],"keys":[{"kty":"EC"}]}}"#.into(),
        ),
        (
            "PUT",
            "api/v1/apps/billing/grants",
            format!(r#"{{"{ORDERS}":["orders:read"],"{ORDERS}":[]}}"#),
        ),
        (
            "PUT",
            "api/v1/apps/billing/grants",
            format!(r#"{{"{m}":[],"{m}":["apps:write"]}}"#),
        ),
        (
            "PATCH",
            "api/v1/apps/billing",
            r#"{"blocked":false,"blocked":true}"#.into(),
        ),
        (
            "PATCH",
            "api/v1/apps/billing",
            r#"{"name":"x","n\u0061me":"y"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apps/billing/secrets",
            r#"{"grace":"1h","grace":"0s"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apis",
            r#"{"name":"D","identifier":"https://d","identifier":"https://e"}"#.into(),
        ),
    ];
    for (method, path, body) in &cases {
        let (status, _, v) = s.call(method, path, Some(&root), Some(body)).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{method} {path} {body}: {v}"
        );
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{v}"
        );
    }
    assert_eq!(s.client_ids().await, before_apps);
    assert_eq!(s.app("billing").await, before_billing);
    s.orders_token("billing", SECRET).await;
    s.sidecar.stop().await;
}

#[tokio::test]
async fn grace_periods_out_of_range_are_refused() {
    let s = start("", "").await;
    let root = s.mgmt_token("root").await;
    for grace in [
        "18446744073709551615s",
        "18446744073709551615",
        "31days",
        "2592001s",
        "100000h",
        "1000years",
        "-1s",
        "1e9s",
        "abc",
        "721h",
        "30days 1s",
    ] {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps/billing/secrets",
                Some(&root),
                Some(&json(serde_json::json!({ "grace": grace }))),
            )
            .await;
        assert_eq!(status, 400, "{grace}: {v}");
        assert!(v.get("client_secret").is_none());
        // Nothing rotated: the old secret still works.
        s.orders_token("billing", SECRET).await;
    }
    for body in [
        r#"{"grace":1}"#,
        r#"{"grace":null,"x":1}"#,
        r#"{"grace":["1h"]}"#,
    ] {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps/billing/secrets",
                Some(&root),
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{body}: {v}");
    }
    // The bound itself is accepted, and the old secret stays valid within it.
    let (status, _, v) = s
        .call(
            "POST",
            "api/v1/apps/billing/secrets",
            Some(&root),
            Some(&json(serde_json::json!({"grace": "30days"}))),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    s.orders_token("billing", SECRET).await;
    s.orders_token("billing", v["client_secret"].as_str().unwrap())
        .await;
    s.sidecar.stop().await;
}

// ---------------------------------------------------------------------------
// §4 (issuer): request bodies must arrive within body_read_timeout.
// ---------------------------------------------------------------------------

/// How a slow client sends its body after the head.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// `Content-Length: 200` and nothing.
    Nothing,
    /// One byte every 300 ms, forever.
    Trickle,
    /// Half the body at once, then nothing.
    Half,
    /// Chunked, one chunk, never the last.
    Chunked,
}

async fn slow_request(
    port: u16,
    method: &str,
    path: &str,
    auth: &str,
    slow: Slow,
) -> (u16, Duration, bool) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let framing = match slow {
        Slow::Chunked => "Transfer-Encoding: chunked".to_owned(),
        _ => "Content-Length: 200".to_owned(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    );
    let started = tokio::time::Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        match slow {
            Slow::Nothing => {}
            Slow::Half => {
                let _ = wr.write_all(&[b'a'; 100]).await;
            }
            Slow::Chunked => {
                let _ = wr.write_all(b"5\r\nabcde\r\n").await;
            }
            Slow::Trickle => {
                for _ in 0..200 {
                    if wr.write_all(b"a").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        // Keep the write half open (no FIN) until the test is done.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    let limit = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(limit, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    writer.abort();
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, elapsed, closed)
}

#[tokio::test]
async fn slow_bodies_are_cut_off_with_408() {
    let s = start("[limits]\nbody_read_timeout = \"1s\"\n", "").await;
    let root = s.mgmt_token("root").await;
    let bearer = format!("Authorization: Bearer {root}\r\n");
    let targets: [(&str, &str, &str); 6] = [
        ("POST", "/oauth/token", ""),
        ("POST", "/oauth/introspect", ""),
        ("POST", "/oauth/revoke", ""),
        ("POST", "/api/v1/apps", &bearer),
        ("PUT", "/api/v1/apps/billing/grants", &bearer),
        ("POST", "/api/v1/apps/billing/secrets", &bearer),
    ];
    let mut runs = Vec::new();
    for (method, path, auth) in targets {
        for slow in [Slow::Nothing, Slow::Trickle, Slow::Half, Slow::Chunked] {
            let port = s.port;
            runs.push(async move {
                let (status, took, closed) = slow_request(port, method, path, auth, slow).await;
                (method, path, slow, status, took, closed)
            });
        }
    }
    for (method, path, slow, status, took, closed) in futures_util::future::join_all(runs).await {
        assert_eq!(status, 408, "{method} {path} {slow:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{method} {path} {slow:?}: {took:?}"
        );
        assert!(closed, "{method} {path} {slow:?}: the connection is closed");
    }
    // Nothing the slow requests carried took effect.
    assert_eq!(
        s.app("billing").await["grants"][ORDERS],
        serde_json::json!(["orders:read", "orders:write"])
    );
    s.orders_token("billing", SECRET).await;
    // A body that arrives in time is served.
    let (status, _, _) = s
        .call(
            "POST",
            "api/v1/apps",
            Some(&root),
            Some(r#"{"name":"in time"}"#),
        )
        .await;
    assert_eq!(status, 201);
    s.sidecar.stop().await;

    // The knob: default 10 s, checked.
    let config = m2m_sidecar::config::load_str("", m2m_sidecar::config::Format::Toml).unwrap();
    assert_eq!(config.limits.body_read_timeout, Duration::from_secs(10));
    let err = m2m_sidecar::config::load_str(
        "[limits]\nbody_read_timeout = \"0s\"\n",
        m2m_sidecar::config::Format::Toml,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("limits.body_read_timeout"), "{err}");
}

// ---------------------------------------------------------------------------
// §8 (issuer): replay memory and JWKS are bounded.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn long_assertion_jtis_are_refused_and_replays_still_caught() {
    let keys = tempfile::tempdir().unwrap();
    let key = support::jwt::TestKey::es256("kh");
    let s = start("", &keyholder(keys.path(), &key)).await;
    for len in [257, 1000, 5700, 64 * 1024 - 1024] {
        let jti = "j".repeat(len);
        let (status, _, v) = assert_as(&s, &key, "keyholder", &jti).await;
        assert!(status == 401 || status == 400, "{len}: {v}");
        let text = v.to_string();
        assert!(
            text.contains("jti is longer than 256 bytes") || text.contains("larger than"),
            "{len}: {text}"
        );
    }
    let jti = "k".repeat(256);
    assert_eq!(assert_as(&s, &key, "keyholder", &jti).await.0, 200);
    let (status, _, v) = assert_as(&s, &key, "keyholder", &jti).await;
    assert_eq!(status, 401, "replay: {v}");
    assert!(v.to_string().contains("already used"), "{v}");
    s.sidecar.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_the_jwks_bounded() {
    let s = start("", "").await;
    let mut tokens = vec![s.orders_token("billing", SECRET).await];
    for i in 0..8 {
        // A fresh admin token each time: the one from five rotations ago dies.
        let root = s.mgmt_token("root").await;
        let (status, _, v) = s
            .call("POST", "api/v1/keys/rotate", Some(&root), None)
            .await;
        assert_eq!(status, 200, "rotation {i}: {v}");
        let (_, jwks) = support::http::get(&format!("{}.well-known/jwks.json", s.url)).await;
        let doc: serde_json::Value = serde_json::from_str(&jwks).unwrap();
        let n = doc["keys"].as_array().unwrap().len();
        assert_eq!(n, (i + 2).min(5), "rotation {i}");
        assert!(jwks.len() < 4096, "{} bytes", jwks.len());
        tokens.push(s.orders_token("billing", SECRET).await);
    }
    // tokens[k] was signed by the key of rotation k: the newest five verify.
    for (k, t) in tokens.iter().enumerate() {
        assert_eq!(s.active(t).await, k + 5 > 8, "token {k}");
    }
    let s = s.restart().await;
    let (_, jwks) = support::http::get(&format!("{}.well-known/jwks.json", s.url)).await;
    let doc: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(doc["keys"].as_array().unwrap().len(), 5, "after a restart");
    s.sidecar.stop().await;
}

/// `apps:write` alone changes apps but reads none: a change answers only the
/// app's id, and a refusal for an app holding more says nothing of its scopes.
#[tokio::test]
async fn apps_write_alone_reads_nothing() {
    let s = start("", "").await;
    let writer = s.mgmt_token("writer").await;
    let ops = s.mgmt_token("ops").await;
    let grants = serde_json::json!({ORDERS: ["orders:read"]});
    for (method, path, body) in [
        (
            "PATCH",
            "api/v1/apps/billing",
            Some(json(serde_json::json!({}))),
        ),
        (
            "PATCH",
            "api/v1/apps/billing",
            Some(json(serde_json::json!({"name": "billing"}))),
        ),
        (
            "PUT",
            "api/v1/apps/billing/grants",
            Some(json(grants.clone())),
        ),
        ("POST", "api/v1/apps/billing/unblock", None),
    ] {
        let (status, _, v) = s.call(method, path, Some(&writer), body.as_deref()).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(
            v,
            serde_json::json!({"client_id": "billing"}),
            "{method} {path}"
        );
        // A caller that may read gets the record.
        let (status, _, v) = s.call(method, path, Some(&ops), body.as_deref()).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert!(v.get("grants").is_some(), "{method} {path}: {v}");
    }
    // Refused for an app holding management scopes the writer lacks, without naming them.
    let (status, headers, v) = s
        .call(
            "PATCH",
            "api/v1/apps/root",
            Some(&writer),
            Some(&json(serde_json::json!({}))),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    let text = format!("{v} {headers:?}");
    for scope in ALL_MGMT.iter().filter(|s| **s != "apps:write") {
        assert!(!text.contains(scope), "{scope} named: {text}");
    }
}
