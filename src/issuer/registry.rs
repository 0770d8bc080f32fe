//! APIs and apps as the token endpoint sees them: an immutable snapshot, swapped
//! on every change (see [`super::store`]). The maps are persistent (`imbl`):
//! a copy shares everything it does not change, so a change costs the same
//! with ten apps or a hundred thousand, and [`Apps`] remembers which apps a
//! change touched, which is what the store writes. Client secrets are kept only as
//! HMAC-SHA256 under a server key stored beside the state (secrets are long and
//! random, so a keyed hash is enough and keeps the token path fast: no password
//! KDF); they are compared in constant time.

use crate::clock::unix_now;
use crate::jose::keys::{KeySet, Skipped, VerifyKeyError};
use crate::jose::{self, alg};
use crate::oauth::ids::{Audience, ClientId, Scope};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An API (audience) and its scopes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub identifier: Audience,
    pub scopes: Vec<Scope>,
}

/// A client secret as stored: its MAC, and until when it is valid (a rotated
/// secret's grace period), in Unix seconds.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSecret {
    #[serde(with = "b64")]
    pub mac: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// An M2M app.
#[derive(Clone, Serialize, Deserialize)]
pub struct App {
    pub client_id: ClientId,
    pub name: String,
    pub secrets: Vec<StoredSecret>,
    /// audience → granted scopes
    pub grants: Grants,
    #[serde(default)]
    pub blocked: bool,
    /// When the app was last blocked (Unix seconds), for the revocation feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_at: Option<u64>,
    /// Public keys (a JWKS document) for `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<RegisteredKeys>,
}

/// An app's grants: audience → scopes, in audience order. A sorted vector:
/// an app has a few grants, and a `BTreeMap` node would cost half a KiB for
/// each of a hundred thousand apps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(Vec<(Audience, Vec<Scope>)>);

impl Grants {
    fn find(&self, audience: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(a, _)| a.as_str().cmp(audience))
    }

    pub fn get(&self, audience: &str) -> Option<&Vec<Scope>> {
        self.find(audience)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, s)| s)
    }

    pub fn get_mut(&mut self, audience: &str) -> Option<&mut Vec<Scope>> {
        let i = self.find(audience).ok()?;
        self.0.get_mut(i).map(|(_, s)| s)
    }

    pub fn contains_key(&self, audience: &str) -> bool {
        self.find(audience).is_ok()
    }

    pub fn insert(&mut self, audience: Audience, mut scopes: Vec<Scope>) {
        scopes.shrink_to_fit();
        match self.find(audience.as_str()) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = scopes;
                }
            }
            Err(i) => self.0.insert(i, (audience, scopes)),
        }
    }

    pub fn remove(&mut self, audience: &str) -> Option<Vec<Scope>> {
        let i = self.find(audience).ok()?;
        Some(self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Audience, &Vec<Scope>)> {
        self.0.iter().map(|(a, s)| (a, s))
    }
}

impl FromIterator<(Audience, Vec<Scope>)> for Grants {
    fn from_iter<I: IntoIterator<Item = (Audience, Vec<Scope>)>>(iter: I) -> Self {
        let mut g = Grants::default();
        for (a, s) in iter {
            g.insert(a, s);
        }
        g.0.shrink_to_fit();
        g
    }
}

impl From<BTreeMap<Audience, Vec<Scope>>> for Grants {
    fn from(map: BTreeMap<Audience, Vec<Scope>>) -> Self {
        map.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Grants {
    type Item = (&'a Audience, &'a Vec<Scope>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Audience, Vec<Scope>)>,
        fn(&'a (Audience, Vec<Scope>)) -> (&'a Audience, &'a Vec<Scope>),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(a, s)| (a, s))
    }
}

impl Serialize for Grants {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Grants {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<Audience, Vec<Scope>>::deserialize(d).map(Grants::from)
    }
}

/// Why a token the issuer signed is not accepted any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Inactive {
    #[error("the token was revoked")]
    Revoked,
    #[error("the token's app does not exist")]
    NoApp,
    #[error("the token's app is blocked")]
    Blocked,
    #[error("the token was issued before its app was last blocked or deleted")]
    BeforeNotBefore,
}

impl App {
    /// The app as the management API shows it: never a secret or its MAC.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.client_id,
            "name": self.name,
            "grants": self.grants,
            "blocked": self.blocked,
            "jwks": self.jwks,
        })
    }

    /// The scopes this app is granted on `audience`.
    pub fn granted(&self, audience: &str) -> &[Scope] {
        self.grants.get(audience).map_or(&[], Vec::as_slice)
    }
}

/// An app's public keys for `private_key_jwt`: the JWKS document as
/// registered (what the state file holds and the management API shows) and
/// its keys, decoded once when registered or loaded, never per request.
#[derive(Clone)]
pub struct RegisteredKeys(Arc<Registered>);

/// The document and its decoded keys (one pointer in [`App`]: most apps
/// register none, and every byte of an app counts a hundred thousand times).
struct Registered {
    doc: serde_json::Value,
    keys: KeySet,
}

/// Why keys an app registers are refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Keys(#[from] VerifyKeyError),
    #[error("the JWKS has no usable public signing key ({})", joined(.0))]
    NoUsableKey(Vec<Skipped>),
    #[error("the JWKS holds a private key (`d`): register public keys only")]
    PrivateKey,
}

fn joined(skipped: &[Skipped]) -> String {
    let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    reasons.join("; ")
}

impl RegisteredKeys {
    /// A JWKS an app registers: a `keys` array with at least one usable
    /// public signing key, and no private key.
    pub fn from_jwks(doc: serde_json::Value) -> Result<Self, RegisterError> {
        let (keys, skipped) = KeySet::from_jwks(&doc, &alg::REGISTERED_CLIENT_KEYS)?;
        if keys.is_empty() {
            return Err(RegisterError::NoUsableKey(skipped));
        }
        let private = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .is_some_and(|ks| ks.iter().any(|k| k.get("d").is_some()));
        if private {
            return Err(RegisterError::PrivateKey);
        }
        Ok(RegisteredKeys(Arc::new(Registered {
            keys: keys.any_kid_for_a_sole_key(),
            doc,
        })))
    }

    /// One PEM public key (`-----BEGIN PUBLIC KEY-----`), registered as a
    /// JWKS of that key.
    pub fn from_pem(pem: &str) -> Result<Self, RegisterError> {
        RegisteredKeys::from_jwks(jose::spki::jwks_from_pem(pem)?)
    }

    /// Keys as the store holds them, checked when they were registered:
    /// loaded as they are (a key that cannot be used verifies nothing).
    pub fn stored(doc: serde_json::Value) -> Self {
        let keys = KeySet::from_jwks(&doc, &alg::REGISTERED_CLIENT_KEYS)
            .map(|(keys, _)| keys)
            .unwrap_or_default();
        RegisteredKeys(Arc::new(Registered {
            keys: keys.any_kid_for_a_sole_key(),
            doc,
        }))
    }

    /// The JWKS document as registered.
    pub fn document(&self) -> &serde_json::Value {
        &self.0.doc
    }

    /// The decoded keys. With one key, it is used whatever `kid` an assertion
    /// names (an app's one key, perhaps from a PEM file without a kid).
    pub fn keys(&self) -> &KeySet {
        &self.0.keys
    }
}

impl Serialize for RegisteredKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.doc.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RegisteredKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(RegisteredKeys::stored)
    }
}

/// The apps by client id, in id order, and the ids changed since
/// [`Apps::take_touched`] was last called. A set of shared apps ordered by
/// their own client id (a map keyed by a copy of the id would cost a third
/// more memory per app).
#[derive(Clone, Default)]
pub struct Apps {
    set: imbl::OrdSet<Entry>,
    touched: BTreeSet<ClientId>,
}

/// An app in [`Apps`]: ordered, and found, by its client id.
#[derive(Clone)]
struct Entry(Arc<App>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.client_id == other.0.client_id
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.client_id.cmp(&other.0.client_id)
    }
}

impl std::borrow::Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        self.0.client_id.as_str()
    }
}

impl Apps {
    pub fn get(&self, client_id: &str) -> Option<&App> {
        self.set.get(client_id).map(|e| e.0.as_ref())
    }

    /// Change the app `client_id` with `f` (recorded as touched); `None` if
    /// there is no such app.
    pub fn update<R>(&mut self, client_id: &str, f: impl FnOnce(&mut App) -> R) -> Option<R> {
        let Entry(mut app) = self.set.remove(client_id)?;
        let out = f(Arc::make_mut(&mut app));
        self.touched.insert(app.client_id.clone());
        self.set.insert(Entry(app));
        Some(out)
    }

    pub fn insert(&mut self, client_id: ClientId, app: App) {
        debug_assert_eq!(client_id, app.client_id);
        self.touched.insert(client_id);
        self.set.insert(Entry(Arc::new(app)));
    }

    pub fn remove(&mut self, client_id: &str) -> Option<Arc<App>> {
        let Entry(app) = self.set.remove(client_id)?;
        self.touched.insert(app.client_id.clone());
        Some(app)
    }

    pub fn contains_key(&self, client_id: &str) -> bool {
        self.set.contains(client_id)
    }

    /// Every app, in client id order.
    pub fn values(&self) -> impl Iterator<Item = &App> {
        self.set.iter().map(|e| e.0.as_ref())
    }

    /// The apps after `client_id` (all with `None`), in client id order.
    pub fn after<'a>(&'a self, client_id: Option<&'a str>) -> impl Iterator<Item = &'a App> + 'a {
        use std::ops::Bound;
        let from = client_id.map_or(Bound::Unbounded, Bound::Excluded);
        self.set
            .range::<_, str>((from, Bound::Unbounded))
            .map(|e| e.0.as_ref())
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The ids changed since the last call, and forget them.
    pub fn take_touched(&mut self) -> BTreeSet<ClientId> {
        std::mem::take(&mut self.touched)
    }

    /// The shared app (for the store, which writes it).
    pub fn shared(&self, client_id: &str) -> Option<Arc<App>> {
        self.set.get(client_id).map(|e| e.0.clone())
    }
}

/// Everything the token endpoint checks a request against./// Everything the token endpoint checks a request against.
#[derive(Clone)]
pub struct Registry {
    pub(super) key: hmac::Key,
    pub apis: Vec<Api>,
    pub apps: Apps,
    /// Revoked token ids and their `exp` (dropped once expired).
    pub revoked: imbl::OrdMap<String, u64>,
    /// client id → Unix second at or before which every token issued to that
    /// client id is revoked: the app's last block, or its deletion (kept after
    /// the app is gone, so an app created again under the same id never
    /// revives the old tokens).
    pub not_before: imbl::OrdMap<ClientId, u64>,
}

impl Registry {
    /// The API whose identifier is `audience`.
    pub fn api(&self, audience: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.identifier == audience)
    }

    /// The app `client_id` if `secret` is one of its current secrets
    /// (constant-time comparison of the MACs).
    pub fn authenticate(&self, client_id: &str, secret: &str) -> Option<&App> {
        let Some(app) = self.apps.get(client_id) else {
            // The same work as for a known id, so timing does not tell them apart.
            let _ = hmac::verify(&self.key, secret.as_bytes(), &[0u8; 32]);
            return None;
        };
        let now = unix_now();
        let mut ok = false;
        for s in app
            .secrets
            .iter()
            .filter(|s| s.not_after.is_none_or(|t| now < t))
        {
            ok |= hmac::verify(&self.key, secret.as_bytes(), &s.mac).is_ok();
        }
        ok.then_some(app)
    }

    /// Mark every token issued to `client_id` up to now as revoked.
    pub fn revoke_all_until_now(&mut self, client_id: &str) {
        let t = unix_now();
        let at = self.not_before.get(client_id).map_or(t, |nb| (*nb).max(t));
        self.not_before.insert(client_id.into(), at);
    }

    /// The app of a token this issuer signed (its verified `claims`), if the
    /// token is still accepted: not revoked, its app exists and is not
    /// blocked, and it was issued after the app's last block or deletion.
    pub fn token_app(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<&App, Inactive> {
        let jti = claims
            .get("jti")
            .and_then(|j| j.as_str())
            .unwrap_or_default();
        if self.revoked.contains_key(jti) {
            return Err(Inactive::Revoked);
        }
        let client = claims
            .get("client_id")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        let app = self.apps.get(client).ok_or(Inactive::NoApp)?;
        if app.blocked {
            return Err(Inactive::Blocked);
        }
        let iat = claims.get("iat").and_then(serde_json::Value::as_u64);
        let not_before = self.not_before.get(client).copied();
        match (iat, not_before) {
            (None, _) => Err(Inactive::BeforeNotBefore),
            (Some(iat), Some(nb)) if iat <= nb => Err(Inactive::BeforeNotBefore),
            _ => Ok(app),
        }
    }

    /// The stored form of `secret`.
    pub fn seal(&self, secret: &str) -> StoredSecret {
        StoredSecret {
            mac: hmac::sign(&self.key, secret.as_bytes()).as_ref().to_vec(),
            not_after: None,
        }
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::test_keys::TestKey;
    use serde_json::json;

    #[test]
    fn registered_keys_are_stored_as_registered_and_decoded_on_load() {
        let key = TestKey::es256("k1");
        let doc = json!({"keys": [key.jwk()]});
        let app = App {
            client_id: "svc".into(),
            name: "svc".into(),
            secrets: Vec::new(),
            grants: Grants::default(),
            blocked: false,
            blocked_at: None,
            jwks: Some(RegisteredKeys::from_jwks(doc.clone()).unwrap()),
        };
        // The state file and the management API show the document itself.
        let stored = serde_json::to_value(&app).unwrap();
        assert_eq!(stored["jwks"], doc);
        assert_eq!(app.public()["jwks"], doc);
        let loaded: App = serde_json::from_value(stored).unwrap();
        let keys = loaded.jwks.unwrap();
        assert_eq!(keys.keys().find(Some("any")).unwrap().kid, "k1");
        // A stored document that no longer decodes loads, and verifies nothing.
        let odd: App = serde_json::from_value(json!({
            "client_id": "x", "name": "x", "secrets": [], "grants": {},
            "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
        }))
        .unwrap();
        assert!(odd.jwks.unwrap().keys().is_empty());
    }

    #[test]
    fn registration_refuses_what_cannot_be_used() {
        let key = TestKey::eddsa("k");
        let mut private = key.jwk();
        private["d"] = "AAAA".into();
        for (doc, want) in [
            (
                json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
                "the JWKS has no usable public signing key (key 0: symmetric keys are never taken from a JWKS)",
            ),
            (
                json!({"keys": [private]}),
                "the JWKS holds a private key (`d`): register public keys only",
            ),
            (json!({"k": 1}), "JWKS has no `keys` array"),
        ] {
            let e = RegisteredKeys::from_jwks(doc).err().unwrap();
            assert_eq!(e.to_string(), want);
        }
        let e = RegisteredKeys::from_pem("not a key").err().unwrap();
        assert_eq!(
            e.to_string(),
            "not a PEM public key (-----BEGIN PUBLIC KEY-----)"
        );
    }
}
