//! Validation of `[issuer]`: addresses, URL, APIs (unique identifiers, valid
//! scopes) and apps (unique client ids, secrets, grants naming known APIs and
//! scopes). A literal secret shorter than 32 characters is refused. Client ids
//! and API ids are `[A-Za-z0-9._~-]{1,128}`.

use super::{Validator, secs};
use crate::config::raw::{ApiConfig, AppConfig, IssuerConfig, SecretConfig};
use crate::config::{ApiSpec, AppSpec, IssuerSpec, MANAGEMENT_SCOPES, SigningAlg, StoreSpec};
use crate::jose::alg::{self, Algorithm};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// Shortest client secret the issuer accepts.
pub const MIN_SECRET_LEN: usize = 32;

impl Validator {
    pub(super) fn issuer(&mut self, c: &IssuerConfig) -> Option<IssuerSpec> {
        let listen_text = c
            .listen
            .as_ref()
            .map_or("127.0.0.1:15100", |t| t.0.as_str());
        let listen = self.addr("issuer.listen", listen_text);
        if let Some(addr) = listen {
            self.unique_listener("issuer.listen".into(), addr);
        }
        let url = self
            .required("issuer.url", &c.url)
            .and_then(|t| self.url("issuer.url", t));
        if let Some(u) = &url
            && !u.as_str().ends_with('/')
        {
            self.issue("issuer.url", "must end with `/` (it is the discovery base)");
        }
        let token_ttl = self.duration_or("issuer.token_ttl", &c.token_ttl, secs(86400), secs(1));
        let name = c.signing_alg.as_ref().map_or("ES256", |t| t.0.as_str());
        // The names are jose's; `SigningAlg` is the issuer's subset (`alg::ISSUER_SIGNING`).
        let signing_alg = match alg::parse(name) {
            Some(Algorithm::ES256) => Some(SigningAlg::ES256),
            Some(Algorithm::EdDSA) => Some(SigningAlg::EdDSA),
            Some(Algorithm::RS256) => Some(SigningAlg::RS256),
            _ => {
                self.issue(
                    "issuer.signing_alg",
                    format!("unknown algorithm `{name}` (expected ES256, RS256 or EdDSA)"),
                );
                None
            }
        };
        let apis: Vec<ApiSpec> = c
            .apis
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.api(i, a))
            .collect();
        let mut ids = HashSet::new();
        let mut identifiers = HashSet::new();
        for (i, a) in apis.iter().enumerate() {
            if !ids.insert(a.id.as_str()) {
                self.issue(
                    format!("issuer.apis[{i}].id"),
                    format!("`{}` is used twice", a.id),
                );
            }
            if !identifiers.insert(a.identifier.as_str()) {
                self.issue(
                    format!("issuer.apis[{i}].identifier"),
                    format!("`{}` is used twice", a.identifier),
                );
            }
        }
        let mut known: HashMap<String, Vec<String>> = apis
            .iter()
            .map(|a| (a.identifier.clone(), a.scopes.clone()))
            .collect();
        if let Some(u) = &url {
            known.insert(
                format!("{u}api/v1/"),
                MANAGEMENT_SCOPES.map(str::to_owned).to_vec(),
            );
        }
        let mut client_ids = HashSet::new();
        let apps: Vec<AppSpec> = c
            .apps
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.app(i, a, &known))
            .collect();
        for (i, a) in apps.iter().enumerate() {
            if !client_ids.insert(a.client_id.as_str()) {
                self.issue(
                    format!("issuer.apps[{i}].client_id"),
                    format!("`{}` is used twice", a.client_id),
                );
            }
        }
        let store = self.store(c);
        let store_key = c
            .store_key
            .as_ref()
            .and_then(|k| self.secret("issuer.store_key", Some(k)));
        if matches!(store, Some(StoreSpec::Postgres { .. })) && c.store_key.is_none() {
            self.issue(
                "issuer.store_key",
                "is required with PostgreSQL (32 random bytes, base64: `openssl rand -base64 32`); \
                 it encrypts the signing keys every replica shares",
            );
        }
        Some(IssuerSpec {
            listen: listen?,
            url: url?,
            store: store?,
            store_key,
            state: c
                .state
                .clone()
                .unwrap_or_else(|| PathBuf::from("data/issuer.json")),
            token_ttl,
            signing_alg: signing_alg?,
            apis,
            apps,
        })
    }

    /// `issuer.store` and the keys that go with it. Without `store`: SQLite
    /// beside a configured (deprecated) `state` file, else `data/issuer.db`.
    fn store(&mut self, c: &IssuerConfig) -> Option<StoreSpec> {
        let postgres_only = |v: &mut Self, given: bool, key: &str| {
            if given {
                v.issue(
                    format!("issuer.{key}"),
                    "is only used with a PostgreSQL store",
                );
            }
        };
        let Some(text) = c.store.as_ref().map(|t| t.0.as_str()) else {
            postgres_only(self, c.store_password.is_some(), "store_password");
            postgres_only(self, c.store_ca_file.is_some(), "store_ca_file");
            let dir = c
                .state
                .as_deref()
                .map_or_else(|| PathBuf::from("data"), crate::private_file::dir_of);
            return Some(StoreSpec::Sqlite(dir.join("issuer.db")));
        };
        if let Some(path) = text.strip_prefix("sqlite://") {
            postgres_only(self, c.store_password.is_some(), "store_password");
            postgres_only(self, c.store_ca_file.is_some(), "store_ca_file");
            if path.is_empty() || path.ends_with('/') {
                self.issue(
                    "issuer.store",
                    "name the database file: `sqlite://data/issuer.db` (relative to the working directory) or `sqlite:///var/lib/m2m/issuer.db`",
                );
                return None;
            }
            return Some(StoreSpec::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let parsed = match text.parse::<tokio_postgres::Config>() {
                Ok(p) => p,
                Err(e) => {
                    self.issue("issuer.store", format!("not a PostgreSQL URL: {e}"));
                    return None;
                }
            };
            if parsed.get_password().is_some() {
                // The URL is shown in logs and `check`: the password is a secret source.
                self.issue(
                    "issuer.store",
                    "holds a password: give it as `store_password` (a secret source) instead",
                );
                return None;
            }
            if parsed.get_hosts().is_empty() {
                self.issue("issuer.store", "names no host");
                return None;
            }
            let password = c
                .store_password
                .as_ref()
                .and_then(|p| self.secret("issuer.store_password", Some(p)));
            self.file_exists("issuer.store_ca_file", c.store_ca_file.as_ref());
            return Some(StoreSpec::Postgres {
                url: text.to_owned(),
                password,
                ca_file: c.store_ca_file.clone(),
            });
        }
        self.issue(
            "issuer.store",
            "expected `sqlite://PATH` or `postgres://user@host:port/db`",
        );
        None
    }

    fn api(&mut self, i: usize, a: &ApiConfig) -> Option<ApiSpec> {
        let p = |k: &str| format!("issuer.apis[{i}].{k}");
        let name = self.required(&p("name"), &a.name).map(str::to_owned);
        let identifier = self
            .required(&p("identifier"), &a.identifier)
            .map(str::to_owned);
        for (j, s) in a.scopes.iter().enumerate() {
            self.scope(&format!("{}[{j}]", p("scopes")), s);
        }
        let name = name?;
        let id = match &a.id {
            Some(t) if !t.0.is_empty() => t.0.clone(),
            _ => crate::config::slug(&name),
        };
        if !crate::config::valid_id(&id) {
            let given = a.id.as_ref().is_some_and(|t| !t.0.is_empty());
            self.issue(
                p(if given { "id" } else { "name" }),
                format!(
                    "{}API id `{}` is invalid: use 1 to 128 of A-Z a-z 0-9 . _ ~ -{}",
                    if given { "" } else { "the derived " },
                    id.escape_debug(),
                    if given { "" } else { " (set `id`)" }
                ),
            );
        }
        Some(ApiSpec {
            id,
            name,
            identifier: identifier?,
            scopes: a.scopes.clone(),
        })
    }

    fn app(
        &mut self,
        i: usize,
        a: &AppConfig,
        known: &HashMap<String, Vec<String>>,
    ) -> Option<AppSpec> {
        let p = |k: &str| format!("issuer.apps[{i}].{k}");
        let name = self.required(&p("name"), &a.name).map(str::to_owned);
        let client_id = self
            .required(&p("client_id"), &a.client_id)
            .map(str::to_owned);
        if let Some(id) = &client_id
            && !crate::config::valid_id(id)
        {
            self.issue(
                p("client_id"),
                format!(
                    "`{}` is invalid: use 1 to 128 of A-Z a-z 0-9 . _ ~ -",
                    id.escape_debug()
                ),
            );
        }
        if let Some(SecretConfig::Literal(t)) = &a.client_secret
            && t.0.chars().count() < MIN_SECRET_LEN
        {
            self.issue(
                p("client_secret"),
                format!("must be at least {MIN_SECRET_LEN} characters (generate one with `openssl rand -base64 32`)"),
            );
        }
        self.file_exists(&p("jwks_file"), a.jwks_file.as_ref());
        self.file_exists(&p("public_key_file"), a.public_key_file.as_ref());
        if a.jwks_file.is_some() && a.public_key_file.is_some() {
            self.issue(
                p("public_key_file"),
                "give either jwks_file or public_key_file, not both",
            );
        }
        let has_keys = a.jwks_file.is_some() || a.public_key_file.is_some();
        let secret = match (&a.client_secret, has_keys) {
            (None, true) => Some(None),
            (s, _) => self.secret(&p("client_secret"), s.as_ref()).map(Some),
        };
        for (audience, scopes) in &a.grants {
            let path = format!("{}.\"{audience}\"", p("grants"));
            match known.get(audience) {
                None => self.issue(path, format!("no API with identifier `{audience}`")),
                Some(allowed) => {
                    for s in scopes.iter().filter(|s| !allowed.contains(s)) {
                        self.issue(
                            path.clone(),
                            format!("scope `{s}` is not a scope of that API"),
                        );
                    }
                }
            }
        }
        Some(AppSpec {
            name: name?,
            client_id: client_id?,
            secret: secret?,
            jwks_file: a.jwks_file.clone(),
            public_key_file: a.public_key_file.clone(),
            grants: a
                .grants
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            blocked: a.blocked,
        })
    }
}
