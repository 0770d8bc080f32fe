//! Signature verification. The algorithm is the one bound to the key when it
//! was decoded ([`super::keys`]); a header naming another one (HS256 with an
//! RSA public key as the secret, PS256 with an RS256 key …) is refused before
//! any cryptography. HMAC tags are compared in constant time (`hmac::verify`).
//! ECDSA signatures are the fixed-size `r ‖ s` of RFC 7518 §3.4 (not DER).

use super::compact::{self, Jws, JwsError};
use super::keys::{Key, KeySet, VerifyKey};
use aws_lc_rs::hmac;
use std::sync::Arc;

impl VerifyKey {
    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            Key::Public(k) => k.verify_sig(message, signature).is_ok(),
            Key::Hmac(k) => hmac::verify(k, message, signature).is_ok(),
        }
    }
}

/// Check `jws` against `key`: the header must name the key's algorithm, and
/// the signature must verify.
pub fn check(jws: &Jws<'_>, key: &VerifyKey) -> Result<(), JwsError> {
    if jws.alg != Some(key.alg()) {
        return Err(JwsError::AlgNotAllowed);
    }
    if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
        return Err(JwsError::BadSignature);
    }
    Ok(())
}

/// Parse `token` strictly ([`compact::parse`]) and verify it with the key
/// `keys` holds for its `kid` ([`KeySet::find`]). Returns the parts and the key.
pub fn verify<'t, 'k>(
    token: &'t str,
    keys: &'k KeySet,
) -> Result<(Jws<'t>, &'k Arc<VerifyKey>), JwsError> {
    let jws = compact::parse(token)?;
    let key = keys.find(jws.kid()).ok_or(JwsError::UnknownKid)?;
    check(&jws, key)?;
    Ok((jws, key))
}
