//! The signing key and the keys retired by rotation. After `POST
//! /api/v1/keys/rotate` the new key signs; the old one's public half stays in
//! JWKS (and verifies for introspection) until every token it signed has expired.
//! Retired public keys are kept in `keys.json` beside the state. At most
//! [`MAX_RETIRED`] retired keys are kept (so JWKS holds at most five keys,
//! a few KiB): a rotation beyond that retires the oldest at once, and tokens
//! it signed stop verifying (rotating that often within one token lifetime is
//! an emergency measure, and then that is the point).

use super::introspect::Verifier;
use super::keys::{self, SigningKey};
use crate::clock::unix_now;
use crate::config::SigningAlg;
use crate::private_file::{dir_of, write as write_private};
use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Retired keys kept in JWKS at most.
pub const MAX_RETIRED: usize = 4;

/// A retired key: its public JWK and when it leaves JWKS (Unix seconds).
#[derive(Clone, Serialize, Deserialize)]
struct Retired {
    jwk: serde_json::Value,
    retire_after: u64,
}

/// What is in use at one moment.
pub struct Keys {
    pub signing: SigningKey,
    pub verifier: Verifier,
    pub jwks: Bytes,
    retired: Vec<Retired>,
}

pub struct KeyRing {
    current: ArcSwap<Keys>,
    rotating: tokio::sync::Mutex<()>,
    state: PathBuf,
    alg: SigningAlg,
    issuer: String,
    ttl: Duration,
}

impl KeyRing {
    pub fn open(
        state: &Path,
        alg: SigningAlg,
        issuer: &str,
        ttl: Duration,
    ) -> Result<Self, String> {
        let signing = keys::load_or_generate(state, alg)?;
        let retired = read_retired(state)?;
        let keys = build(signing, retired, issuer)?;
        Ok(KeyRing {
            current: ArcSwap::from_pointee(keys),
            rotating: tokio::sync::Mutex::new(()),
            state: state.to_path_buf(),
            alg,
            issuer: issuer.to_owned(),
            ttl,
        })
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
        match keys::load_or_generate(&self.state, self.alg)
            .and_then(|s| build(s, retired, &self.issuer))
        {
            Ok(next) => {
                let next = Arc::new(next);
                self.current.store(next.clone());
                next
            }
            Err(_) => keys,
        }
    }

    /// Generate a new signing key; the old one verifies until its tokens expire.
    /// Returns the new `kid`.
    pub async fn rotate(&self) -> Result<String, String> {
        let _one_at_a_time = self.rotating.lock().await;
        let old = self.current();
        let mut retired = old.retired.clone();
        retired.push(Retired {
            jwk: old.signing.jwk.clone(),
            // Tokens it signed live at most `ttl`; a minute more for clock skew.
            retire_after: unix_now() + self.ttl.as_secs() + 60,
        });
        if retired.len() > MAX_RETIRED {
            retired.drain(..retired.len() - MAX_RETIRED);
        }
        let json = serde_json::to_vec_pretty(&retired).map_err(|e| e.to_string())?;
        write_private(&retired_path(&self.state), &json).map_err(|e| e.to_string())?;
        let signing = keys::replace(&self.state, self.alg)?;
        let kid = signing.kid.clone();
        self.current
            .store(Arc::new(build(signing, retired, &self.issuer)?));
        tracing::info!(kid = %kid, "signing key rotated");
        Ok(kid)
    }
}

fn build(signing: SigningKey, retired: Vec<Retired>, issuer: &str) -> Result<Keys, String> {
    let mut jwks = vec![signing.jwk.clone()];
    jwks.extend(retired.iter().map(|r| r.jwk.clone()));
    let verifier = Verifier::new(&jwks, issuer)?;
    let body = serde_json::json!({"keys": jwks}).to_string();
    Ok(Keys {
        signing,
        verifier,
        jwks: Bytes::from(body),
        retired,
    })
}

fn retired_path(state: &Path) -> PathBuf {
    dir_of(state).join("keys.json")
}

fn read_retired(state: &Path) -> Result<Vec<Retired>, String> {
    let path = retired_path(state);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let all: Vec<Retired> =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let now = unix_now();
            let mut kept: Vec<Retired> = all.into_iter().filter(|r| r.retire_after > now).collect();
            if kept.len() > MAX_RETIRED {
                kept.drain(..kept.len() - MAX_RETIRED);
            }
            Ok(kept)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
