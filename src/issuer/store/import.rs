//! The JSON state of earlier versions (`state = "data/issuer.json"`, with
//! `secrets.key`, `signing-<alg>.pem` and `keys.json` beside it), imported
//! once into a fresh store in one transaction, so apps keep their secrets
//! and tokens already issued keep verifying. The files are left as they
//! are; the store records that it imported them and never reads them again.

use super::db::{Db, Import};
use super::open::OpenError;
use super::rows::{self, CLIENT_SECRET_HMAC, Delta, KeyRow};
use super::seal::StoreKey;
use super::{StoreError, Tombstones};
use crate::config::IssuerSpec;
use crate::issuer::registry::{Api, App};
use crate::oauth::ids::ClientId;
use crate::private_file::dir_of;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// The meta key recording the import.
const IMPORTED: &str = "imported_state";

/// What the state file holds.
#[derive(Default, Deserialize)]
struct State {
    #[serde(default)]
    apis: Vec<Api>,
    #[serde(default)]
    apps: Vec<App>,
    #[serde(default)]
    deleted_apis: BTreeSet<String>,
    #[serde(default)]
    deleted_apps: BTreeSet<ClientId>,
    #[serde(default)]
    revoked: BTreeMap<String, u64>,
    #[serde(default)]
    not_before: BTreeMap<ClientId, u64>,
}

/// A retired key of `keys.json`.
#[derive(Deserialize)]
struct Retired {
    jwk: serde_json::Value,
    retire_after: u64,
}

/// Import `spec.state` if it exists and this store has never imported one
/// and holds no registry yet.
pub async fn once(db: &Db, key: &StoreKey, spec: &IssuerSpec) -> Result<(), OpenError> {
    let path = &spec.state;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(OpenError::ReadState {
                path: path.clone(),
                source,
            });
        }
    };
    if db.meta(IMPORTED).await?.is_some() {
        return Ok(());
    }
    if db.server_key(CLIENT_SECRET_HMAC).await?.is_some() {
        tracing::warn!(file = %path.display(), "the JSON state file was not imported: the store already holds a registry");
        return Ok(());
    }
    let state: State = serde_json::from_slice(&bytes).map_err(|source| OpenError::BadState {
        path: path.clone(),
        source,
    })?;
    let dir = dir_of(path);
    let hmac = secrets_key(&dir.join("secrets.key"))?;
    let server_key = match hmac {
        Some(bytes) => Some((
            CLIENT_SECRET_HMAC,
            key.seal(&rows::server_key_aad(CLIENT_SECRET_HMAC), &bytes)
                .map_err(|e| OpenError::Store(StoreError::Seal(e)))?,
        )),
        None => None,
    };
    let keys = signing_keys(&dir, key)?;
    let (apis, apps) = (state.apis.len(), state.apps.len());
    let tombstones = Tombstones {
        apis: state.deleted_apis,
        apps: state.deleted_apps,
    };
    let delta = Delta {
        apps: state
            .apps
            .into_iter()
            .map(|a| (a.client_id.clone(), Some(Arc::new(a))))
            .collect(),
        apis: state
            .apis
            .into_iter()
            .map(|a| (a.id.clone(), Some(a)))
            .collect(),
        not_before: state
            .not_before
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect(),
        revoked: state
            .revoked
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect(),
        deleted_apis: tombstones.apis.into_iter().map(|id| (id, true)).collect(),
        deleted_apps: tombstones.apps.into_iter().map(|id| (id, true)).collect(),
    };
    let signing = keys.len();
    let meta = (
        IMPORTED,
        format!("{} at {}", path.display(), crate::clock::unix_now()),
    );
    db.import(Import {
        delta,
        keys,
        server_key,
        meta,
    })
    .await?;
    tracing::info!(
        file = %path.display(),
        apis,
        apps,
        signing_keys = signing,
        "imported the JSON state file into the store once; it is not read again (remove `state` from the config)"
    );
    Ok(())
}

fn secrets_key(path: &Path) -> Result<Option<Vec<u8>>, OpenError> {
    match std::fs::read(path) {
        Ok(b) if b.len() == 32 => Ok(Some(b)),
        Ok(_) => Err(OpenError::KeyLength(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OpenError::ReadState {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The signing keys beside the state: each `signing-<alg>.pem` becomes the
/// active key of its algorithm, `keys.json`'s retired public keys stay in
/// JWKS until their time (their private halves were never kept).
fn signing_keys(dir: &Path, key: &StoreKey) -> Result<Vec<KeyRow>, OpenError> {
    use crate::jose::alg::Algorithm;
    let mut out = Vec::new();
    for (alg, name) in [
        (Algorithm::ES256, "ES256"),
        (Algorithm::EdDSA, "EdDSA"),
        (Algorithm::RS256, "RS256"),
    ] {
        let path = dir.join(format!("signing-{}.pem", name.to_lowercase()));
        let Ok(pem) = std::fs::read_to_string(&path) else {
            continue;
        };
        let signer = crate::jose::sign::Signer::from_pkcs8_pem(&pem, alg).map_err(|source| {
            OpenError::Store(StoreError::Import {
                path: path.clone(),
                source: Box::new(source),
            })
        })?;
        let named = crate::issuer::keys::named(signer);
        let sealed = key
            .seal(&rows::signing_key_aad(&named.kid), pem.as_bytes())
            .map_err(|e| OpenError::Store(StoreError::Seal(e)))?;
        out.push(KeyRow {
            kid: named.kid,
            alg: name.into(),
            jwk: named.jwk.to_string(),
            sealed,
            retired_at: None,
            retire_after: None,
        });
    }
    let retired_path = dir.join("keys.json");
    if let Ok(bytes) = std::fs::read(&retired_path) {
        let retired: Vec<Retired> =
            serde_json::from_slice(&bytes).map_err(|source| OpenError::BadState {
                path: retired_path.clone(),
                source,
            })?;
        let now = crate::clock::unix_now();
        for r in retired.into_iter().filter(|r| r.retire_after > now) {
            let kid = r
                .jwk
                .get("kid")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_owned();
            let alg = r
                .jwk
                .get("alg")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_owned();
            if kid.is_empty() || out.iter().any(|k| k.kid == kid) {
                continue;
            }
            out.push(KeyRow {
                kid,
                alg,
                jwk: r.jwk.to_string(),
                // A retired key only verifies: no private half.
                sealed: Vec::new(),
                retired_at: Some(now),
                retire_after: Some(r.retire_after),
            });
        }
    }
    Ok(out)
}
