//! Verified tokens, so a token seen again skips the signature check. Keyed by the
//! SHA-256 of the token, bounded in size; an entry is used only while the token
//! has not expired and the key that signed it is still in the current key set
//! (a rotation that drops the key drops its tokens). Revocation is checked on
//! every request, hit or miss.

use super::verify::Verified;
use crate::clock::unix_now;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

pub type Digest = [u8; 32];

pub struct TokenCache {
    entries: RwLock<HashMap<Digest, Arc<Verified>>>,
    capacity: usize,
}

pub fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: no caching).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The verified token for `key`, if cached, unexpired, and `still_valid_kid` holds.
    pub fn get(
        &self,
        key: &Digest,
        still_valid_kid: impl Fn(&str) -> bool,
    ) -> Option<Arc<Verified>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let v = entries.get(key)?;
        (unix_now() < v.exp && still_valid_kid(v.kid.as_str())).then(|| v.clone())
    }

    pub fn insert(&self, key: Digest, v: Arc<Verified>) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            let now = unix_now();
            entries.retain(|_, e| e.exp > now);
            // Still full of live tokens: start over rather than grow.
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, v);
    }
}
