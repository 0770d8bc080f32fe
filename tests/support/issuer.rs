//! The built-in issuer in process, with its listener bound before its config
//! is written (so the config can name its URL), serving the "Orders API" and
//! the apps a test grants on it:
//! `Issuer::start(&OrdersApi::new().app(App::new("billing", SECRET).orders(&["orders:read"])))`.

use super::config::{SidecarConfig, quote};
use super::sidecar::Sidecar;
use std::fmt::Write as _;

/// The Orders API's identifier (its tokens' audience).
pub const ORDERS: &str = "https://orders.example.com";

/// In a grant, the issuer's own management API (`{url}api/v1/`), whose URL is
/// known only once the issuer's port is.
pub const MGMT: &str = "<the management API>";

/// An `[[issuer.apps]]` table.
#[derive(Clone, Debug)]
pub struct App {
    lines: Vec<(String, String)>,
    grants: Vec<(String, Vec<String>)>,
}

impl App {
    /// App `client_id` (named the same) with the literal secret `secret`.
    pub fn new(client_id: &str, secret: &str) -> Self {
        App::keyed(client_id).with("client_secret", &quote(secret))
    }

    /// App `client_id` without a secret (give it keys with [`App::with`]).
    pub fn keyed(client_id: &str) -> Self {
        App {
            lines: vec![
                ("name".into(), quote(client_id)),
                ("client_id".into(), quote(client_id)),
            ],
            grants: Vec::new(),
        }
    }

    /// Set (or replace) a key; `value` is TOML (strings quoted: use [`quote`]).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.lines.retain(|(k, _)| k != key);
        self.lines.push((key.into(), value.into()));
        self
    }

    pub fn named(self, name: &str) -> Self {
        self.with("name", &quote(name))
    }

    pub fn blocked(self, blocked: bool) -> Self {
        self.with("blocked", &blocked.to_string())
    }

    /// Grant `scopes` on `audience` ([`MGMT`] for the management API).
    pub fn grant(mut self, audience: &str, scopes: &[&str]) -> Self {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.grants.push((audience.to_owned(), scopes));
        self
    }

    /// Grant `scopes` on the Orders API.
    pub fn orders(self, scopes: &[&str]) -> Self {
        self.grant(ORDERS, scopes)
    }

    /// Grant `scopes` on the management API.
    pub fn mgmt(self, scopes: &[&str]) -> Self {
        self.grant(MGMT, scopes)
    }

    fn write(&self, out: &mut String, mgmt: &str) {
        out.push_str("[[issuer.apps]]\n");
        for (k, v) in &self.lines {
            let _ = writeln!(out, "{k} = {v}");
        }
        if self.grants.is_empty() {
            return;
        }
        let grants: Vec<String> = self
            .grants
            .iter()
            .map(|(aud, scopes)| {
                let aud = if aud == MGMT { mgmt } else { aud };
                let scopes: Vec<String> = scopes.iter().map(|s| quote(s)).collect();
                format!("{} = [{}]", quote(aud), scopes.join(", "))
            })
            .collect();
        let _ = writeln!(out, "grants = {{ {} }}", grants.join(", "));
    }
}

/// An `[issuer]` table: its settings, the Orders API ([`ORDERS`]) and apps.
#[derive(Clone, Debug)]
pub struct OrdersApi {
    settings: Vec<(String, String)>,
    scopes: Vec<String>,
    apps: Vec<App>,
}

impl Default for OrdersApi {
    fn default() -> Self {
        Self::new()
    }
}

impl OrdersApi {
    /// Tokens living an hour; the API's scopes `orders:read` and `orders:write`; no app.
    pub fn new() -> Self {
        OrdersApi {
            settings: vec![("token_ttl".into(), quote("1h"))],
            scopes: vec!["orders:read".into(), "orders:write".into()],
            apps: Vec::new(),
        }
    }

    /// The API's scopes instead of `orders:read` and `orders:write`.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// An `[issuer]` setting (`signing_alg`, `token_ttl`); `value` is TOML.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.into(), value.into()));
        self
    }

    pub fn app(mut self, app: App) -> Self {
        self.apps.push(app);
        self
    }

    /// The apps, for a test that changes one and restarts.
    pub fn apps_mut(&mut self) -> &mut Vec<App> {
        &mut self.apps
    }

    /// The whole `[issuer]` table of an issuer listening on `listen` (a port),
    /// named `url`, keeping its state in `state_dir`.
    pub fn toml(&self, listen: u16, url: &str, state_dir: &std::path::Path) -> String {
        let store = format!("sqlite://{}", state_dir.join("issuer.db").display());
        let mut out = format!(
            "[issuer]\nlisten = \"127.0.0.1:{listen}\"\nurl = {}\nstore = {}\n",
            quote(url),
            quote(&store)
        );
        for (k, v) in &self.settings {
            let _ = writeln!(out, "{k} = {v}");
        }
        let scopes: Vec<String> = self.scopes.iter().map(|s| quote(s)).collect();
        let _ = writeln!(
            out,
            "[[issuer.apis]]\nname = \"Orders API\"\nidentifier = {}\nscopes = [{}]",
            quote(ORDERS),
            scopes.join(", ")
        );
        let mgmt = format!("{url}api/v1/");
        for app in &self.apps {
            app.write(&mut out, &mgmt);
        }
        out
    }
}

/// An issuer about to start: its port bound, its state directory made.
pub struct Reserved {
    listener: tokio::net::TcpListener,
    pub port: u16,
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Reserved {
    pub async fn new() -> Self {
        Self::on(0, tempfile::tempdir().unwrap()).await
    }

    /// On `port` (0: any) with the state in `dir`.
    pub async fn on(port: u16, dir: tempfile::TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        Reserved {
            listener,
            port,
            url: format!("http://127.0.0.1:{port}/"),
            dir,
        }
    }

    /// The management API's audience.
    pub fn mgmt(&self) -> String {
        format!("{}api/v1/", self.url)
    }

    pub fn token_url(&self) -> String {
        format!("{}oauth/token", self.url)
    }

    /// Write `text` to the file `name` in the state directory; its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Start a sidecar with `around` (credentials, listeners) and this issuer serving `api`.
    pub async fn start(self, around: SidecarConfig, api: &OrdersApi) -> Issuer {
        let config = around.raw(&api.toml(self.port, &self.url, self.dir.path()));
        Issuer {
            sidecar: Sidecar::start_with(&config, Some(self.listener)).await,
            url: self.url,
            port: self.port,
            dir: self.dir,
        }
    }
}

/// A running issuer (and whatever else its sidecar runs).
pub struct Issuer {
    pub sidecar: Sidecar,
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    /// The state directory (`issuer.db`, `store.key`).
    pub dir: tempfile::TempDir,
}

impl Issuer {
    /// The issuer alone, serving `api`.
    pub async fn start(api: &OrdersApi) -> Self {
        Reserved::new().await.start(SidecarConfig::new(), api).await
    }

    /// Stop, and start again alone on the same port and state, serving `api`.
    pub async fn restart(self, api: &OrdersApi) -> Self {
        self.sidecar.stop().await;
        Reserved::on(self.port, self.dir)
            .await
            .start(SidecarConfig::new(), api)
            .await
    }

    /// The management API's audience.
    pub fn mgmt(&self) -> String {
        format!("{}api/v1/", self.url)
    }

    /// The seed's JSON token request: status and answer.
    pub async fn token(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
    ) -> (u16, serde_json::Value) {
        super::http::token_json(&self.url, client_id, secret, audience).await
    }

    /// An access token for `audience`, which must be issued.
    pub async fn access_token(&self, client_id: &str, secret: &str, audience: &str) -> String {
        let (status, v) = self.token(client_id, secret, audience).await;
        assert_eq!(status, 200, "{client_id}: {v}");
        v["access_token"].as_str().unwrap().to_owned()
    }
}
