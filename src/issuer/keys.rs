//! The issuer's signing key: generated on first start and kept, sealed with
//! the store key, in the store (see [`super::store`]); its public half as a
//! JWK for `/.well-known/jwks.json`. The key itself is a
//! [`crate::jose::sign::Signer`]; this module is how it is made and named.

use crate::config::SigningAlg;
use crate::jose::alg::Algorithm;
use crate::jose::sign::{KeyError, Pkcs8Pem, Signer};
use std::fmt;

/// A key the issuer signs with.
pub struct SigningKey {
    pub kid: String,
    pub signer: Signer,
    /// The public JWK, with `kid`, `use` and `alg`.
    pub jwk: serde_json::Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.signer.alg())
            .finish_non_exhaustive()
    }
}

/// A new key for `alg` and its PKCS#8 PEM (to be sealed in the store).
pub fn generate(alg: SigningAlg) -> Result<(SigningKey, Pkcs8Pem), KeyError> {
    let (signer, pem) = Signer::generate(jose_alg(alg))?;
    Ok((named(signer), pem))
}

/// The key of a stored PKCS#8 PEM.
pub fn from_pem(pem: &str, alg: SigningAlg) -> Result<SigningKey, KeyError> {
    Signer::from_pkcs8_pem(pem, jose_alg(alg)).map(named)
}

fn jose_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::RS256 => Algorithm::RS256,
    }
}

/// The key with its `kid` (a hash of the public key, stable across restarts)
/// and its public JWK.
pub fn named(signer: Signer) -> SigningKey {
    let kid = signer.key_id();
    let mut jwk = signer.public_jwk();
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), kid.clone().into());
        obj.insert("use".into(), "sig".into());
        obj.insert("alg".into(), crate::jose::alg::name(signer.alg()).into());
    }
    SigningKey { kid, signer, jwk }
}
