//! The signing key and the keys retired by rotation, as the store holds
//! them. After `POST /api/v1/keys/rotate` the new key signs; the old one's
//! public half stays in JWKS (and verifies for introspection) until every
//! token it signed has expired. At most [`MAX_RETIRED`] retired keys are kept
//! (so JWKS holds at most five keys, a few KiB): a rotation beyond that
//! retires the oldest at once, and tokens it signed stop verifying (rotating
//! that often within one token lifetime is an emergency measure, and then
//! that is the point). A rotation through another replica reaches this one
//! through the store's change feed ([`KeyRing::follow`]).

use super::introspect::Verifier;
use super::keys::{self, SigningKey};
use super::store::{Audit, KeyRow, Store, StoreError};
use crate::clock::unix_now;
use crate::config::SigningAlg;
use crate::jose::sign::KeyError;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Retired keys kept in JWKS at most.
pub const MAX_RETIRED: usize = 4;

/// Why the keys cannot be loaded or rotated. Never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the signing key {kid}: {source}")]
    Key {
        kid: String,
        #[source]
        source: KeyError,
    },
    #[error("cannot generate a signing key")]
    Generate(#[source] KeyError),
    #[error("the store holds no active {0} signing key")]
    NoActiveKey(&'static str),
    /// The verifier refused a key of the set (it would not verify its own tokens).
    #[error("{0}")]
    Verifier(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A retired key: its public JWK and when it leaves JWKS (Unix seconds).
#[derive(Clone)]
struct Retired {
    jwk: serde_json::Value,
    retire_after: u64,
}

/// What is in use at one moment.
pub struct Keys {
    pub signing: Arc<SigningKey>,
    pub verifier: Verifier,
    pub jwks: Bytes,
    retired: Vec<Retired>,
}

pub struct KeyRing {
    current: ArcSwap<Keys>,
    store: Arc<Store>,
    alg: SigningAlg,
    issuer: String,
    ttl: Duration,
}

impl KeyRing {
    /// The keys of `alg` in `store`; the first one is made here if there is
    /// none (by exactly one replica when several start together).
    pub async fn open(
        store: Arc<Store>,
        alg: SigningAlg,
        issuer: &str,
        ttl: Duration,
    ) -> Result<Arc<Self>, KeyringError> {
        let mut rows = store.signing_keys(alg.as_str()).await?;
        if !rows.iter().any(|r| r.retired_at.is_none()) {
            let (key, pem) = keys::generate(alg).map_err(KeyringError::Generate)?;
            store
                .add_first_key(&key.kid, alg.as_str(), key.jwk.to_string(), pem.as_str())
                .await?;
            rows = store.signing_keys(alg.as_str()).await?;
            tracing::info!(alg = alg.as_str(), "signing key ready");
        }
        let keys = build(&store, alg, &rows, issuer)?;
        let ring = Arc::new(KeyRing {
            current: ArcSwap::from_pointee(keys),
            store,
            alg,
            issuer: issuer.to_owned(),
            ttl,
        });
        tokio::spawn(Self::follow(
            Arc::downgrade(&ring),
            ring.store.keys_changed(),
        ));
        Ok(ring)
    }

    /// Reload the keys whenever another replica changed them.
    async fn follow(ring: Weak<Self>, mut changed: tokio::sync::watch::Receiver<u64>) {
        while changed.changed().await.is_ok() {
            let Some(ring) = ring.upgrade() else { return };
            if let Err(e) = ring.reload().await {
                tracing::error!(error = %e, "cannot reload the signing keys");
            }
        }
    }

    async fn reload(&self) -> Result<String, KeyringError> {
        let rows = self.store.signing_keys(self.alg.as_str()).await?;
        let keys = build(&self.store, self.alg, &rows, &self.issuer)?;
        let kid = keys.signing.kid.clone();
        self.current.store(Arc::new(keys));
        Ok(kid)
    }

    /// The keys now; retired keys past their time are dropped here.
    pub fn current(&self) -> Arc<Keys> {
        let keys = self.current.load_full();
        let now = unix_now();
        if keys.retired.iter().all(|r| r.retire_after > now) {
            return keys;
        }
        let retired: Vec<Retired> = keys
            .retired
            .iter()
            .filter(|r| r.retire_after > now)
            .cloned()
            .collect();
        match assemble(keys.signing.clone(), retired, &self.issuer) {
            Ok(next) => {
                let next = Arc::new(next);
                self.current.store(next.clone());
                next
            }
            Err(_) => keys,
        }
    }

    /// Generate a new signing key; the old one verifies until its tokens
    /// expire. Returns the new `kid`.
    pub async fn rotate(&self, audit: Audit) -> Result<String, KeyringError> {
        let (key, pem) = keys::generate(self.alg).map_err(KeyringError::Generate)?;
        // Tokens the old key signed live at most `ttl`; a minute more for clock skew.
        let retire_after = unix_now() + self.ttl.as_secs() + 60;
        self.store
            .rotate_key(
                (
                    &key.kid,
                    self.alg.as_str(),
                    key.jwk.to_string(),
                    pem.as_str(),
                ),
                retire_after,
                MAX_RETIRED,
                audit,
            )
            .await?;
        let kid = self.reload().await?;
        tracing::info!(kid = %kid, "signing key rotated");
        Ok(kid)
    }
}

/// The keys of `rows`: the active one (unsealed) signs, retired ones still
/// in their time verify.
fn build(
    store: &Store,
    alg: SigningAlg,
    rows: &[KeyRow],
    issuer: &str,
) -> Result<Keys, KeyringError> {
    let active = rows
        .iter()
        .find(|r| r.retired_at.is_none())
        .ok_or(KeyringError::NoActiveKey(alg.as_str()))?;
    let pem = store.unseal_key(active)?;
    let signing = keys::from_pem(&pem, alg).map_err(|source| KeyringError::Key {
        kid: active.kid.clone(),
        source,
    })?;
    let now = unix_now();
    let retired = rows
        .iter()
        .filter(|r| r.retired_at.is_some() && r.retire_after.is_some_and(|t| t > now))
        .filter_map(|r| {
            Some(Retired {
                jwk: serde_json::from_str(&r.jwk).ok()?,
                retire_after: r.retire_after?,
            })
        })
        .collect();
    assemble(Arc::new(signing), retired, issuer)
}

fn assemble(
    signing: Arc<SigningKey>,
    retired: Vec<Retired>,
    issuer: &str,
) -> Result<Keys, KeyringError> {
    let mut jwks = vec![signing.jwk.clone()];
    jwks.extend(retired.iter().map(|r| r.jwk.clone()));
    let verifier = Verifier::new(&jwks, issuer).map_err(|e| KeyringError::Verifier(e.into()))?;
    let body = serde_json::json!({"keys": jwks}).to_string();
    Ok(Keys {
        signing,
        verifier,
        jwks: Bytes::from(body),
        retired,
    })
}
