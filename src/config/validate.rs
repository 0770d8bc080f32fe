//! From raw options to a [`Config`]: every problem is collected with its key path
//! before anything starts (oauth2-proxy's habit), never just the first.

use super::raw::{CredentialConfig, FileConfig, OutboundConfig, SecretConfig, Text};
use super::{
    AdminSettings, AuthMethod, ClientAuth, ClientCert, Config, CredentialSpec, DEFAULT_TOKEN_RATE,
    Endpoint, Errors, Issue, OutboundSpec, SecretSource,
};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

mod forward;
mod inbound;
mod issuer;

const DEFAULT_ADMIN: &str = "127.0.0.1:15090";
/// No duration in the config may exceed a year (larger ones overflow clocks).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const MS: Duration = Duration::from_millis(1);
/// Parameters the grant sets itself; `extra_params` may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "resource",
    "client_assertion",
    "client_assertion_type",
];

/// Turn raw options into a [`Config`], or report every problem found.
pub fn validate(raw: &FileConfig) -> Result<Config, Errors> {
    let mut v = Validator::default();
    let admin_listen = raw.admin.listen.as_ref().map_or(DEFAULT_ADMIN, |t| &t.0);
    let admin = v.addr("admin.listen", admin_listen);
    if let Some(a) = admin {
        v.listeners.insert(a, "admin.listen".to_owned());
    }
    let drain_timeout = v.duration_or(
        "drain_timeout",
        &raw.drain_timeout,
        secs(15),
        Duration::ZERO,
    );
    let worker_threads =
        raw.worker_threads
            .as_ref()
            .and_then(|t| match t.0.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Some(n),
                _ => {
                    v.issue(
                        "worker_threads",
                        format!("must be a whole number from 1 to 1024, got `{}`", t.0),
                    );
                    None
                }
            });
    let limits = v.limits(raw, drain_timeout);
    let issuer = raw.issuer.as_ref().and_then(|c| v.issuer(c));
    let inbound = raw.inbound.as_ref().and_then(|c| v.inbound(c));
    let rate_text = raw.token_requests_per_second.as_ref().map(|t| t.0.trim());
    let endpoint_rate = match rate_text.map(str::parse::<f64>) {
        None => DEFAULT_TOKEN_RATE,
        Some(Ok(r)) if (0.01..=100_000.0).contains(&r) => r,
        Some(_) => {
            v.issue(
                "token_requests_per_second",
                format!(
                    "must be a number from 0.01 to 100000, got `{}`",
                    rate_text.unwrap_or_default()
                ),
            );
            DEFAULT_TOKEN_RATE
        }
    };
    let credentials: Vec<_> = raw
        .credentials
        .iter()
        .filter_map(|(name, c)| v.credential(name, c, endpoint_rate))
        .collect();
    let outbound: Vec<_> = raw
        .outbound
        .iter()
        .enumerate()
        .filter_map(|(i, o)| v.outbound(i, o, &raw.credentials))
        .collect();
    let forward_proxy = raw
        .forward_proxy
        .as_ref()
        .and_then(|f| v.forward_proxy(f, &raw.credentials));
    // Token-adding listeners reachable from outside the pod let anyone who can
    // reach them call the mapped upstreams with this workload's identity.
    let mut warnings = Vec::new();
    let exposed = "listens beyond loopback: anyone who can reach it can call the upstream with this workload's token (bind 127.0.0.1 unless a NetworkPolicy restricts it)";
    for (i, o) in outbound.iter().enumerate() {
        if !o.listen.ip().is_loopback() {
            warnings.push(Issue {
                path: format!("outbound[{i}].listen"),
                message: exposed.into(),
            });
        }
    }
    if let Some(f) = &forward_proxy
        && !f.listen.ip().is_loopback()
    {
        warnings.push(Issue {
            path: "forward_proxy.listen".into(),
            message: exposed.into(),
        });
    }
    if raw.issuer.as_ref().is_some_and(|i| i.state.is_some()) {
        warnings.push(Issue {
            path: "issuer.state".into(),
            message: "is deprecated: the issuer keeps its registry in `store` now (default: SQLite beside this file); \
                      an existing state file is imported once, then no longer read"
                .into(),
        });
    }
    match (v.issues.is_empty(), admin) {
        (true, Some(listen)) => Ok(Config {
            admin: AdminSettings { listen },
            credentials,
            outbound,
            drain_timeout,
            worker_threads,
            token_cache_dir: raw.token_cache_dir.clone(),
            limits,
            warnings,
            issuer,
            inbound,
            forward_proxy,
        }),
        _ => Err(Errors(v.issues)),
    }
}

#[derive(Default)]
struct Validator {
    issues: Vec<Issue>,
    /// Outbound names and addresses seen so far, for the uniqueness checks.
    names: HashMap<String, usize>,
    listeners: HashMap<SocketAddr, String>,
}

impl Validator {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn required<'a>(&mut self, path: &str, value: &'a Option<Text>) -> Option<&'a str> {
        match value {
            Some(t) if !t.0.trim().is_empty() => Some(&t.0),
            Some(_) => {
                self.issue(path, "must not be empty");
                None
            }
            None => {
                self.issue(path, "is required");
                None
            }
        }
    }

    fn scope(&mut self, path: &str, s: &str) {
        if s.is_empty()
            || s.chars()
                .any(|ch| ch.is_whitespace() || ch == '"' || ch == '\\')
        {
            self.issue(path, format!("invalid scope `{s}`"));
        }
    }

    fn addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.issue(
                    path,
                    format!(
                        "invalid listen address `{text}` (expected IP:PORT, e.g. 127.0.0.1:15001)"
                    ),
                );
                None
            }
        }
    }

    fn url(&mut self, path: &str, text: &str) -> Option<Url> {
        match Url::parse(text) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                self.issue(
                    path,
                    format!("URL must be http:// or https://, got `{}`", u.scheme()),
                );
                None
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                self.issue(path, "URL has no host");
                None
            }
            Ok(u) if u.fragment().is_some() => {
                self.issue(path, "URL must not have a fragment");
                None
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                self.issue(path, "URL must not contain `user:password@` (credentials belong in client_id and client_secret)");
                None
            }
            Ok(u) => Some(u),
            Err(e) => {
                self.issue(path, format!("invalid URL `{text}`: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, path: &str, text: &Text) -> Option<Duration> {
        let t = text.0.trim();
        // A bare number (as an environment variable gives) means seconds.
        if let Ok(secs) = t.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        match humantime::parse_duration(t) {
            Ok(d) => Some(d),
            Err(e) => {
                self.issue(
                    path,
                    format!("invalid duration `{t}`: {e} (examples: 500ms, 30s, 5m)"),
                );
                None
            }
        }
    }

    /// A duration from `min` to [`MAX_DURATION`], or `default` when not given.
    fn duration_or(
        &mut self,
        path: &str,
        text: &Option<Text>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(d) = text.as_ref().and_then(|t| self.duration(path, t)) else {
            return default;
        };
        if d < min || d > MAX_DURATION {
            let lo = humantime::format_duration(min);
            self.issue(path, format!("must be from {lo} to 365 days"));
            return default;
        }
        d
    }

    fn credential(
        &mut self,
        name: &str,
        c: &CredentialConfig,
        endpoint_rate: f64,
    ) -> Option<Arc<CredentialSpec>> {
        let p = |k: &str| format!("credentials.{name}.{k}");
        if !valid_name(name) {
            self.issue(
                format!("credentials.{name}"),
                "names may use only letters, digits, `-` and `_`",
            );
        }
        let endpoint = match (&c.token_url, &c.issuer) {
            (Some(t), None) => self.url(&p("token_url"), &t.0).map(Endpoint::TokenUrl),
            (None, Some(i)) => self.url(&p("issuer"), &i.0).map(Endpoint::Discovery),
            (Some(_), Some(_)) => {
                self.issue(p("issuer"), "give either token_url or issuer, not both");
                None
            }
            (None, None) => {
                self.issue(
                    p("token_url"),
                    "is required (or `issuer`, to find it through discovery)",
                );
                None
            }
        };
        let client_id = self
            .required(&p("client_id"), &c.client_id)
            .map(str::to_owned);
        let auth_method = self.auth_method(&p("auth_method"), c.auth_method.as_ref());
        let auth = auth_method.and_then(|m| self.client_auth(name, m, c));
        let client_cert = match (&c.client_cert, &c.client_key) {
            (Some(cert), Some(key)) => {
                self.file_exists(&p("client_cert"), Some(cert));
                self.file_exists(&p("client_key"), Some(key));
                Some(ClientCert {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (None, None) => None,
            _ => {
                self.issue(p("client_cert"), "client_cert and client_key go together");
                None
            }
        };
        if auth_method == Some(AuthMethod::TlsClientAuth) && client_cert.is_none() {
            self.issue(
                p("client_cert"),
                "tls_client_auth needs client_cert and client_key",
            );
        }
        let max_requests_per_hour =
            c.max_token_requests_per_hour
                .as_ref()
                .and_then(|t| match t.0.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        self.issue(
                            p("max_token_requests_per_hour"),
                            format!("must be a whole number of at least 1, got `{}`", t.0),
                        );
                        None
                    }
                });
        let refresh_text = c.refresh_at.as_ref().map_or("0.8", |t| t.0.trim());
        let refresh_at = refresh_text.parse::<f64>().unwrap_or(f64::NAN);
        if !(refresh_at > 0.0 && refresh_at < 1.0) {
            self.issue(
                p("refresh_at"),
                format!("must be a number between 0 and 1 (exclusive), got `{refresh_text}`"),
            );
        }
        if let Some(r) = &c.resource
            && Url::parse(&r.0).map_or(true, |u| u.fragment().is_some())
        {
            self.issue(
                p("resource"),
                "must be an absolute URI without a fragment (RFC 8707)",
            );
        }
        for (i, s) in c.scopes.iter().enumerate() {
            self.scope(&format!("{}[{i}]", p("scopes")), s);
        }
        for key in c.extra_params.keys() {
            if RESERVED_PARAMS.contains(&key.as_str()) {
                self.issue(
                    format!("{}.{key}", p("extra_params")),
                    "is set by the sidecar itself and cannot be overridden",
                );
            }
        }
        let default_ttl = self.duration_or(&p("default_ttl"), &c.default_ttl, secs(300), secs(1));
        let timeout = self.duration_or(&p("timeout"), &c.timeout, secs(10), MS);
        let connect_timeout =
            self.duration_or(&p("connect_timeout"), &c.connect_timeout, secs(5), MS);
        self.file_exists(&p("ca_file"), c.ca_file.as_ref());
        Some(Arc::new(CredentialSpec {
            name: name.to_owned(),
            endpoint: endpoint?,
            client_id: client_id?,
            auth: auth?,
            auth_method: auth_method?,
            client_cert,
            max_requests_per_hour,
            audience: c.audience.as_ref().map(|t| t.0.clone()),
            resource: c.resource.as_ref().map(|t| t.0.clone()),
            scopes: c.scopes.clone(),
            extra_params: c
                .extra_params
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            refresh_at,
            default_ttl,
            timeout,
            connect_timeout,
            ca_file: c.ca_file.clone(),
            endpoint_rate,
        }))
    }

    fn auth_method(&mut self, path: &str, text: Option<&Text>) -> Option<AuthMethod> {
        match text.map(|t| t.0.as_str()).unwrap_or("client_secret_basic") {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "client_secret_json" => Some(AuthMethod::ClientSecretJson),
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            "tls_client_auth" => Some(AuthMethod::TlsClientAuth),
            other => {
                self.issue(
                    path,
                    format!("unknown method `{other}` (expected client_secret_basic, client_secret_post, client_secret_json, private_key_jwt or tls_client_auth)"),
                );
                None
            }
        }
    }

    /// What proves the client for `method`, and no key that does not belong to it.
    fn client_auth(
        &mut self,
        name: &str,
        method: AuthMethod,
        c: &CredentialConfig,
    ) -> Option<ClientAuth> {
        let p = |k: &str| format!("credentials.{name}.{k}");
        let jwt_only: [(&str, bool); 5] = [
            ("private_key", c.private_key.is_some()),
            ("key_id", c.key_id.is_some()),
            ("assertion_alg", c.assertion_alg.is_some()),
            ("assertion_audience", c.assertion_audience.is_some()),
            ("assertion_file", c.assertion_file.is_some()),
        ];
        if method != AuthMethod::PrivateKeyJwt {
            for (key, set) in jwt_only {
                if set {
                    self.issue(p(key), "only applies to auth_method = \"private_key_jwt\"");
                }
            }
        }
        match method {
            AuthMethod::ClientSecretBasic
            | AuthMethod::ClientSecretPost
            | AuthMethod::ClientSecretJson => self
                .secret(&p("client_secret"), c.client_secret.as_ref())
                .map(ClientAuth::Secret),
            AuthMethod::TlsClientAuth => {
                if c.client_secret.is_some() {
                    self.issue(p("client_secret"), "tls_client_auth sends no secret");
                }
                Some(ClientAuth::Certificate)
            }
            AuthMethod::PrivateKeyJwt => {
                if c.client_secret.is_some() {
                    self.issue(p("client_secret"), "private_key_jwt sends no secret");
                }
                match (&c.private_key, &c.assertion_file) {
                    (Some(_), Some(_)) => {
                        self.issue(
                            p("assertion_file"),
                            "give either private_key (the sidecar signs) or assertion_file (a ready-made assertion), not both",
                        );
                        None
                    }
                    (None, Some(file)) => {
                        for (key, set) in &jwt_only[1..4] {
                            if *set {
                                self.issue(p(key), "does not apply to a ready-made assertion_file");
                            }
                        }
                        Some(ClientAuth::AssertionFile(file.clone()))
                    }
                    (key, None) => {
                        let key = self.secret(&p("private_key"), key.as_ref())?;
                        let alg = c.assertion_alg.as_ref().and_then(|t| {
                            use crate::jose::alg;
                            let name = t.0.as_str();
                            let a = alg::parse(name).filter(|a| alg::CLIENT_ASSERTION.contains(a));
                            if a.is_none() {
                                self.issue(
                                    p("assertion_alg"),
                                    format!("must be RS256, PS256, ES256 or EdDSA, got `{name}`"),
                                );
                            }
                            a
                        });
                        Some(ClientAuth::PrivateKey {
                            key,
                            kid: c.key_id.as_ref().map(|t| t.0.clone()),
                            alg,
                            audience: c.assertion_audience.as_ref().map(|t| t.0.clone()),
                        })
                    }
                }
            }
        }
    }

    fn secret(&mut self, path: &str, s: Option<&SecretConfig>) -> Option<SecretSource> {
        match s {
            None => {
                self.issue(path, "is required");
                None
            }
            Some(SecretConfig::Literal(t)) if t.0.is_empty() => {
                self.issue(path, "must not be empty");
                None
            }
            Some(SecretConfig::Literal(t)) => Some(SecretSource::Literal(Arc::from(t.0.as_str()))),
            Some(SecretConfig::Ref(r)) => match (&r.env, &r.file) {
                (Some(env), None) if !env.is_empty() => Some(SecretSource::Env(env.clone())),
                (None, Some(file)) => Some(SecretSource::File(file.clone())),
                _ => {
                    self.issue(path, "give exactly one of `env` or `file`");
                    None
                }
            },
        }
    }

    fn file_exists(&mut self, path: &str, file: Option<&std::path::PathBuf>) {
        if let Some(f) = file
            && !f.is_file()
        {
            self.issue(path, format!("cannot read {}: no such file", f.display()));
        }
    }

    fn outbound(
        &mut self,
        i: usize,
        o: &OutboundConfig,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Option<OutboundSpec> {
        let p = |k: &str| format!("outbound[{i}].{k}");
        let name = self.required(&p("name"), &o.name).map(str::to_owned);
        if let Some(n) = &name {
            self.unique_name(i, n);
            // The other listeners' names in logs and metrics.
            if ["admin", "issuer", "inbound", "forward_proxy"].contains(&n.as_str()) {
                self.issue(p("name"), format!("`{n}` is reserved for another listener"));
            }
        }
        let listen = self
            .required(&p("listen"), &o.listen)
            .and_then(|t| self.addr(&p("listen"), t));
        if let Some(addr) = listen {
            self.unique_listener(p("listen"), addr);
        }
        let upstream = self
            .required(&p("upstream"), &o.upstream)
            .and_then(|t| self.url(&p("upstream"), t));
        if let Some(u) = &upstream
            && u.query().is_some()
        {
            self.issue(p("upstream"), "upstream must not have a query");
        }
        if let (Some(u), Some(_)) = (&upstream, &o.ca_file)
            && u.scheme() != "https"
        {
            self.issue(p("ca_file"), "only applies to an https:// upstream");
        }
        let credential = self.credential_ref(&p("credential"), &o.credential, credentials);
        self.file_exists(&p("ca_file"), o.ca_file.as_ref());
        let connect_timeout =
            self.duration_or(&p("connect_timeout"), &o.connect_timeout, secs(5), MS);
        let request_timeout =
            self.duration_or(&p("request_timeout"), &o.request_timeout, secs(60), MS);
        let idle_timeout = self.duration_or(&p("idle_timeout"), &o.idle_timeout, secs(90), MS);
        let body_idle_timeout =
            self.duration_or(&p("body_idle_timeout"), &o.body_idle_timeout, secs(300), MS);
        Some(OutboundSpec {
            name: name?,
            listen: listen?,
            upstream: upstream?,
            credential: credential?,
            ca_file: o.ca_file.clone(),
            connect_timeout,
            request_timeout,
            idle_timeout,
            body_idle_timeout,
        })
    }

    fn limits(&mut self, raw: &FileConfig, drain_timeout: Duration) -> super::Limits {
        let d = super::Limits::default();
        let l = &raw.limits;
        let mut count =
            |path: &str, t: &Option<Text>, default: usize, min: usize, max: usize| match t
                .as_ref()
                .map(|t| t.0.trim().parse::<usize>())
            {
                None => default,
                Some(Ok(n)) if (min..=max).contains(&n) => n,
                Some(_) => {
                    self.issue(path, format!("must be a whole number from {min} to {max}"));
                    default
                }
            };
        let max_connections = count(
            "limits.max_connections",
            &l.max_connections,
            d.max_connections,
            1,
            1_000_000,
        );
        let max_header_bytes = count(
            "limits.max_header_bytes",
            &l.max_header_bytes,
            d.max_header_bytes,
            8192,
            1024 * 1024,
        );
        let max_body_bytes = count(
            "limits.max_body_bytes",
            &l.max_body_bytes,
            d.max_body_bytes,
            1024,
            16 * 1024 * 1024,
        );
        let header_read_timeout = self.duration_or(
            "limits.header_read_timeout",
            &l.header_read_timeout,
            d.header_read_timeout,
            MS,
        );
        let body_read_timeout = self.duration_or(
            "limits.body_read_timeout",
            &l.body_read_timeout,
            d.body_read_timeout,
            MS,
        );
        let idle_timeout =
            self.duration_or("limits.idle_timeout", &l.idle_timeout, d.idle_timeout, MS);
        let drain_grace = self.duration_or(
            "drain_grace",
            &raw.drain_grace,
            d.drain_grace,
            Duration::ZERO,
        );
        let access_log = self.boolean("access_log", raw.access_log.as_ref(), true);
        super::Limits {
            max_connections,
            max_header_bytes,
            header_read_timeout,
            idle_timeout,
            max_body_bytes,
            body_read_timeout,
            drain_grace,
            drain_timeout,
            access_log,
        }
    }

    /// A reference to a `[credentials.NAME]` that exists.
    fn credential_ref(
        &mut self,
        path: &str,
        name: &Option<Text>,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Option<String> {
        let c = self.required(path, name)?.to_owned();
        if !credentials.contains_key(&c) {
            let known: Vec<_> = credentials.keys().map(String::as_str).collect();
            self.issue(
                path,
                format!(
                    "no credential named `{c}` (defined: {})",
                    list_or_none(&known)
                ),
            );
        }
        Some(c)
    }

    /// `true` or `false` (as TOML booleans or their text); `default` when absent.
    fn boolean(&mut self, path: &str, t: Option<&Text>, default: bool) -> bool {
        match t.map(|t| t.0.trim().to_ascii_lowercase()).as_deref() {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.issue(path, format!("must be true or false, got `{other}`"));
                default
            }
        }
    }

    fn unique_name(&mut self, i: usize, name: &str) {
        match self.names.get(name) {
            Some(first) => {
                let msg = format!("`{name}` is already the name of outbound[{first}]");
                self.issue(format!("outbound[{i}].name"), msg);
            }
            None => {
                self.names.insert(name.to_owned(), i);
            }
        }
    }

    /// Two listeners on one address cannot both bind; port 0 is always free.
    fn unique_listener(&mut self, here: String, addr: SocketAddr) {
        if addr.port() == 0 {
            return;
        }
        match self.listeners.get(&addr) {
            Some(other) => {
                let msg = format!("{addr} is already used by {other}");
                self.issue(here, msg);
            }
            None => {
                self.listeners.insert(addr, here);
            }
        }
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
