//! Verification keys, decoded once: from a JWKS document (RFC 7517) — a PEM
//! public key becomes one through [`super::spki`] — or from a configured HMAC
//! secret. Each key is bound to exactly one algorithm when it
//! is decoded ([`super::verify`] never lets a token header choose another).
//!
//! Refused: RSA keys under 2048 bits, keys whose `use` is not `sig`, `oct`
//! keys from a JWKS (a shared secret is only ever configured), curves and key
//! types we do not implement, algorithms outside the caller's allowed list.

use super::alg::{self, Algorithm};
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a key (or a key document) cannot be used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum VerifyKeyError {
    #[error("JWKS is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("JWKS has no `keys` array")]
    NoKeysArray,
    #[error("not a signing key (`use` is not `sig`)")]
    NotForSigning,
    #[error("no `kty`")]
    NoKeyType,
    #[error("unknown alg `{0}`")]
    UnknownAlg(String),
    #[error("no `{0}`")]
    Missing(&'static str),
    #[error("`{0}` is not base64url")]
    NotBase64(&'static str),
    #[error("RSA key of {0} bits refused (2048 at least)")]
    RsaTooSmall(usize),
    #[error("no RSA algorithm allowed")]
    NoRsaAlgorithm,
    #[error("alg {0:?} does not fit an RSA key")]
    NotAnRsaAlg(Algorithm),
    #[error("bad RSA key")]
    BadRsa,
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(Option<String>),
    #[error("alg does not fit the curve")]
    NotTheCurvesAlg,
    #[error("bad EC coordinates")]
    BadEcCoordinates,
    #[error("alg does not fit Ed25519")]
    NotEd25519Alg,
    #[error("bad Ed25519 key")]
    BadEd25519,
    #[error("symmetric keys are never taken from a JWKS")]
    Symmetric,
    #[error("unsupported kty `{0}`")]
    UnsupportedKeyType(String),
    #[error("alg {0:?} is not in the allowed list")]
    NotAllowed(Algorithm),
    #[error("bad key: {0}")]
    Rejected(#[source] aws_lc_rs::error::KeyRejected),
    #[error("{0:?} is not an HMAC algorithm")]
    NotHmac(Algorithm),
    #[error("the HMAC secret has {len} bytes; {alg:?} needs at least {min} (RFC 7518 §3.2)")]
    HmacTooShort {
        len: usize,
        alg: Algorithm,
        min: usize,
    },
    #[error("not a PEM public key (-----BEGIN PUBLIC KEY-----)")]
    NotPem,
    #[error("bad public key DER")]
    BadDer,
    #[error("bad SubjectPublicKeyInfo")]
    BadSpki,
    #[error("bad RSA public key")]
    BadRsaPublicKey,
    #[error("EC keys must be uncompressed P-256")]
    NotP256Uncompressed,
    #[error("unsupported public key type (RSA, EC P-256 or Ed25519)")]
    UnsupportedPublicKey,
}

/// A key ready to verify with, and the one algorithm it may be used with.
pub struct VerifyKey {
    pub kid: String,
    pub(super) alg: Algorithm,
    pub(super) key: Key,
}

pub(super) enum Key {
    Public(ParsedPublicKey),
    /// A configured secret; `hmac::verify` compares in constant time.
    Hmac(Box<hmac::Key>),
}

impl VerifyKey {
    /// The algorithm this key verifies, bound when it was decoded.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The JWS name of [`VerifyKey::alg`].
    pub fn alg_name(&self) -> &'static str {
        alg::name(self.alg)
    }
}

/// A set of keys, looked up by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
    /// One key used whatever `kid` a token names (a configured HMAC secret,
    /// or an app's one registered key).
    any_kid: bool,
}

impl KeySet {
    /// The set holding only the configured HMAC `secret`, bound to `alg`
    /// (HS256/384/512). The secret must be at least as long as the hash output
    /// (RFC 7518 §3.2).
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<KeySet, VerifyKeyError> {
        let (algorithm, min) = match alg {
            Algorithm::HS256 => (hmac::HMAC_SHA256, 32),
            Algorithm::HS384 => (hmac::HMAC_SHA384, 48),
            Algorithm::HS512 => (hmac::HMAC_SHA512, 64),
            other => return Err(VerifyKeyError::NotHmac(other)),
        };
        if secret.len() < min {
            return Err(VerifyKeyError::HmacTooShort {
                len: secret.len(),
                alg,
                min,
            });
        }
        // An id that changes with the secret (so cached tokens of a rotated-out
        // secret are dropped) and says nothing about it.
        let d = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &[b"m2m-sidecar hmac key id\0".as_slice(), secret].concat(),
        );
        let kid: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = VerifyKey {
            kid: format!("hmac-{kid}"),
            alg,
            key: Key::Hmac(Box::new(hmac::Key::new(algorithm, secret))),
        };
        Ok(KeySet::from_keys([key]).any_kid_for_a_sole_key())
    }

    /// The set of `keys` (a later one replaces an earlier one with the same `kid`).
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyKey>) -> KeySet {
        KeySet {
            keys: keys
                .into_iter()
                .map(|k| (k.kid.clone(), Arc::new(k)))
                .collect(),
            any_kid: false,
        }
    }

    /// With exactly one key: use it whatever `kid` a token names (an app's one
    /// registered key, perhaps from a PEM file without a kid).
    pub fn any_kid_for_a_sole_key(mut self) -> Self {
        if self.keys.len() == 1 {
            self.any_kid = true;
        }
        self
    }

    /// The key for `kid`; a token without `kid` may use the only key there is.
    pub fn find(&self, kid: Option<&str>) -> Option<&Arc<VerifyKey>> {
        if self.any_kid {
            return self.keys.values().next();
        }
        match kid {
            Some(k) => self.keys.get(k),
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
    }

    /// The key whose id is exactly `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.keys.get(kid)
    }

    /// The key ids (HMAC: an opaque id that changes with the secret).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parse a JWKS document; keys that cannot be used are skipped, each with
    /// its index and why.
    pub fn parse(
        doc: &[u8],
        allowed: &[Algorithm],
    ) -> Result<(KeySet, Vec<Skipped>), VerifyKeyError> {
        let value: Value = serde_json::from_slice(doc).map_err(VerifyKeyError::NotJson)?;
        KeySet::from_jwks(&value, allowed)
    }

    /// [`KeySet::parse`] for a document already parsed.
    pub fn from_jwks(
        doc: &Value,
        allowed: &[Algorithm],
    ) -> Result<(KeySet, Vec<Skipped>), VerifyKeyError> {
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(VerifyKeyError::NoKeysArray)?;
        let mut keys = Vec::with_capacity(list.len());
        let mut skipped = Vec::new();
        for (index, jwk) in list.iter().enumerate() {
            match from_jwk(jwk, allowed) {
                Ok(k) => keys.push(k),
                Err(why) => skipped.push(Skipped { index, why }),
            }
        }
        Ok((KeySet::from_keys(keys), skipped))
    }
}

/// A key of a JWKS that was not loaded, and why.
#[derive(Debug, thiserror::Error)]
#[error("key {index}: {why}")]
pub struct Skipped {
    pub index: usize,
    #[source]
    pub why: VerifyKeyError,
}

fn field<'a>(jwk: &'a Value, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn bytes(jwk: &Value, name: &'static str) -> Result<Vec<u8>, VerifyKeyError> {
    let text = field(jwk, name).ok_or(VerifyKeyError::Missing(name))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| VerifyKeyError::NotBase64(name))
}

/// One public JWK, bound to one algorithm of `allowed`: its `alg` if it names
/// one, else the curve's, else (RSA) the first RSA algorithm allowed.
pub fn from_jwk(jwk: &Value, allowed: &[Algorithm]) -> Result<VerifyKey, VerifyKeyError> {
    if field(jwk, "use").is_some_and(|u| u != "sig") {
        return Err(VerifyKeyError::NotForSigning);
    }
    let kty = field(jwk, "kty").ok_or(VerifyKeyError::NoKeyType)?;
    let named = match field(jwk, "alg") {
        Some(a) => Some(
            alg::parse(a)
                .filter(|a| !alg::is_hmac(*a))
                .ok_or_else(|| VerifyKeyError::UnknownAlg(a.to_owned()))?,
        ),
        None => None,
    };
    let (alg, verification, public) = match kty {
        "RSA" => rsa(jwk, named, allowed)?,
        "EC" => ec(jwk, named)?,
        "OKP" if field(jwk, "crv") == Some("Ed25519") => {
            if named.is_some_and(|n| n != Algorithm::EdDSA) {
                return Err(VerifyKeyError::NotEd25519Alg);
            }
            let x = bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err(VerifyKeyError::BadEd25519);
            }
            let ed: &'static dyn VerificationAlgorithm = &signature::ED25519;
            (Algorithm::EdDSA, ed, x)
        }
        "oct" => return Err(VerifyKeyError::Symmetric),
        other => return Err(VerifyKeyError::UnsupportedKeyType(other.to_owned())),
    };
    if !allowed.contains(&alg) {
        return Err(VerifyKeyError::NotAllowed(alg));
    }
    let key = ParsedPublicKey::new(verification, public).map_err(VerifyKeyError::Rejected)?;
    Ok(VerifyKey {
        kid: field(jwk, "kid").unwrap_or_default().to_owned(),
        alg,
        key: Key::Public(key),
    })
}

type Decoded = (Algorithm, &'static dyn VerificationAlgorithm, Vec<u8>);

fn rsa(
    jwk: &Value,
    named: Option<Algorithm>,
    allowed: &[Algorithm],
) -> Result<Decoded, VerifyKeyError> {
    let n = bytes(jwk, "n")?;
    let e = bytes(jwk, "e")?;
    let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
    if bits < 2048 {
        return Err(VerifyKeyError::RsaTooSmall(bits));
    }
    // Without `alg`, an RSA key is bound to the first RSA algorithm allowed.
    let alg = named
        .or_else(|| allowed.iter().copied().find(|a| rsa_params(*a).is_some()))
        .ok_or(VerifyKeyError::NoRsaAlgorithm)?;
    let params = rsa_params(alg).ok_or(VerifyKeyError::NotAnRsaAlg(alg))?;
    Ok((alg, params, rsa_spki(&n, &e)?))
}

fn ec(jwk: &Value, named: Option<Algorithm>) -> Result<Decoded, VerifyKeyError> {
    let (alg, verification, size): (_, &'static dyn VerificationAlgorithm, _) =
        match field(jwk, "crv") {
            Some("P-256") => (Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED, 32),
            Some("P-384") => (Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED, 48),
            other => return Err(VerifyKeyError::UnsupportedCurve(other.map(str::to_owned))),
        };
    if named.is_some_and(|n| n != alg) {
        return Err(VerifyKeyError::NotTheCurvesAlg);
    }
    let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
    if x.len() != size || y.len() != size {
        return Err(VerifyKeyError::BadEcCoordinates);
    }
    // The uncompressed point: 0x04 ‖ x ‖ y.
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(4u8);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok((alg, verification, point))
}

fn rsa_params(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// SubjectPublicKeyInfo DER for an RSA key given as modulus and exponent.
fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>, VerifyKeyError> {
    use aws_lc_rs::encoding::AsDer as _;
    let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
    components
        .as_der()
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| VerifyKeyError::BadRsa)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(skipped: &[Skipped]) -> String {
        skipped
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let small_n = URL_SAFE_NO_PAD.encode([0xC1u8; 128]);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "small", "n": small_n, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32]), "alg": "ES256"},
            {"kty": "EC", "kid": "hs", "crv": "P-256", "x": "AA", "y": "AA", "alg": "HS256"},
            {"kty": "EC", "kid": "short", "crv": "P-256", "x": "AA", "y": "AA"},
        ]});
        let (set, skipped) = KeySet::parse(
            doc.to_string().as_bytes(),
            &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        )
        .unwrap();
        assert!(set.is_empty());
        let all = reasons(&skipped);
        for want in [
            "key 0: RSA key of 1024 bits refused",
            "key 1: symmetric keys are never taken",
            "key 2: not a signing key",
            "key 3: unsupported curve Some(\"P-521\")",
            "key 4: alg does not fit Ed25519",
            "key 5: unknown alg `HS256`",
            "key 6: bad EC coordinates",
        ] {
            assert!(all.contains(want), "{want} in {all}");
        }
    }

    #[test]
    fn an_hmac_secret_shorter_than_the_hash_is_refused() {
        for (alg, min) in [
            (Algorithm::HS256, 32),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            let e = KeySet::hmac(&vec![b'x'; min - 1], alg)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&format!("needs at least {min}")), "{e}");
            assert!(!e.contains("xxxx"), "the secret is not in the message");
            let set = KeySet::hmac(&vec![b'x'; min], alg).unwrap();
            let key = set.find(Some("any kid")).unwrap();
            assert_eq!(key.alg_name(), format!("{alg:?}"));
            assert!(key.kid.starts_with("hmac-") && !key.kid.contains("78787878"));
        }
        assert!(KeySet::hmac(&[0u8; 64], Algorithm::ES256).is_err());
    }

    #[test]
    fn algorithms_outside_the_allowed_list_are_skipped() {
        let doc = serde_json::json!({"keys": [{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32])}]});
        let (set, skipped) = KeySet::from_jwks(&doc, &[Algorithm::ES256]).unwrap();
        assert!(set.is_empty());
        assert!(
            skipped[0].to_string().contains("not in the allowed list"),
            "{skipped:?}"
        );
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_refused() {
        let e = KeySet::parse(b"{", &alg::INBOUND).err().unwrap();
        assert!(e.to_string().starts_with("JWKS is not JSON: "), "{e}");
        let e = KeySet::parse(b"{\"keys\": {}}", &alg::INBOUND)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "JWKS has no `keys` array");
    }

    #[test]
    fn lookup_by_kid() {
        let jwk = |kid: &str| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode([9u8; 32])});
        let one = KeySet::from_jwks(
            &serde_json::json!({"keys": [jwk("a")]}),
            &[Algorithm::EdDSA],
        )
        .unwrap()
        .0;
        assert!(one.find(Some("a")).is_some() && one.find(None).is_some());
        assert!(one.find(Some("b")).is_none() && one.get("b").is_none());
        let one = one.any_kid_for_a_sole_key();
        assert!(one.find(Some("b")).is_some());
        assert!(one.get("b").is_none(), "`get` is exact");
        let two = KeySet::from_jwks(
            &serde_json::json!({"keys": [jwk("a"), jwk("b")]}),
            &[Algorithm::EdDSA],
        )
        .unwrap()
        .0
        .any_kid_for_a_sole_key();
        assert!(two.find(None).is_none() && two.find(Some("c")).is_none());
        assert_eq!(two.find(Some("b")).unwrap().kid, "b");
    }
}
