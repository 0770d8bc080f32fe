//! Opening the store at start: the store key, the database (migrated), a
//! JSON state of earlier versions imported once, the key client secrets are
//! hashed with, and the registry built from the config with the database
//! laid over it (the rules are in the parent module's doc). Every failure
//! names a file, a database or a client id, never a secret.

use super::db::{Db, DbError};
use super::postgres::Postgres;
use super::rows::{self, CLIENT_SECRET_HMAC};
use super::seal::{self, StoreKey};
use super::sqlite::Sqlite;
use super::{Base, MIN_SECRET_LEN, Store, StoreError, registry_from};
use crate::config::{AppSpec, IssuerSpec, MANAGEMENT_SCOPES, StoreSpec};
use crate::issuer::registry::{Api, App, RegisterError, RegisteredKeys, Registry};
use crate::oauth::ids::{Audience, ClientId, Scope};
use crate::secret::{self, SecretError};
use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why the store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Key(#[from] seal::KeyError),
    #[error("store_password: {0}")]
    Password(#[source] SecretError),
    #[error("state file {}: {source}", .path.display())]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: expected 32 bytes", .0.display())]
    KeyLength(PathBuf),
    #[error("cannot generate the secrets key")]
    KeyRandom(#[source] aws_lc_rs::error::Unspecified),
    #[error("issuer app {client_id}: {source}")]
    Secret {
        client_id: String,
        #[source]
        source: SecretError,
    },
    #[error("issuer app {client_id}: client secret must be at least {MIN_SECRET_LEN} characters")]
    ShortSecret { client_id: String },
    #[error("issuer app {client_id}: cannot read {}: {source}", .path.display())]
    ReadKeys {
        client_id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("issuer app {client_id}: {}: not JSON: {source}", .path.display())]
    KeysNotJson {
        client_id: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("issuer app {client_id}: {}: {source}", .path.display())]
    Keys {
        client_id: String,
        path: PathBuf,
        #[source]
        source: RegisterError,
    },
    /// The blocks the config imposed, or a key, could not be recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The database of `spec` and its store key, migrated (what `issuer
/// --migrate-only` does, and the first step of [`Store::open`]).
pub async fn database(spec: &IssuerSpec) -> Result<(Db, StoreKey), OpenError> {
    match &spec.store {
        StoreSpec::Sqlite(path) => {
            let beside = crate::private_file::dir_of(path).join("store.key");
            let key = StoreKey::load(spec.store_key.as_ref(), Some(&beside))?;
            let path = path.clone();
            let db = tokio::task::spawn_blocking(move || Sqlite::open(&path))
                .await
                .map_err(|_| DbError::Stopped)??;
            Ok((Db::Sqlite(db), key))
        }
        StoreSpec::Postgres {
            url,
            password,
            ca_file,
        } => {
            let key = StoreKey::load(spec.store_key.as_ref(), None)?;
            let password = match password {
                Some(p) => Some(secret::read(p).map_err(OpenError::Password)?),
                None => None,
            };
            let db = Postgres::open(url, password.as_deref(), ca_file.as_deref()).await?;
            Ok((Db::Postgres(Box::new(db)), key))
        }
    }
}

impl Store {
    /// Open the database of `spec` (importing a JSON state of earlier
    /// versions once) and build the registry; with PostgreSQL, follow the
    /// other replicas from now on.
    pub async fn open(spec: &IssuerSpec) -> Result<Arc<Self>, OpenError> {
        let (db, key) = database(spec).await?;
        super::import::once(&db, &key, spec).await?;
        let hmac_key = secrets_key(&db, &key).await?;
        let (loaded, seq) = match &db {
            Db::Sqlite(s) => (s.load().await?, 0),
            Db::Postgres(p) => p.load().await?,
        };
        let management = Api {
            id: "management".into(),
            name: "m2m-sidecar management API".into(),
            identifier: Audience::from(spec.management_audience()),
            scopes: MANAGEMENT_SCOPES.map(Scope::from).to_vec(),
        };
        let base = base(spec, &hmac_key)?;
        let config_secrets = base.1;
        let base = base.0;
        let (reg, tombstones) = registry_from(hmac_key, &base, loaded, &management);
        warn_about_secrets(&reg, &config_secrets);
        drop(config_secrets);
        let store = Arc::new(Store {
            snapshot: ArcSwap::from_pointee(reg),
            deleted: Mutex::new(tombstones),
            write: tokio::sync::Mutex::new(seq),
            db,
            key,
            management,
            base,
            trouble: Mutex::new(None),
            keys_changed: tokio::sync::watch::channel(0).0,
            refusals: Default::default(),
        });
        store.impose_config_blocks(spec).await?;
        if matches!(store.db, Db::Postgres(_)) {
            tokio::spawn(super::feed::follow(Arc::downgrade(&store)));
        }
        Ok(store)
    }

    /// A block in the config wins (and every blocked app's tokens so far are
    /// revoked at start), recorded in the database at once, so removing
    /// `blocked` from the config later does not revive them.
    async fn impose_config_blocks(&self, spec: &IssuerSpec) -> Result<(), OpenError> {
        let blocked_in_config: BTreeSet<&str> = spec
            .apps
            .iter()
            .filter(|a| a.blocked)
            .map(|a| a.client_id.as_str())
            .collect();
        let reg = self.snapshot();
        let any_blocked = reg.apps.values().any(|a| a.blocked);
        if !any_blocked && blocked_in_config.is_empty() {
            return Ok(());
        }
        let names_in_db: BTreeSet<ClientId> = reg
            .apps
            .values()
            .filter(|a| blocked_in_config.contains(a.client_id.as_str()) && !a.blocked)
            .map(|a| a.client_id.clone())
            .collect();
        drop(reg);
        self.change(None, |reg, _| {
            let now = crate::clock::unix_now();
            for id in &names_in_db {
                let blocked = reg.apps.update(id.as_str(), |app| {
                    app.blocked = true;
                    app.blocked_at = Some(now);
                });
                if blocked.is_some() {
                    tracing::warn!(
                        client_id = %id,
                        "issuer app blocked by the config (`blocked = true`) although the store had it unblocked: \
                         blocked now, and every token issued so far is refused; this is recorded in the store, \
                         so removing `blocked` from the config will not unblock it: unblock it through the \
                         management API (POST /api/v1/apps/{{client_id}}/unblock)"
                    );
                }
            }
            let blocked: Vec<ClientId> = reg
                .apps
                .values()
                .filter(|a| a.blocked)
                .map(|a| a.client_id.clone())
                .collect();
            for id in blocked {
                reg.not_before.insert(id, now);
            }
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(())
    }
}

/// The key client secrets are hashed with: from the database, made on
/// first start (by exactly one replica), sealed with the store key.
async fn secrets_key(db: &Db, key: &StoreKey) -> Result<hmac::Key, OpenError> {
    let aad = rows::server_key_aad(CLIENT_SECRET_HMAC);
    if db.server_key(CLIENT_SECRET_HMAC).await?.is_none() {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(OpenError::KeyRandom)?;
        let sealed = key
            .seal(&aad, &bytes)
            .map_err(|e| OpenError::Store(StoreError::Seal(e)))?;
        db.insert_server_key(CLIENT_SECRET_HMAC, sealed).await?;
    }
    let sealed = db
        .server_key(CLIENT_SECRET_HMAC)
        .await?
        .ok_or(OpenError::Store(StoreError::Unavailable(DbError::Stopped)))?;
    let bytes = key.open(&aad, &sealed).map_err(StoreError::from)?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

/// The config's APIs and apps, and the config secrets of its apps (to warn
/// when the store's differ; never logged).
fn base(
    spec: &IssuerSpec,
    key: &hmac::Key,
) -> Result<(Base, BTreeMap<ClientId, String>), OpenError> {
    let apis = spec
        .apis
        .iter()
        .map(|a| Api {
            id: a.id.clone(),
            name: a.name.clone(),
            identifier: a.identifier.as_str().into(),
            scopes: scopes(&a.scopes),
        })
        .collect();
    let mut apps = Vec::new();
    let mut secrets = BTreeMap::new();
    for a in &spec.apps {
        let (app, secret) = config_app(key, a)?;
        if let Some(secret) = secret {
            secrets.insert(app.client_id.clone(), secret);
        }
        apps.push(app);
    }
    Ok((Base { apis, apps }, secrets))
}

/// Warn about config secrets the store overrides.
fn warn_about_secrets(reg: &Registry, config_secrets: &BTreeMap<ClientId, String>) {
    for (id, secret) in config_secrets {
        if let Some(app) = reg.apps.get(id.as_str())
            && !secret_in_effect(reg, app, secret)
        {
            tracing::warn!(
                client_id = %app.client_id,
                "the client_secret in the config for this issuer app is not one of its secrets in the store: \
                 the store's secret stays in effect and the config's is refused; to change the secret, \
                 rotate it through the management API (POST /api/v1/apps/{{client_id}}/secrets, with \
                 {{\"grace\": \"1h\"}} to keep the old one for a while) and give the client the secret it returns"
            );
        }
    }
}

/// An app as the config names it, and its config secret in clear (to compare
/// with the state's; never logged).
fn config_app(key: &hmac::Key, a: &AppSpec) -> Result<(App, Option<String>), OpenError> {
    let mut secrets = Vec::new();
    let mut clear = None;
    if let Some(source) = &a.secret {
        let secret = secret::read(source).map_err(|source| OpenError::Secret {
            client_id: a.client_id.clone(),
            source,
        })?;
        if secret.chars().count() < MIN_SECRET_LEN {
            return Err(OpenError::ShortSecret {
                client_id: a.client_id.clone(),
            });
        }
        secrets.push(crate::issuer::registry::StoredSecret {
            mac: hmac::sign(key, secret.as_bytes()).as_ref().to_vec(),
            not_after: None,
        });
        clear = Some(secret);
    }
    let jwks = match (&a.jwks_file, &a.public_key_file) {
        (None, None) => None,
        (Some(path), _) => Some(registered_keys(&a.client_id, path, true)?),
        (None, Some(path)) => Some(registered_keys(&a.client_id, path, false)?),
    };
    let app = App {
        client_id: a.client_id.as_str().into(),
        name: a.name.clone(),
        secrets,
        jwks,
        grants: a
            .grants
            .iter()
            .map(|(audience, granted)| (audience.as_str().into(), scopes(granted)))
            .collect(),
        blocked: a.blocked,
        blocked_at: a.blocked.then(crate::clock::unix_now),
    };
    Ok((app, clear))
}

/// The keys an app registers in a file: a JWKS (`jwks`), else one PEM public key.
fn registered_keys(client_id: &str, path: &Path, jwks: bool) -> Result<RegisteredKeys, OpenError> {
    let text = std::fs::read_to_string(path).map_err(|source| OpenError::ReadKeys {
        client_id: client_id.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let keys = if jwks {
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| OpenError::KeysNotJson {
                client_id: client_id.to_owned(),
                path: path.to_owned(),
                source,
            })?;
        RegisteredKeys::from_jwks(doc)
    } else {
        RegisteredKeys::from_pem(&text)
    };
    keys.map_err(|source| OpenError::Keys {
        client_id: client_id.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Scopes as the config names them.
fn scopes(names: &[String]) -> Vec<Scope> {
    names.iter().map(|s| Scope::from(s.as_str())).collect()
}

/// Whether `secret` (from the config) is one of `app`'s current secrets in
/// the state (constant-time comparison of the MACs; a rotated-out secret past
/// its grace period does not count).
fn secret_in_effect(reg: &Registry, app: &App, secret: &str) -> bool {
    let now = crate::clock::unix_now();
    let mut ok = false;
    for s in app
        .secrets
        .iter()
        .filter(|s| s.not_after.is_none_or(|t| now < t))
    {
        ok |= hmac::verify(&reg.key, secret.as_bytes(), &s.mac).is_ok();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> IssuerSpec {
        IssuerSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
            url: "https://issuer.example/".parse().unwrap(),
            store: StoreSpec::Sqlite(dir.join("issuer.db")),
            store_key: None,
            state: dir.join("state.json"),
            token_ttl: std::time::Duration::from_secs(3600),
            signing_alg: crate::config::SigningAlg::ES256,
            apis: Vec::new(),
            apps: Vec::new(),
        }
    }

    async fn open_error(spec: &IssuerSpec) -> String {
        match Store::open(spec).await {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn failures_name_the_file_or_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        let key = dir.path().join("store.key");
        std::fs::write(&key, b"short").unwrap();
        assert_eq!(
            open_error(&spec).await,
            format!(
                "{}: expected 32 random bytes in base64 (`openssl rand -base64 32`)",
                key.display()
            )
        );
        std::fs::remove_file(&key).unwrap();
        std::fs::write(&spec.state, b"{").unwrap();
        let e = open_error(&spec).await;
        assert!(
            e.starts_with(&format!("state file {}: ", spec.state.display())),
            "{e}"
        );
        std::fs::remove_file(&spec.state).unwrap();
        spec.apps.push(AppSpec {
            name: "Billing".into(),
            client_id: "billing".into(),
            secret: Some(crate::config::SecretSource::Literal("too short".into())),
            jwks_file: None,
            public_key_file: None,
            grants: Vec::new(),
            blocked: false,
        });
        assert_eq!(
            open_error(&spec).await,
            "issuer app billing: client secret must be at least 32 characters"
        );
        // The store key that sealed the keys is the only one that opens them.
        spec.apps.clear();
        drop(Store::open(&spec).await.unwrap());
        std::fs::write(
            &key,
            format!(
                "{}\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32])
            ),
        )
        .unwrap();
        assert_eq!(
            open_error(&spec).await,
            "cannot decrypt server key client_secret_hmac with this store_key (a different key than the one it was stored with?)"
        );
    }

    #[tokio::test]
    async fn one_issuer_per_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        let first = Store::open(&spec).await.unwrap();
        let e = open_error(&spec).await;
        assert!(e.contains("is in use by another issuer process"), "{e}");
        drop(first);
    }
}
