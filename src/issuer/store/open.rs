//! Opening the store at start: the secrets key, the state file, and the
//! registry built from the config with the state laid over it (the rules are
//! in the parent module's doc). Every failure names a file or a client id,
//! never a secret.

use super::{MIN_SECRET_LEN, State, Store, StoreError, write_state};
use crate::config::{AppSpec, IssuerSpec, MANAGEMENT_SCOPES};
use crate::issuer::registry::{Api, App, RegisterError, RegisteredKeys, Registry};
use crate::oauth::ids::{Audience, ClientId, Scope};
use crate::private_file::{WriteError, dir_of, write as write_private};
use crate::secret::{self, SecretError};
use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why the store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("state file {}: {source}", .path.display())]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read the state file {}: {source}", .path.display())]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: expected 32 bytes", .0.display())]
    KeyLength(PathBuf),
    #[error("cannot generate the secrets key")]
    KeyRandom(#[source] aws_lc_rs::error::Unspecified),
    #[error(transparent)]
    WriteKey(WriteError),
    #[error("cannot read {}: {source}", .path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// The blocks the config imposed could not be recorded in the state.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Build the registry from `spec` and the state file, if there is one.
    pub fn open(spec: &IssuerSpec) -> Result<Self, OpenError> {
        let key = load_or_create_key(&spec.state)?;
        let mut state = read_state(&spec.state)?;
        let mut reg = Registry {
            key,
            apis: Vec::new(),
            apps: Default::default(),
            revoked: Default::default(),
            not_before: state.not_before.clone(),
        };
        for a in &spec.apis {
            if !state.deleted_apis.contains(&a.id) {
                reg.apis.push(Api {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    identifier: a.identifier.as_str().into(),
                    scopes: scopes(&a.scopes),
                });
            }
        }
        // Config secrets of apps the state names too, to compare with the
        // state's (which win): never logged, dropped at the end of `open`.
        let mut config_secrets: BTreeMap<ClientId, String> = BTreeMap::new();
        for a in spec
            .apps
            .iter()
            .filter(|a| !state.deleted_apps.contains(a.client_id.as_str()))
        {
            let (app, secret) = config_app(&reg, a)?;
            if let Some(secret) = secret
                && state.apps.iter().any(|s| s.client_id == a.client_id)
            {
                config_secrets.insert(app.client_id.clone(), secret);
            }
            reg.apps.insert(app.client_id.clone(), app);
        }
        overlay_state(&mut reg, &mut state, spec, &config_secrets);
        drop(config_secrets);
        // A blocked app: none of its tokens so far are valid, whenever (and
        // however: config or runtime) it was blocked.
        let blocked: Vec<ClientId> = reg
            .apps
            .values()
            .filter(|a| a.blocked)
            .map(|a| a.client_id.clone())
            .collect();
        let now = crate::clock::unix_now();
        state.revoked.retain(|_, exp| *exp > now);
        reg.revoked = state.revoked.clone();
        if !blocked.is_empty() {
            for id in blocked {
                state.not_before.insert(id, now);
            }
            reg.not_before = state.not_before.clone();
            // Recorded at once (with the blocks the config imposed on apps
            // the state names, and nothing else: config apps are not copied
            // into the state), so removing `blocked` from the config later
            // does not revive the tokens issued before.
            write_state(&spec.state, &state)?;
        }
        let management = Api {
            id: "management".into(),
            name: "m2m-sidecar management API".into(),
            identifier: Audience::from(spec.management_audience()),
            scopes: MANAGEMENT_SCOPES.map(Scope::from).to_vec(),
        };
        reg.apis.push(management.clone());
        Ok(Store {
            snapshot: ArcSwap::from_pointee(reg),
            deleted: std::sync::Mutex::new((state.deleted_apis, state.deleted_apps)),
            write: tokio::sync::Mutex::new(()),
            state_path: spec.state.clone(),
            management,
        })
    }
}

/// An app as the config names it, and its config secret in clear (to compare
/// with the state's; never logged).
fn config_app(reg: &Registry, a: &AppSpec) -> Result<(App, Option<String>), OpenError> {
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
        secrets.push(reg.seal(&secret));
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

/// Lay the state's APIs and apps over the config's: the state wins for what
/// it names, with one exception: the config can block (never unblock) an app
/// the state names.
fn overlay_state(
    reg: &mut Registry,
    state: &mut State,
    spec: &IssuerSpec,
    config_secrets: &BTreeMap<ClientId, String>,
) {
    for api in &state.apis {
        reg.apis.retain(|a| a.id != api.id);
        reg.apis.push(api.clone());
    }
    let blocked_in_config: BTreeSet<&str> = spec
        .apps
        .iter()
        .filter(|a| a.blocked)
        .map(|a| a.client_id.as_str())
        .collect();
    let started = crate::clock::unix_now();
    for app in &mut state.apps {
        if blocked_in_config.contains(app.client_id.as_str()) && !app.blocked {
            // Recorded in the state (written below), as a block through
            // the API would be: an incident response must not come undone
            // because someone later reverts the config file.
            app.blocked = true;
            app.blocked_at = Some(started);
            tracing::warn!(
                client_id = %app.client_id,
                "issuer app blocked by the config (`blocked = true`) although the state had it unblocked: \
                 blocked now, and every token issued so far is refused; this is recorded in the state, \
                 so removing `blocked` from the config will not unblock it: unblock it through the \
                 management API (POST /api/v1/apps/{{client_id}}/unblock)"
            );
        }
        if let Some(secret) = config_secrets.get(&app.client_id)
            && !secret_in_effect(reg, app, secret)
        {
            tracing::warn!(
                client_id = %app.client_id,
                "the client_secret in the config for this issuer app is not one of its secrets in the state: \
                 the state's secret stays in effect and the config's is refused; to change the secret, \
                 rotate it through the management API (POST /api/v1/apps/{{client_id}}/secrets, with \
                 {{\"grace\": \"1h\"}} to keep the old one for a while) and give the client the secret it returns"
            );
        }
        reg.apps.insert(app.client_id.clone(), app.clone());
    }
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

fn read_state(path: &Path) -> Result<State, OpenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| OpenError::BadState {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(OpenError::ReadState {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The HMAC key for client secrets: `<state dir>/secrets.key`, 32 random bytes.
fn load_or_create_key(state: &Path) -> Result<hmac::Key, OpenError> {
    let path = dir_of(state).join("secrets.key");
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => return Err(OpenError::KeyLength(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut b)
                .map_err(OpenError::KeyRandom)?;
            write_private(&path, &b).map_err(OpenError::WriteKey)?;
            b
        }
        Err(source) => return Err(OpenError::ReadKey { path, source }),
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> IssuerSpec {
        IssuerSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
            url: "https://issuer.example/".parse().unwrap(),
            state: dir.join("state.json"),
            token_ttl: std::time::Duration::from_secs(3600),
            signing_alg: crate::config::SigningAlg::ES256,
            apis: Vec::new(),
            apps: Vec::new(),
        }
    }

    fn open_error(spec: &IssuerSpec) -> String {
        match Store::open(spec) {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn failures_name_the_file_or_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        let key = dir.path().join("secrets.key");
        std::fs::write(&key, b"short").unwrap();
        assert_eq!(
            open_error(&spec),
            format!("{}: expected 32 bytes", key.display())
        );
        std::fs::remove_file(&key).unwrap();
        std::fs::write(&spec.state, b"{").unwrap();
        let e = open_error(&spec);
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
            open_error(&spec),
            "issuer app billing: client secret must be at least 32 characters"
        );
    }
}
