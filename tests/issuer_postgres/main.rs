//! The issuer on PostgreSQL, for real: two or three `m2m-sidecar issuer`
//! processes (replicas) on one database of a throwaway PostgreSQL
//! (`support::postgres`), each on its own port, all with the same `url` (the
//! `iss`), as replicas behind one Service would be. A change through one
//! replica reaches the others within a second (the delays seen are printed:
//! `cargo test --test issuer_postgres -- --nocapture`); concurrent writes
//! lose nothing; a crash, a restart of the database or a cut connection
//! leaves it consistent. Skipped without PostgreSQL, unless `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod changes;
mod feed;
mod outage;
mod start;
mod tls;
mod tokens;
mod writes;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use support::config::quote;
use support::issuer::{App, ORDERS, OrdersApi};
use support::poll::Outcome;
use support::postgres::Cluster;
use support::process::{Running, write_config};

/// Every replica's `url` (the `iss` of its tokens); where each listens is
/// another, random, port.
const URL: &str = "http://127.0.0.1:1/";

const ADMIN_SECRET: &str = "admin-secret-0123456789abcdef0123456789";

/// `billing`, an app of the config (every replica knows it from the start).
const BILLING_SECRET: &str = "billing-secret-0123456789abcdef0123456789";

/// How soon a change through one replica must take effect on the others.
const PROPAGATION: Duration = Duration::from_secs(1);

/// The environment variable holding the database password.
const PASSWORD_ENV: &str = "PGPW";

/// The management API's audience (the same on every replica).
fn mgmt() -> String {
    format!("{URL}api/v1/")
}

/// The Orders API; `admin` with every management scope; `billing` with
/// `orders:read`.
fn api() -> OrdersApi {
    let all = m2m_sidecar::config::MANAGEMENT_SCOPES;
    OrdersApi::new()
        .app(App::new("admin", ADMIN_SECRET).mgmt(&all))
        .app(App::new("billing", BILLING_SECRET).orders(&["orders:read"]))
}

/// One cluster for the tests that do not stop it, started by the first that
/// needs it and stopped when the last one holding it is done.
fn shared_cluster() -> Option<Arc<Cluster>> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    let c = Arc::new(Cluster::start()?);
    *shared = Arc::downgrade(&c);
    Some(c)
}

/// 32 random bytes, base64: a `store_key`.
fn new_store_key() -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    )
}

/// A fresh database of a cluster, and the store key its replicas use.
struct Database {
    cluster: Arc<Cluster>,
    name: String,
    store_key: String,
}

impl Database {
    /// Database `name` (unique in the test binary) on `cluster`.
    fn new(cluster: Arc<Cluster>, name: &str) -> Self {
        cluster.create_database(name);
        Database {
            cluster,
            name: name.to_owned(),
            store_key: new_store_key(),
        }
    }

    /// `sql` in this database (psql, unaligned, no headers).
    fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }

    /// The one number `sql` selects.
    fn count(&self, sql: &str) -> i64 {
        let out = self.psql(sql);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: {e}: {out}"))
    }

    /// A replica's config serving `api` on this database with `store_key`.
    fn config_with_key(&self, api: &OrdersApi, store_key: &str) -> tempfile::NamedTempFile {
        self.config_with(api, store_key, "")
    }

    /// [`Database::config_with_key`] with `extra` lines in `[issuer]`.
    fn config_with(
        &self,
        api: &OrdersApi,
        store_key: &str,
        extra: &str,
    ) -> tempfile::NamedTempFile {
        let dir = tempfile::tempdir().unwrap();
        let text: String = api
            .toml(0, URL, dir.path())
            .lines()
            .map(|l| {
                if l.starts_with("store = ") {
                    format!(
                        "store = {}\nstore_password = {{ env = \"{PASSWORD_ENV}\" }}\nstore_key = {}\n{extra}",
                        quote(&self.cluster.url(&self.name)),
                        quote(store_key)
                    )
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        write_config(&text)
    }

    fn config(&self, api: &OrdersApi) -> tempfile::NamedTempFile {
        self.config_with_key(api, &self.store_key)
    }

    /// The environment of a replica: the database password.
    fn env(&self) -> [(&str, &str); 1] {
        [(PASSWORD_ENV, self.cluster.password())]
    }

    /// A replica on `config`, ready.
    async fn replica(&self, config: &Path) -> Replica {
        let (run, addr) = Running::issuer(config, &self.env()).await;
        Replica {
            run,
            url: format!("http://{addr}/"),
        }
    }

    /// `N` replicas serving [`api`], started together.
    async fn replicas<const N: usize>(&self) -> ([Replica; N], tempfile::NamedTempFile) {
        let config = self.config(&api());
        let started =
            futures_util::future::join_all((0..N).map(|_| self.replica(config.path()))).await;
        let Ok(replicas) = <[Replica; N]>::try_from(started) else {
            unreachable!()
        };
        self.listening(N).await;
        (replicas, config)
    }

    /// Wait until `n` replicas listen on the change feed. A replica says it
    /// is ready before its listening connection is up (a change made
    /// meanwhile reaches it when it is, by the catch-up): the delays
    /// measured are those of replicas following the feed.
    async fn listening(&self, n: usize) {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'm2m-sidecar issuer' \
             AND query IN ('LISTEN m2m_issuer_changes', 'SELECT 1')",
            self.name
        );
        let since = Instant::now();
        took(&format!("{n} replicas listening"), since, async || {
            is(self.count(&sql), i64::try_from(n).unwrap())
        })
        .await;
    }
}

/// One `m2m-sidecar issuer` process.
struct Replica {
    run: Running,
    /// `http://127.0.0.1:PORT/`, where it listens.
    url: String,
}

impl Replica {
    /// `kill -9`, and wait for it to be gone.
    async fn kill(&mut self) {
        self.run.signal("-KILL");
        self.run.exit(support::LONG).await;
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the process.
    fn freeze(&self, frozen: bool) {
        self.run.signal(if frozen { "-STOP" } else { "-CONT" });
    }

    /// Its log, to show when something fails.
    fn log(&self) -> String {
        self.run.lines.lock().unwrap().join("\n")
    }
}

/// One HTTP client for every request of the tests (building one costs tens
/// of milliseconds in a debug build, which would blur the delays measured).
/// It keeps no idle connection: each test has its own runtime, and a pooled
/// connection would belong to the runtime that made it.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    });
    &CLIENT
}

/// A management call: status and JSON answer (`Null` if empty).
async fn call(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    try_call(base, method, path, bearer, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {base}{path}: {e}"))
}

/// [`call`], or why no answer came (the replica is gone).
async fn try_call(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let mut req = client().request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?
    };
    Ok((status, json))
}

/// A token request (JSON body): status and answer.
async fn token(
    base: &str,
    client_id: &str,
    secret: &str,
    audience: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"audience": audience, "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret});
    call(base, "POST", "oauth/token", None, Some(body)).await
}

/// An access token, which must be issued.
async fn access_token(base: &str, client_id: &str, secret: &str, audience: &str) -> String {
    let (status, v) = token(base, client_id, secret, audience).await;
    assert_eq!(status, 200, "{client_id} at {base}: {v}");
    v["access_token"].as_str().unwrap().to_owned()
}

/// A management token of `admin`.
async fn admin_token(base: &str) -> String {
    access_token(base, "admin", ADMIN_SECRET, &mgmt()).await
}

/// Introspection of `token` at `base`, as `admin`.
async fn introspect(base: &str, token: &str) -> serde_json::Value {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", token),
            ("client_id", "admin"),
            ("client_secret", ADMIN_SECRET),
        ])
        .finish();
    let resp = client()
        .post(format!("{base}oauth/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The JWKS a replica serves.
async fn jwks(base: &str) -> serde_json::Value {
    let (status, v) = call(base, "GET", ".well-known/jwks.json", None, None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The kids of a JWKS.
fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The claims of `token` (for `audience`), verified with a key of `jwks`.
fn verify(jwks: &serde_json::Value, token: &str, audience: &str) -> serde_json::Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let kid = kid_of(token);
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[audience]);
    v.set_issuer(&[URL]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("the token does not verify against {jwks}: {e}"))
        .claims
}

/// Create app `name` granted `scopes` on the Orders API through `base`:
/// its client id and secret.
async fn create_app(base: &str, admin: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let (status, app) = call(
        base,
        "POST",
        "api/v1/apps",
        Some(admin),
        Some(serde_json::json!({"name": name, "grants": {ORDERS: scopes}})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// Whether a replica says app `id` is blocked (`None`: it knows no such app).
async fn is_blocked(base: &str, admin: &str, id: &str) -> Option<bool> {
    let (status, v) = call(base, "GET", &format!("api/v1/apps/{id}"), Some(admin), None).await;
    (status == 200).then(|| v["blocked"].as_bool().unwrap())
}

/// Every app a replica lists (all pages).
async fn listed_apps(base: &str, admin: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "api/v1/apps?limit=1000".to_owned(),
            Some(a) => format!("api/v1/apps?limit=1000&after={a}"),
        };
        let (status, page) = call(base, "GET", &path, Some(admin), None).await;
        assert_eq!(status, 200, "{page}");
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["client_id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return ids,
        }
    }
}

/// Every record of the audit log, read `limit` at a time.
async fn audit_log(base: &str, admin: &str, limit: usize) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("api/v1/audit?limit={limit}"),
            Some(a) => format!("api/v1/audit?limit={limit}&after={a}"),
        };
        let (status, page) = call(base, "GET", &path, Some(admin), None).await;
        assert_eq!(status, 200, "{page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit, "{page}");
        items.extend(got.iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return items,
        }
    }
}

/// How often a propagation check polls. A check that makes failing token
/// requests (an unknown client or secret) polls every [`SLOW_STEP`]: the
/// token endpoint throttles a client after 10 failures (429, and half a
/// second's delay), which would hide the change.
const STEP: Duration = Duration::from_millis(5);
const SLOW_STEP: Duration = Duration::from_millis(50);

/// Wait until `check` holds (polled every [`STEP`], for at most
/// [`support::LONG`]); print how long it took since `since` and fail if that
/// is more than [`PROPAGATION`]. Its value.
async fn propagated<O: Outcome>(
    what: &str,
    since: Instant,
    check: impl AsyncFnMut() -> O,
) -> O::Value {
    within(PROPAGATION, STEP, what, since, check).await
}

/// Wait until `check` holds (polled every `step`, for at most
/// [`support::LONG`]); print how long it took since `since` and fail if that
/// is more than `limit`. Its value.
async fn within<O: Outcome>(
    limit: Duration,
    step: Duration,
    what: &str,
    since: Instant,
    check: impl AsyncFnMut() -> O,
) -> O::Value {
    let (value, took) = took_every(step, what, since, check).await;
    assert!(took <= limit, "{what}: took {took:?}, more than {limit:?}");
    value
}

/// Wait until `check` holds (polled every [`STEP`], for at most
/// [`support::LONG`] after `since`); print and return how long it took.
async fn took<O: Outcome>(
    what: &str,
    since: Instant,
    check: impl AsyncFnMut() -> O,
) -> (O::Value, Duration) {
    took_every(STEP, what, since, check).await
}

async fn took_every<O: Outcome>(
    step: Duration,
    what: &str,
    since: Instant,
    mut check: impl AsyncFnMut() -> O,
) -> (O::Value, Duration) {
    let deadline = since + support::LONG;
    loop {
        match check().await.done() {
            Ok(value) => {
                let took = since.elapsed();
                eprintln!("delay: {what}: {} ms", took.as_millis());
                return (value, took);
            }
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out after {:?} waiting for {what}; last seen: {seen}",
                support::LONG
            ),
        }
        tokio::time::sleep(step).await;
    }
}

/// `Ok` when `got` is `want`, else what was seen.
fn is<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got:?}, not {want:?}"))
    }
}
