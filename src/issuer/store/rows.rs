//! What the store reads and writes, whatever the database: everything at
//! start ([`Loaded`]), one change's rows ([`Delta`]), the signing keys
//! ([`KeyRow`]) and the audit log ([`Audit`], [`AuditRecord`]).

use crate::issuer::registry::{Api, App, Apps, RegisteredKeys, StoredSecret};
use crate::oauth::ids::{Audience, ClientId, Scope};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The registry as the database holds it.
#[derive(Default)]
pub struct Loaded {
    pub apis: Vec<Api>,
    pub apps: Apps,
    pub not_before: Vec<(ClientId, u64)>,
    pub revoked: Vec<(String, u64)>,
    pub deleted_apis: BTreeSet<String>,
    pub deleted_apps: BTreeSet<ClientId>,
}

/// The rows one change writes: for each key, the new value or `None`
/// (delete).
#[derive(Default)]
pub struct Delta {
    pub apps: Vec<(ClientId, Option<Arc<App>>)>,
    pub apis: Vec<(String, Option<Api>)>,
    pub not_before: Vec<(ClientId, Option<u64>)>,
    pub revoked: Vec<(String, Option<u64>)>,
    /// (id, deleted now?)
    pub deleted_apis: Vec<(String, bool)>,
    pub deleted_apps: Vec<(ClientId, bool)>,
}

impl Delta {
    /// What other replicas reload: (kind, id) pairs for the change feed.
    pub fn changes(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        out.extend(self.apps.iter().map(|(id, _)| (APP, id.to_string())));
        out.extend(self.apis.iter().map(|(id, _)| (API, id.clone())));
        out.extend(
            self.not_before
                .iter()
                .map(|(id, _)| (NOT_BEFORE, id.to_string())),
        );
        out.extend(self.revoked.iter().map(|(jti, _)| (REVOKED, jti.clone())));
        out.extend(
            self.deleted_apis
                .iter()
                .map(|(id, _)| (DELETED_API, id.clone())),
        );
        out.extend(
            self.deleted_apps
                .iter()
                .map(|(id, _)| (DELETED_APP, id.to_string())),
        );
        out
    }
}

/// Kinds of the change feed.
pub const APP: &str = "app";
pub const API: &str = "api";
pub const NOT_BEFORE: &str = "not_before";
pub const REVOKED: &str = "revoked";
pub const DELETED_API: &str = "deleted_api";
pub const DELETED_APP: &str = "deleted_app";
pub const KEYS: &str = "keys";

/// One app's rows, to build it back.
pub struct AppRow {
    pub client_id: String,
    pub name: String,
    pub blocked: bool,
    pub blocked_at: Option<u64>,
}

/// Build apps from their rows, every input in client id order (a merge:
/// nothing is held but the apps themselves, so loading a hundred thousand
/// apps costs little more memory than having them). Child rows of no app
/// are skipped.
pub fn assemble(
    apps: impl IntoIterator<Item = AppRow>,
    grants: impl IntoIterator<Item = (String, String, String)>,
    secrets: impl IntoIterator<Item = (String, Vec<u8>, Option<u64>)>,
    keys: impl IntoIterator<Item = (String, String)>,
) -> Apps {
    let mut out = Apps::default();
    assemble_into(&mut out, apps, grants, secrets, keys);
    out
}

/// [`assemble`] into `out` (one page of apps after another).
pub fn assemble_into(
    out: &mut Apps,
    apps: impl IntoIterator<Item = AppRow>,
    grants: impl IntoIterator<Item = (String, String, String)>,
    secrets: impl IntoIterator<Item = (String, Vec<u8>, Option<u64>)>,
    keys: impl IntoIterator<Item = (String, String)>,
) {
    let mut grants = grants.into_iter().peekable();
    let mut secrets = secrets.into_iter().peekable();
    let mut keys = keys.into_iter().peekable();
    for r in apps {
        let id = r.client_id.as_str();
        let mut app = App {
            client_id: ClientId::from(id),
            name: r.name,
            secrets: Vec::new(),
            grants: Default::default(),
            blocked: r.blocked,
            blocked_at: r.blocked_at,
            jwks: None,
        };
        while let Some(g) = grants.next_if(|g| g.0.as_str() <= id) {
            if g.0 == id {
                app.grants.insert(Audience::from(g.1), split_scopes(&g.2));
            }
        }
        while let Some(s) = secrets.next_if(|s| s.0.as_str() <= id) {
            if s.0 == id {
                app.secrets.push(StoredSecret {
                    mac: s.1,
                    not_after: s.2,
                });
            }
        }
        app.secrets.shrink_to_fit();
        while let Some(k) = keys.next_if(|k| k.0.as_str() <= id) {
            if let (true, Ok(doc)) = (k.0 == id, serde_json::from_str(&k.1)) {
                app.jwks = Some(RegisteredKeys::stored(doc));
            }
        }
        out.insert(app.client_id.clone(), app);
    }
    let _ = out.take_touched();
}

/// Scopes as stored: space-separated (scope tokens hold no spaces).
pub fn join_scopes(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
    names.join(" ")
}

pub fn split_scopes(text: &str) -> Vec<Scope> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(Scope::from)
        .collect()
}

/// A signing key as stored: its public JWK in clear, its private key sealed.
#[derive(Clone)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub jwk: String,
    pub sealed: Vec<u8>,
    /// `None`: the active key of its algorithm.
    pub retired_at: Option<u64>,
    /// When a retired key leaves JWKS.
    pub retire_after: Option<u64>,
}

/// What the sealed private key of `kid` is bound to.
pub fn signing_key_aad(kid: &str) -> String {
    format!("signing key {kid}")
}

/// What a sealed server key is bound to.
pub fn server_key_aad(name: &str) -> String {
    format!("server key {name}")
}

/// The name of the key client secrets are hashed with.
pub const CLIENT_SECRET_HMAC: &str = "client_secret_hmac";

/// One management change to record: who, what, on what.
#[derive(Clone, Debug)]
pub struct Audit {
    pub caller: Option<ClientId>,
    pub action: &'static str,
    pub target: String,
}

/// A recorded management change.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub time: u64,
    pub caller: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

/// Nanoseconds since the epoch: the order signing keys were made in.
pub fn now_ns() -> i64 {
    i64::try_from(crate::clock::since_epoch().as_nanos()).unwrap_or(i64::MAX)
}

/// A stored integer (the databases' `BIGINT`) as a time or count; `None`
/// if absent or negative.
pub fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

/// A time or count as stored (saturating).
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
