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

mod open;

pub use open::OpenError;

use super::registry::{Api, App, Registry};
use crate::oauth::ids::ClientId;
use crate::private_file::{WriteError, dir_of, write as write_private};
use arc_swap::ArcSwap;
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
pub(super) const MIN_SECRET_LEN: usize = 32;

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
    deleted_apps: BTreeSet<ClientId>,
    /// Revoked token ids → their `exp`.
    #[serde(default)]
    revoked: BTreeMap<String, u64>,
    /// client id → tokens issued at or before this Unix second are revoked
    /// (the app's last block or its deletion).
    #[serde(default)]
    not_before: BTreeMap<ClientId, u64>,
}

/// The issuer's registry, its state file and the lock that orders changes.
pub struct Store {
    snapshot: ArcSwap<Registry>,
    deleted: std::sync::Mutex<(BTreeSet<String>, BTreeSet<ClientId>)>,
    write: tokio::sync::Mutex<()>,
    state_path: PathBuf,
    management: Api,
}

impl Store {
    /// The current registry, without locking.
    pub fn snapshot(&self) -> Arc<Registry> {
        self.snapshot.load_full()
    }

    /// The management API's audience.
    pub fn management_audience(&self) -> &str {
        self.management.identifier.as_str()
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

/// Ids deleted at runtime, so the config does not bring them back.
pub struct Tombstones {
    pub apis: BTreeSet<String>,
    pub apps: BTreeSet<ClientId>,
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
