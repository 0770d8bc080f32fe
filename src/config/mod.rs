//! Configuration: loading (figment: file + `M2M_` environment), the validated types
//! the rest of the crate runs on, and the redacted summary `check` prints.
//!
//! Parse → validate (every problem, each with its key path) → run. The raw option
//! types live in [`raw`]; [`validate`] is the only way from them to a [`Config`].

mod env;
mod load;
pub mod raw;
mod summary;
mod validate;

pub use load::{Format, load_file, load_file_text, load_str};
pub use summary::{redact_url, summary};
pub use validate::validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// A validated sidecar configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub admin: AdminSettings,
    pub credentials: Vec<Arc<CredentialSpec>>,
    pub outbound: Vec<OutboundSpec>,
    pub drain_timeout: Duration,
    pub worker_threads: Option<usize>,
    pub token_cache_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Problems that do not stop the sidecar (logged at start, printed by `check`).
    pub warnings: Vec<Issue>,
    /// `[issuer]`: the built-in authorization server, when configured.
    pub issuer: Option<IssuerSpec>,
    /// `[inbound]`: token verification in front of the local service.
    pub inbound: Option<InboundSpec>,
    /// `[forward_proxy]`: the `HTTP_PROXY` listener.
    pub forward_proxy: Option<ForwardProxySpec>,
}

/// What every listener allows a client, and how it stops (reloadable).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open connections per listener; beyond it a new one is closed at once.
    pub max_connections: usize,
    /// The largest request head (request line and headers); beyond it, 431.
    pub max_header_bytes: usize,
    /// Time allowed to send a request head, and to start the next one on an idle
    /// keep-alive connection (slowloris guard).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long
    /// (HTTP/2: GOAWAY first); HTTP/1.1 keep-alive connections are also held
    /// to `header_read_timeout` for their next request head.
    pub idle_timeout: Duration,
    /// The largest request body the sidecar reads itself (the issuer's token,
    /// introspection and management requests); proxied bodies are streamed.
    pub max_body_bytes: usize,
    /// Time allowed to send such a body in full; beyond it, 408 (as nginx's
    /// `client_body_timeout`, but for the whole body).
    pub body_read_timeout: Duration,
    /// After SIGTERM: `/readyz` is 503 at once, new connections are still
    /// accepted for this long, then in-flight requests get `drain_timeout`.
    pub drain_grace: Duration,
    pub drain_timeout: Duration,
    /// One `access` log line per proxied request.
    pub access_log: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            drain_grace: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(15),
            access_log: true,
        }
    }
}

/// Where an inbound sidecar gets its verification keys.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    JwksUrl(Url),
    /// RFC 8414 discovery from the issuer (then OIDC discovery).
    Discovery(Url),
    JwksFile(PathBuf),
    /// A shared secret for HS256/384/512, the only key when configured.
    Hmac(SecretSource),
}

/// What a request that no rule matches needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    Deny,
    Authenticated,
}

/// One `[[inbound.rules]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// The path without a trailing `/*`.
    pub path: String,
    pub prefix: bool,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub scopes: Vec<String>,
    pub public: bool,
}

/// `[forward_proxy]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardProxySpec {
    pub listen: SocketAddr,
    /// `unmatched = "deny"`: refuse hosts no route maps (else pass them unchanged).
    pub deny_unmatched: bool,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub routes: Vec<ForwardRouteSpec>,
}

/// `[[forward_proxy.routes]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardRouteSpec {
    /// Lower case, without brackets for IPv6.
    pub host: String,
    /// Only this port matches when given; any port otherwise.
    pub port: Option<u16>,
    pub credential: String,
    /// Reach the upstream over https although the app spoke http.
    pub upstream_tls: bool,
}

/// `[inbound]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundSpec {
    pub listen: SocketAddr,
    pub upstream: Url,
    pub issuer: String,
    pub keys: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    pub default: DefaultPolicy,
    pub require_at_jwt: bool,
    pub forward_token: bool,
    pub jwks_refresh: Duration,
    pub jwks_cooldown: Duration,
    pub jwks_timeout: Duration,
    pub revocations_url: Option<Url>,
    pub revocations_interval: Duration,
    pub cache_size: usize,
    pub introspection: Option<IntrospectionSpec>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// How request paths are normalised before rules see them.
    pub paths: crate::path::PathPolicy,
    /// Upgrade protocols spliced through, lower-case (never `h2c`).
    pub upgrades: Vec<String>,
    pub rules: Vec<RuleSpec>,
}

/// `[inbound.introspection]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionSpec {
    /// `None`: the issuer's metadata names it (`introspection_endpoint`).
    pub url: Option<Url>,
    /// The issuer whose metadata is read when `url` is not given.
    pub issuer: String,
    pub client_id: String,
    pub secret: SecretSource,
    /// `client_secret_basic` (else `client_secret_post`).
    pub basic: bool,
    pub cache_ttl: Duration,
    pub cache_size: usize,
    pub timeout: Duration,
    /// Forward on the local checks alone when the issuer cannot be asked.
    pub allow_on_error: bool,
}

/// How the issuer signs access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::RS256 => "RS256",
        }
    }
}

/// `[issuer]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerSpec {
    pub listen: SocketAddr,
    /// Ends with `/`; the `iss` claim.
    pub url: Url,
    /// Where the registry, the keys and the audit log live.
    pub store: StoreSpec,
    /// Encrypts the signing keys at rest (with SQLite: generated beside the
    /// database when not given).
    pub store_key: Option<SecretSource>,
    /// A JSON state file of earlier versions, imported once if it exists.
    pub state: PathBuf,
    pub token_ttl: Duration,
    pub signing_alg: SigningAlg,
    pub apis: Vec<ApiSpec>,
    pub apps: Vec<AppSpec>,
}

/// Where the issuer keeps its registry.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreSpec {
    /// An embedded SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by any number of issuer replicas.
    Postgres {
        /// The DSN as configured (never holds a password).
        url: String,
        password: Option<SecretSource>,
        /// TLS to the database, its certificate verified against this CA.
        ca_file: Option<PathBuf>,
    },
}

impl IssuerSpec {
    /// The management API's audience: the issuer URL followed by `api/v1/`.
    pub fn management_audience(&self) -> String {
        format!("{}api/v1/", self.url)
    }
}

/// The management API's scopes (`tokens:introspect`: may call
/// `/oauth/introspect`; `audit:read`: may read `/api/v1/audit`).
pub const MANAGEMENT_SCOPES: [&str; 7] = [
    "apis:read",
    "apis:write",
    "apps:read",
    "apps:write",
    "keys:write",
    "tokens:introspect",
    "audit:read",
];

/// An API: an audience and the scopes tokens for it may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    pub id: String,
    pub name: String,
    pub identifier: String,
    pub scopes: Vec<String>,
}

/// An M2M app declared in config.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    pub name: String,
    pub client_id: String,
    /// `None`: the app authenticates only with `private_key_jwt`.
    pub secret: Option<SecretSource>,
    /// Public keys for `private_key_jwt`: a JWKS file, or one PEM public key.
    pub jwks_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    /// audience → scopes
    pub grants: Vec<(String, Vec<String>)>,
    pub blocked: bool,
}

impl Config {
    /// The credential called `name`.
    pub fn credential(&self, name: &str) -> Option<&Arc<CredentialSpec>> {
        self.credentials.iter().find(|c| c.name == name)
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// The JSON body LoginRadius uses.
    ClientSecretJson,
    /// A signed JWT assertion (RFC 7523 §2.2), ours or a ready-made one.
    PrivateKeyJwt,
    /// A client certificate on the TLS connection (RFC 8705 §2.1.1).
    TlsClientAuth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJson => "client_secret_json",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
        }
    }
}

/// Where a client secret is read from. A literal never shows in `Debug`.
#[derive(Clone, PartialEq)]
pub enum SecretSource {
    Literal(Arc<str>),
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SecretSource {
    /// A description safe to print: never the secret itself.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Literal(_) => "literal (redacted)".to_owned(),
            SecretSource::Env(name) => format!("env {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// How a credential proves itself at the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    /// `client_secret_basic`, `_post`, `_json`.
    Secret(SecretSource),
    /// `private_key_jwt`, signed here with a PEM key.
    PrivateKey {
        key: SecretSource,
        kid: Option<String>,
        /// RS256, PS256, ES256 or EdDSA; `None`: from the key type.
        alg: Option<jsonwebtoken::Algorithm>,
        audience: Option<String>,
    },
    /// `private_key_jwt` with a ready-made assertion read from a file each time.
    AssertionFile(PathBuf),
    /// `tls_client_auth`: the client certificate is the proof.
    Certificate,
}

impl ClientAuth {
    /// How the client authenticates, safe to print: never a secret or key.
    pub fn describe(&self) -> String {
        match self {
            ClientAuth::Secret(s) => format!("secret=<{}>", s.describe()),
            ClientAuth::PrivateKey { key, kid, alg, .. } => format!(
                "private_key=<{}> kid={} alg={}",
                key.describe(),
                kid.as_deref().unwrap_or("-"),
                alg.map_or("from key".to_owned(), |a| format!("{a:?}"))
            ),
            ClientAuth::AssertionFile(p) => format!("assertion_file={}", p.display()),
            ClientAuth::Certificate => "client certificate".to_owned(),
        }
    }

    /// A file whose change should make the credential fetch again at once.
    pub fn watched_file(&self) -> Option<&std::path::Path> {
        match self {
            ClientAuth::Secret(SecretSource::File(p))
            | ClientAuth::PrivateKey {
                key: SecretSource::File(p),
                ..
            } => Some(p),
            _ => None,
        }
    }
}

/// Where a credential's token endpoint is.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    TokenUrl(Url),
    /// RFC 8414, then OIDC discovery from this issuer.
    Discovery(Url),
}

impl Endpoint {
    /// The configured URL (token endpoint or issuer), for messages.
    pub fn url(&self) -> &Url {
        match self {
            Endpoint::TokenUrl(u) | Endpoint::Discovery(u) => u,
        }
    }
}

/// A client certificate and its key (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[credentials.NAME]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialSpec {
    pub name: String,
    pub endpoint: Endpoint,
    pub client_id: String,
    pub auth: ClientAuth,
    pub auth_method: AuthMethod,
    pub client_cert: Option<ClientCert>,
    pub max_requests_per_hour: Option<u32>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    pub extra_params: Vec<(String, String)>,
    pub refresh_at: f64,
    pub default_ttl: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// Top-level `token_requests_per_second`: the pace of token requests to
    /// this credential's token endpoint, shared with every credential that
    /// names the same one.
    pub endpoint_rate: f64,
}

/// `token_requests_per_second` when not configured.
pub const DEFAULT_TOKEN_RATE: f64 = 50.0;

/// `[[outbound]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundSpec {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: Url,
    pub credential: String,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle_timeout: Duration,
}

/// One configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Errors(pub Vec<Issue>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.0 {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

impl Errors {
    pub(crate) fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Errors(vec![Issue {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// Whether `id` is a valid client id or API id: `[A-Za-z0-9._~-]{1,128}`
/// (URL-safe, so it can always be named in a management API path), other than
/// `.` and `..` (which URL libraries resolve away).
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// "Orders API" → "orders-api": the id an API gets when none is given.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}
