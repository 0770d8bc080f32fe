//! The option types exactly as a user writes them (TOML, YAML, JSON or `M2M_` env).
//!
//! Durations, URLs and addresses stay text here: `validate` turns them into typed
//! values so that every bad one is reported at once, each with its key path.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The whole sidecar config file.
#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialConfig>,
    #[serde(default)]
    pub outbound: Vec<OutboundConfig>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout: Option<Text>,
    /// Tokio worker threads (default: one per core).
    pub worker_threads: Option<Text>,
    /// Where still-valid tokens are kept across restarts (off when absent).
    pub token_cache_dir: Option<PathBuf>,
    /// At most this many token requests per second to each token endpoint.
    pub token_requests_per_second: Option<Text>,
    /// After SIGTERM, how long new connections are still accepted.
    pub drain_grace: Option<Text>,
    /// One log line per proxied request (default true).
    pub access_log: Option<Text>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The built-in authorization server, run in the same process.
    pub issuer: Option<IssuerConfig>,
    /// Verification of incoming tokens in front of the local service.
    pub inbound: Option<InboundConfig>,
    /// `HTTP_PROXY` mode: tokens for the mapped hosts of absolute-form requests.
    pub forward_proxy: Option<ForwardProxyConfig>,
}

/// `[forward_proxy]`
#[derive(Debug, Default, Deserialize)]
pub struct ForwardProxyConfig {
    pub listen: Option<Text>,
    /// `pass` | `deny`
    pub unmatched: Option<Text>,
    /// Extra PEM roots for `upstream_tls` routes.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Option<Text>,
    pub request_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub body_idle_timeout: Option<Text>,
    #[serde(default)]
    pub routes: Vec<ForwardRouteConfig>,
}

/// `[[forward_proxy.routes]]`
#[derive(Debug, Default, Deserialize)]
pub struct ForwardRouteConfig {
    /// `host` or `host:port`
    pub host: Option<Text>,
    pub credential: Option<Text>,
    pub upstream_tls: Option<Text>,
}

/// `[inbound]`: verify JWTs for the service this sidecar fronts.
#[derive(Debug, Default, Deserialize)]
pub struct InboundConfig {
    pub listen: Option<Text>,
    pub upstream: Option<Text>,
    /// The exact `iss`; also the discovery base when `jwks_url` is not given.
    pub issuer: Option<Text>,
    pub jwks_url: Option<Text>,
    pub jwks_file: Option<PathBuf>,
    /// A shared secret for HS256/384/512; never used beside JWKS keys.
    pub hmac_secret: Option<SecretConfig>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<Text>,
    /// `deny` | `authenticated`
    pub default: Option<Text>,
    /// `at+jwt` to require that `typ`.
    pub require_typ: Option<Text>,
    #[serde(default)]
    pub forward_token: bool,
    pub jwks_refresh: Option<Text>,
    pub jwks_cooldown: Option<Text>,
    pub jwks_timeout: Option<Text>,
    pub revocations_url: Option<Text>,
    pub revocations_interval: Option<Text>,
    pub cache_size: Option<Text>,
    /// RFC 7662 introspection of every locally valid token.
    pub introspection: Option<IntrospectionConfig>,
    pub connect_timeout: Option<Text>,
    pub request_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub body_idle_timeout: Option<Text>,
    /// `reject` | `unescape` | `keep`: what `%2F` and `%5C` in a path get.
    pub escaped_slashes: Option<Text>,
    /// `reject` | `strip`: what `;` path parameters get.
    pub path_parameters: Option<Text>,
    /// Upgrade protocols spliced through (default `["websocket"]`; never `h2c`).
    pub upgrades: Option<Vec<String>>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// `[inbound.introspection]`
#[derive(Debug, Default, Deserialize)]
pub struct IntrospectionConfig {
    pub url: Option<Text>,
    pub client_id: Option<Text>,
    pub client_secret: Option<SecretConfig>,
    /// `client_secret_basic` | `client_secret_post`
    pub auth_method: Option<Text>,
    pub cache_ttl: Option<Text>,
    pub cache_size: Option<Text>,
    pub timeout: Option<Text>,
    /// `deny` | `allow`
    pub on_error: Option<Text>,
}

/// `[[inbound.rules]]`
#[derive(Debug, Default, Deserialize)]
pub struct RuleConfig {
    pub path: Option<Text>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub public: bool,
}

/// `[issuer]`: the built-in authorization server.
#[derive(Debug, Default, Deserialize)]
pub struct IssuerConfig {
    pub listen: Option<Text>,
    /// The `iss` claim and the discovery base (ends with `/`).
    pub url: Option<Text>,
    /// Deprecated: the JSON state file of earlier versions, imported once
    /// into the store (whose SQLite default then sits beside it).
    pub state: Option<PathBuf>,
    /// `sqlite://PATH` (default `sqlite://data/issuer.db`) or
    /// `postgres://user@host:port/db`.
    pub store: Option<Text>,
    pub store_password: Option<SecretConfig>,
    /// 32 random bytes, base64: encrypts the signing keys at rest.
    pub store_key: Option<SecretConfig>,
    /// The CA that signs PostgreSQL's certificate: TLS to the database.
    pub store_ca_file: Option<PathBuf>,
    pub token_ttl: Option<Text>,
    pub signing_alg: Option<Text>,
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// `[[issuer.apis]]`: an API (an audience) and its scopes.
#[derive(Debug, Default, Deserialize)]
pub struct ApiConfig {
    pub id: Option<Text>,
    pub name: Option<Text>,
    pub identifier: Option<Text>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[[issuer.apps]]`: an M2M app, its secret and its grants.
#[derive(Debug, Default, Deserialize)]
pub struct AppConfig {
    pub name: Option<Text>,
    pub client_id: Option<Text>,
    pub client_secret: Option<SecretConfig>,
    /// audience → granted scopes
    #[serde(default)]
    pub grants: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub blocked: bool,
    /// Public keys (a JWKS file) for `private_key_jwt`.
    pub jwks_file: Option<PathBuf>,
    /// Or its one public key as a PEM file (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_file: Option<PathBuf>,
}

/// `[limits]`: what every listener allows a client.
#[derive(Debug, Default, Deserialize)]
pub struct LimitsConfig {
    pub max_connections: Option<Text>,
    pub max_header_bytes: Option<Text>,
    pub header_read_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub max_body_bytes: Option<Text>,
    pub body_read_timeout: Option<Text>,
}

/// `[admin]`: health, readiness and metrics.
#[derive(Debug, Default, Deserialize)]
pub struct AdminConfig {
    pub listen: Option<Text>,
}

/// `[credentials.NAME]`: one client-credentials identity.
#[derive(Debug, Default, Deserialize)]
pub struct CredentialConfig {
    pub token_url: Option<Text>,
    /// Find `token_endpoint` through RFC 8414 / OIDC discovery instead.
    pub issuer: Option<Text>,
    pub client_id: Option<Text>,
    pub client_secret: Option<SecretConfig>,
    pub auth_method: Option<Text>,
    /// `private_key_jwt`: the PEM private key that signs the client assertion.
    pub private_key: Option<SecretConfig>,
    /// `private_key_jwt`: the assertion's `kid`.
    pub key_id: Option<Text>,
    /// `private_key_jwt`: RS256 | PS256 | ES256 | EdDSA (default: from the key).
    pub assertion_alg: Option<Text>,
    /// `private_key_jwt`: the assertion's `aud` (default: the issuer identifier
    /// when discovered, else the token endpoint).
    pub assertion_audience: Option<Text>,
    /// `private_key_jwt` with a ready-made assertion (a Kubernetes service-account
    /// token), re-read for every token request.
    pub assertion_file: Option<PathBuf>,
    /// A client certificate (PEM) for the token endpoint connection (mTLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// At most this many token requests per rolling hour.
    pub max_token_requests_per_hour: Option<Text>,
    pub audience: Option<Text>,
    pub resource: Option<Text>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub extra_params: BTreeMap<String, Text>,
    /// Fraction of the lifetime after which a refresh starts.
    pub refresh_at: Option<Text>,
    /// Lifetime assumed when the answer has no `expires_in` and the token is no JWT.
    pub default_ttl: Option<Text>,
    /// Whole-request timeout for the token endpoint.
    pub timeout: Option<Text>,
    pub connect_timeout: Option<Text>,
    /// Extra PEM roots for an `https://` token endpoint.
    pub ca_file: Option<PathBuf>,
}

/// `[[outbound]]`: a reverse listener that injects a credential's token.
#[derive(Debug, Default, Deserialize)]
pub struct OutboundConfig {
    pub name: Option<Text>,
    pub listen: Option<Text>,
    pub upstream: Option<Text>,
    pub credential: Option<Text>,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Option<Text>,
    /// Time allowed until the upstream's response headers arrive.
    pub request_timeout: Option<Text>,
    /// How long an unused pooled upstream connection is kept.
    pub idle_timeout: Option<Text>,
    /// Longest pause in a request or response body.
    pub body_idle_timeout: Option<Text>,
}

/// A scalar written as a string; numbers and booleans (as environment variables
/// become) are accepted and kept as their text.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        let text = match Scalar::deserialize(d).map_err(|_| {
            serde::de::Error::custom("invalid type: expected a string, number or boolean")
        })? {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        };
        Ok(Text(text))
    }
}

/// Where a client secret comes from: `"literal"`, `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum SecretConfig {
    Literal(Text),
    Ref(SecretRef),
}

/// The table form of [`SecretConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretConfig::Literal(_) => f.write_str("\"...\""),
            SecretConfig::Ref(r) => r.fmt(f),
        }
    }
}
