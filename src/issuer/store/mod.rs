//! The registry over time: built from config at start, laid over by what
//! the database holds, changed by the management API. Readers take the
//! in-memory snapshot without locking (the token endpoint never waits for
//! the database); writers are serialised, and each change is committed to
//! the database, in one transaction with its audit record, before it is
//! visible. With PostgreSQL, replicas follow each other's changes through
//! the change feed ([`feed`]).
//!
//! Config and store: the config is the bootstrap. For an API id or client
//! id that both name, the store wins (it holds the latest runtime change);
//! an entry deleted at runtime stays deleted even though the config still
//! names it. One exception: `blocked = true` in the config blocks the app at
//! start whatever the store says (recorded in the store, with a new "not
//! before"); the config never unblocks what the store blocked. A config
//! `client_secret` that is not one of the store's current secrets for that
//! app is not used, and a warning at start says so (naming the client id,
//! never the secret).

mod db;
mod feed;
mod import;
mod open;
mod postgres;
mod rows;
mod schema;
mod seal;
mod sql;
mod sqlite;

pub use db::DbError;
pub use open::OpenError;
pub use rows::{Audit, AuditRecord, KeyRow};

use super::registry::{Api, App, Registry};
use crate::oauth::ids::ClientId;
use arc_swap::ArcSwap;
use db::Db;
use rows::{Delta, Loaded};
use seal::StoreKey;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a change could not be made durable (nothing was published).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable ({0}): nothing was changed; retry later")]
    Unavailable(#[source] DbError),
    #[error("cannot seal a key for the store")]
    Seal(#[source] aws_lc_rs::error::Unspecified),
    #[error(transparent)]
    Unseal(#[from] seal::OpenError),
    #[error("{}: {source}", .path.display())]
    Import {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Shortest client secret accepted (literal, env or file).
pub(super) const MIN_SECRET_LEN: usize = 32;

/// Ids deleted at runtime, so the config does not bring them back.
#[derive(Clone, Default)]
pub struct Tombstones {
    pub apis: BTreeSet<String>,
    pub apps: BTreeSet<ClientId>,
}

/// What the config contributes, kept to rebuild the registry from a full
/// reload (a replica that was away longer than the feed keeps rows).
struct Base {
    apis: Vec<Api>,
    apps: Vec<App>,
}

/// The issuer's registry, its database and the lock that orders changes.
pub struct Store {
    snapshot: ArcSwap<Registry>,
    deleted: Mutex<Tombstones>,
    /// Held while changing; holds the last feed position applied.
    write: tokio::sync::Mutex<i64>,
    db: Db,
    key: StoreKey,
    management: Api,
    base: Base,
    /// Why the database is not usable now, if it is not.
    trouble: Mutex<Option<String>>,
    /// Bumped when another replica changed the signing keys.
    keys_changed: tokio::sync::watch::Sender<u64>,
    /// Refused calls recorded per caller.
    refusals: crate::issuer::limit::RefusalLimiter,
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

    /// `None` when the database answers; else why not.
    pub fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_trouble(&self, why: Option<String>) {
        let mut t = self.trouble.lock().unwrap_or_else(PoisonError::into_inner);
        match (&*t, &why) {
            (None, Some(w)) => {
                tracing::error!(reason = %w, "store unavailable: tokens are issued from memory, management writes are refused")
            }
            (Some(_), None) => tracing::info!("store available again"),
            _ => {}
        }
        *t = why;
    }

    fn unavailable(&self, e: DbError) -> StoreError {
        self.set_trouble(Some(e.to_string()));
        StoreError::Unavailable(e)
    }

    /// Changes of the signing keys made elsewhere (another replica).
    pub fn keys_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.keys_changed.subscribe()
    }

    /// Apply `change` to a copy of the registry, commit it (with `audit`, if
    /// any, in the same transaction), then publish it. Changes run one at a
    /// time, on every replica together, so concurrent ones lose nothing.
    pub async fn change<T, E: From<StoreError>>(
        &self,
        audit: Option<Audit>,
        change: impl FnOnce(&mut Registry, &mut Tombstones) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut seq = self.write.lock().await;
        match &self.db {
            Db::Sqlite(s) => {
                let (next, tombstones, delta, out) = self.draft(change)?;
                let audit = targeted(audit, &delta);
                s.apply(delta, audit)
                    .await
                    .map_err(|e| E::from(self.unavailable(e)))?;
                self.set_trouble(None);
                self.publish(next, tombstones);
                Ok(out)
            }
            Db::Postgres(p) => {
                let at = *seq;
                let attempt = async {
                    let mut guard = p.writer().await.map_err(|e| E::from(self.unavailable(e)))?;
                    let client = guard
                        .as_mut()
                        .ok_or_else(|| E::from(self.unavailable(DbError::Stopped)))?;
                    let pg = |e| E::from(self.unavailable(DbError::postgres(&p.target, e)));
                    let tx = postgres::begin(client).await.map_err(pg)?;
                    // Whatever other replicas committed first, this one sees.
                    let caught = self
                        .catch_up(&tx, at)
                        .await
                        .map_err(|e| E::from(self.unavailable(e)))?;
                    let (next, tombstones, delta, out) = self.draft(change)?;
                    let audit = targeted(audit, &delta);
                    let written = postgres::write(&tx, &delta, audit.as_ref())
                        .await
                        .map_err(pg)?;
                    tx.commit().await.map_err(pg)?;
                    Ok::<_, E>((next, tombstones, out, written.unwrap_or(caught).max(caught)))
                };
                // A database that does not answer is an outage too: the
                // write is refused, and the next one starts afresh.
                match tokio::time::timeout(postgres::QUERY_LIMIT, attempt).await {
                    Ok(done) => {
                        let (next, tombstones, out, at) = done?;
                        *seq = at;
                        self.set_trouble(None);
                        self.publish(next, tombstones);
                        Ok(out)
                    }
                    Err(_) => {
                        p.drop_writer().await;
                        Err(E::from(
                            self.unavailable(DbError::Timeout(p.target.clone())),
                        ))
                    }
                }
            }
        }
    }

    /// The change applied to a copy: the new registry and tombstones, the
    /// rows to write, and what the change returns.
    fn draft<T, E>(
        &self,
        change: impl FnOnce(&mut Registry, &mut Tombstones) -> Result<T, E>,
    ) -> Result<(Registry, Tombstones, Delta, T), E> {
        let prev = self.snapshot.load_full();
        let mut next = (*prev).clone();
        let _ = next.apps.take_touched();
        let prev_tomb = self.tombstones();
        let mut tombstones = prev_tomb.clone();
        let out = change(&mut next, &mut tombstones)?;
        let now = crate::clock::unix_now();
        let expired: Vec<String> = next
            .revoked
            .iter()
            .filter(|(_, exp)| **exp <= now)
            .map(|(jti, _)| jti.clone())
            .collect();
        for jti in expired {
            next.revoked.remove(&jti);
        }
        let delta = self.delta(&prev, &mut next, &prev_tomb, &tombstones);
        Ok((next, tombstones, delta, out))
    }

    fn delta(
        &self,
        prev: &Registry,
        next: &mut Registry,
        pt: &Tombstones,
        nt: &Tombstones,
    ) -> Delta {
        use imbl::ordmap::DiffItem;
        let mut d = Delta::default();
        for id in next.apps.take_touched() {
            let app = next.apps.shared(id.as_str());
            d.apps.push((id, app));
        }
        for api in next.apis.iter().filter(|a| a.id != self.management.id) {
            if prev.apis.iter().find(|p| p.id == api.id) != Some(api) {
                d.apis.push((api.id.clone(), Some(api.clone())));
            }
        }
        for api in &prev.apis {
            if !next.apis.iter().any(|a| a.id == api.id) {
                d.apis.push((api.id.clone(), None));
            }
        }
        for item in prev.not_before.diff(&next.not_before) {
            match item {
                DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => {
                    d.not_before.push((k.clone(), Some(*v)))
                }
                DiffItem::Remove(k, _) => d.not_before.push((k.clone(), None)),
            }
        }
        for item in prev.revoked.diff(&next.revoked) {
            match item {
                DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => {
                    d.revoked.push((k.clone(), Some(*v)))
                }
                DiffItem::Remove(k, _) => d.revoked.push((k.clone(), None)),
            }
        }
        d.deleted_apis
            .extend(nt.apis.difference(&pt.apis).map(|id| (id.clone(), true)));
        d.deleted_apis
            .extend(pt.apis.difference(&nt.apis).map(|id| (id.clone(), false)));
        d.deleted_apps
            .extend(nt.apps.difference(&pt.apps).map(|id| (id.clone(), true)));
        d.deleted_apps
            .extend(pt.apps.difference(&nt.apps).map(|id| (id.clone(), false)));
        d
    }

    fn tombstones(&self) -> Tombstones {
        self.deleted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, next: Registry, tombstones: Tombstones) {
        *self.deleted.lock().unwrap_or_else(PoisonError::into_inner) = tombstones;
        self.snapshot.store(Arc::new(next));
    }

    /// Record a refused management call (best effort: a store that is down
    /// cannot record it, and the log says so).
    pub async fn record_refusal(&self, audit: Audit, outcome: &str) {
        let caller = audit.caller.as_ref().map_or("", ClientId::as_str);
        if !self.refusals.take(caller) {
            tracing::warn!(client_id = %caller, action = audit.action, outcome, "refused management call not recorded in the audit log: this caller's refusals are over their rate");
            return;
        }
        if let Err(e) = self.db.record(audit, outcome.to_owned()).await {
            tracing::warn!(error = %e, "cannot record a refused management call in the audit log");
        }
    }

    /// A page of the audit log after `seq`.
    pub async fn audit_page(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.db
            .audit_page(after, limit)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// The signing keys of `alg`, in the order they were made.
    pub async fn signing_keys(&self, alg: &str) -> Result<Vec<KeyRow>, StoreError> {
        self.db.keys(alg).await.map_err(|e| self.unavailable(e))
    }

    /// Make `pem` the active key of `alg` unless there is one (two replicas
    /// starting together make exactly one).
    pub async fn add_first_key(
        &self,
        kid: &str,
        alg: &str,
        jwk: String,
        pem: &str,
    ) -> Result<(), StoreError> {
        let row = self.key_row(kid, alg, jwk, pem)?;
        self.db
            .insert_key_if_none(row)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// Retire the active key of `alg` until `retire_after`, make the new one
    /// active: one transaction, announced to every replica.
    pub async fn rotate_key(
        &self,
        (kid, alg, jwk, pem): (&str, &str, String, &str),
        retire_after: u64,
        max_retired: usize,
        audit: Audit,
    ) -> Result<(), StoreError> {
        let row = self.key_row(kid, alg, jwk, pem)?;
        let _one_at_a_time = self.write.lock().await;
        self.db
            .rotate(row, retire_after, max_retired, audit)
            .await
            .map_err(|e| self.unavailable(e))
    }

    fn key_row(&self, kid: &str, alg: &str, jwk: String, pem: &str) -> Result<KeyRow, StoreError> {
        let sealed = self
            .key
            .seal(&rows::signing_key_aad(kid), pem.as_bytes())
            .map_err(StoreError::Seal)?;
        Ok(KeyRow {
            kid: kid.to_owned(),
            alg: alg.to_owned(),
            jwk,
            sealed,
            retired_at: None,
            retire_after: None,
        })
    }

    /// The private key (PKCS#8 PEM) of a stored signing key.
    pub fn unseal_key(&self, row: &KeyRow) -> Result<String, StoreError> {
        let pem = self
            .key
            .open(&rows::signing_key_aad(&row.kid), &row.sealed)?;
        String::from_utf8(pem).map_err(|_| {
            StoreError::Unseal(seal::OpenError {
                what: rows::signing_key_aad(&row.kid),
            })
        })
    }
}

/// Bring the schema of `spec`'s store up to date; the version it is at.
pub async fn migrate(spec: &crate::config::IssuerSpec) -> Result<i64, OpenError> {
    open::database(spec).await?;
    Ok(schema::latest())
}

/// `audit` with its target, when the call named none, taken from what the
/// change wrote (a new app's client id, a new API's id).
fn targeted(audit: Option<Audit>, delta: &Delta) -> Option<Audit> {
    audit.map(|mut a| {
        if a.target.is_empty() {
            a.target = delta
                .apps
                .first()
                .map(|(id, _)| id.to_string())
                .or_else(|| delta.apis.first().map(|(id, _)| id.clone()))
                .unwrap_or_default();
        }
        a
    })
}

/// Lay `loaded` (the database) over `base` (the config).
fn registry_from(
    key: aws_lc_rs::hmac::Key,
    base: &Base,
    loaded: Loaded,
    management: &Api,
) -> (Registry, Tombstones) {
    let mut reg = Registry {
        key,
        apis: Vec::new(),
        apps: Default::default(),
        revoked: loaded.revoked.into_iter().collect(),
        not_before: loaded.not_before.into_iter().collect(),
    };
    for api in base
        .apis
        .iter()
        .filter(|a| !loaded.deleted_apis.contains(&a.id))
    {
        reg.apis.push(api.clone());
    }
    for api in loaded.apis {
        reg.apis.retain(|a| a.id != api.id);
        reg.apis.push(api);
    }
    // The database's apps, and the config's it does not name (nor deleted).
    reg.apps = loaded.apps;
    for app in &base.apps {
        if !loaded.deleted_apps.contains(&app.client_id)
            && !reg.apps.contains_key(app.client_id.as_str())
        {
            reg.apps.insert(app.client_id.clone(), app.clone());
        }
    }
    reg.apis.push(management.clone());
    let _ = reg.apps.take_touched();
    let tombstones = Tombstones {
        apis: loaded.deleted_apis,
        apps: loaded.deleted_apps,
    };
    (reg, tombstones)
}
