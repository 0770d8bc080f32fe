//! The registry over time: built from config at start, overlaid by the runtime
//! state file, changed by the management API. Readers take a snapshot without
//! locking; writers are serialized, and each change is written to the state file
//! (temporary file, fsync, rename, fsync of the directory) before it is visible,
//! so a crash never leaves the file half written and no acknowledged change is
//! lost.
//!
//! Config and state: the config is the bootstrap. For an API id or client id that
//! both name, the state wins (it holds the latest runtime change); an entry deleted
//! at runtime stays deleted even though the config still names it. One
//! exception: `blocked = true` in the config blocks the app at start whatever
//! the state says (recorded in the state, with a new "not before"); the config
//! never unblocks what the state blocked. A config `client_secret` that is not
//! one of the state's current secrets for that app is not used, and a warning
//! at start says so (naming the client id, never the secret).

use super::registry::{Api, App, RegisteredKeys, Registry};
use crate::config::{IssuerSpec, MANAGEMENT_SCOPES};
use crate::private_file::{WriteError, dir_of, write as write_private};
use crate::secret;
use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a change could not be persisted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot encode the state: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("{0}")]
    Write(#[source] WriteError),
}

/// Shortest client secret accepted (literal, env or file).
const MIN_SECRET_LEN: usize = 32;

/// What the state file holds.
#[derive(Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    apis: Vec<Api>,
    #[serde(default)]
    apps: Vec<App>,
    #[serde(default)]
    deleted_apis: BTreeSet<String>,
    #[serde(default)]
    deleted_apps: BTreeSet<String>,
    /// Revoked token ids → their `exp`.
    #[serde(default)]
    revoked: BTreeMap<String, u64>,
    /// client id → tokens issued at or before this Unix second are revoked
    /// (the app's last block or its deletion).
    #[serde(default)]
    not_before: BTreeMap<String, u64>,
}

/// The issuer's registry, its state file and the lock that orders changes.
pub struct Store {
    snapshot: ArcSwap<Registry>,
    deleted: std::sync::Mutex<(BTreeSet<String>, BTreeSet<String>)>,
    write: tokio::sync::Mutex<()>,
    state_path: PathBuf,
    management: Api,
}

impl Store {
    /// Build the registry from `spec` and the state file, if there is one.
    pub fn open(spec: &IssuerSpec) -> Result<Self, String> {
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
                    identifier: a.identifier.clone(),
                    scopes: a.scopes.clone(),
                });
            }
        }
        // Config secrets of apps the state names too, to compare with the
        // state's (which win): never logged, dropped at the end of `open`.
        let mut config_secrets: BTreeMap<String, String> = BTreeMap::new();
        for a in spec
            .apps
            .iter()
            .filter(|a| !state.deleted_apps.contains(&a.client_id))
        {
            let mut secrets = Vec::new();
            if let Some(source) = &a.secret {
                let secret =
                    secret::read(source).map_err(|e| format!("issuer app {}: {e}", a.client_id))?;
                if secret.chars().count() < MIN_SECRET_LEN {
                    return Err(format!(
                        "issuer app {}: client secret must be at least {MIN_SECRET_LEN} characters",
                        a.client_id
                    ));
                }
                secrets.push(reg.seal(&secret));
                if state.apps.iter().any(|s| s.client_id == a.client_id) {
                    config_secrets.insert(a.client_id.clone(), secret);
                }
            }
            let jwks = match (&a.jwks_file, &a.public_key_file) {
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        format!(
                            "issuer app {}: cannot read {}: {e}",
                            a.client_id,
                            path.display()
                        )
                    })?;
                    let keys = RegisteredKeys::from_pem(&text).map_err(|e| {
                        format!("issuer app {}: {}: {e}", a.client_id, path.display())
                    })?;
                    Some(keys)
                }
                (None, None) => None,
                (Some(path), _) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        format!(
                            "issuer app {}: cannot read {}: {e}",
                            a.client_id,
                            path.display()
                        )
                    })?;
                    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        format!(
                            "issuer app {}: {}: not JSON: {e}",
                            a.client_id,
                            path.display()
                        )
                    })?;
                    let keys = RegisteredKeys::from_jwks(doc).map_err(|e| {
                        format!("issuer app {}: {}: {e}", a.client_id, path.display())
                    })?;
                    Some(keys)
                }
            };
            reg.apps.insert(
                a.client_id.clone(),
                App {
                    client_id: a.client_id.clone(),
                    name: a.name.clone(),
                    secrets,
                    jwks,
                    grants: a.grants.iter().cloned().collect(),
                    blocked: a.blocked,
                    blocked_at: a.blocked.then(crate::clock::unix_now),
                },
            );
        }
        // The state wins for what it names, with one exception: the config
        // can block (never unblock) an app the state names.
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
                && !secret_in_effect(&reg, app, secret)
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
        drop(config_secrets);
        // A blocked app: none of its tokens so far are valid, whenever (and
        // however: config or runtime) it was blocked.
        let blocked: Vec<String> = reg
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
            write_state(&spec.state, &state).map_err(|e| e.to_string())?;
        }
        let management = Api {
            id: "management".into(),
            name: "m2m-sidecar management API".into(),
            identifier: spec.management_audience(),
            scopes: MANAGEMENT_SCOPES.map(str::to_owned).to_vec(),
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

    /// The current registry, without locking.
    pub fn snapshot(&self) -> Arc<Registry> {
        self.snapshot.load_full()
    }

    /// The management API's audience.
    pub fn management_audience(&self) -> &str {
        &self.management.identifier
    }

    /// Apply `change` to a copy of the registry, persist it, then publish it.
    /// Changes run one at a time, so concurrent ones lose nothing.
    pub async fn change<T, E: From<StoreError>>(
        &self,
        change: impl FnOnce(&mut Registry, &mut Tombstones) -> Result<T, E>,
    ) -> Result<T, E> {
        let _one_at_a_time = self.write.lock().await;
        let mut next = (*self.snapshot.load_full()).clone();
        let mut tombstones = {
            let d = self
                .deleted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Tombstones {
                apis: d.0.clone(),
                apps: d.1.clone(),
            }
        };
        let out = change(&mut next, &mut tombstones)?;
        let now = crate::clock::unix_now();
        next.revoked.retain(|_, exp| *exp > now);
        self.persist(&next, &tombstones).map_err(E::from)?;
        *self
            .deleted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (tombstones.apis, tombstones.apps);
        self.snapshot.store(Arc::new(next));
        Ok(out)
    }

    fn persist(&self, reg: &Registry, tombstones: &Tombstones) -> Result<(), StoreError> {
        let state = State {
            apis: reg
                .apis
                .iter()
                .filter(|a| a.id != self.management.id)
                .cloned()
                .collect(),
            apps: reg.apps.values().cloned().collect(),
            deleted_apis: tombstones.apis.clone(),
            deleted_apps: tombstones.apps.clone(),
            revoked: reg.revoked.clone(),
            not_before: reg.not_before.clone(),
        };
        write_state(&self.state_path, &state)
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

/// Ids deleted at runtime, so the config does not bring them back.
pub struct Tombstones {
    pub apis: BTreeSet<String>,
    pub apps: BTreeSet<String>,
}

fn write_state(path: &Path, state: &State) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(state).map_err(StoreError::Encode)?;
    write_private(path, &json).map_err(StoreError::Write)?;
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(dir_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn read_state(path: &Path) -> Result<State, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("state file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(format!(
            "cannot read the state file {}: {e}",
            path.display()
        )),
    }
}

/// The HMAC key for client secrets: `<state dir>/secrets.key`, 32 random bytes.
fn load_or_create_key(state: &Path) -> Result<hmac::Key, String> {
    let path = dir_of(state).join("secrets.key");
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => return Err(format!("{}: expected 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut b)
                .map_err(|_| "cannot generate the secrets key".to_owned())?;
            write_private(&path, &b).map_err(|e| e.to_string())?;
            b
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}
