//! The issuer's signing key: generated on first start and kept as a PKCS#8 PEM
//! file (mode 0600) beside the state, or loaded from there; its public half as
//! a JWK for `/.well-known/jwks.json`. The key itself is a
//! [`crate::jose::sign::Signer`]; this module is where it lives and how it is named.

use crate::config::SigningAlg;
use crate::jose::alg::Algorithm;
use crate::jose::sign::{KeyError, Signer};
use crate::private_file::WriteError;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why the signing key cannot be loaded or made. Names the file, never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error(transparent)]
    Generate(KeyError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

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

/// Where the key for `alg` is kept: `<state dir>/signing-<alg>.pem`.
pub fn key_path(state: &Path, alg: SigningAlg) -> PathBuf {
    crate::private_file::dir_of(state).join(format!("signing-{}.pem", alg.as_str().to_lowercase()))
}

/// Load the key for `alg`, generating and saving it on first start.
pub fn load_or_generate(state: &Path, alg: SigningAlg) -> Result<SigningKey, KeyFileError> {
    let path = key_path(state, alg);
    match std::fs::read_to_string(&path) {
        Ok(pem) => Signer::from_pkcs8_pem(&pem, jose_alg(alg))
            .map(named)
            .map_err(|source| KeyFileError::Invalid { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = replace(state, alg)?;
            tracing::info!(file = %path.display(), alg = alg.as_str(), "generated a signing key");
            Ok(key)
        }
        Err(source) => Err(KeyFileError::Read { path, source }),
    }
}

/// Generate a new key for `alg` and make it the one on disk.
pub fn replace(state: &Path, alg: SigningAlg) -> Result<SigningKey, KeyFileError> {
    let (signer, pem) = Signer::generate(jose_alg(alg)).map_err(KeyFileError::Generate)?;
    crate::private_file::write(&key_path(state, alg), pem.as_bytes())?;
    Ok(named(signer))
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
fn named(signer: Signer) -> SigningKey {
    let kid = signer.key_id();
    let mut jwk = signer.public_jwk();
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), kid.clone().into());
        obj.insert("use".into(), "sig".into());
        obj.insert("alg".into(), crate::jose::alg::name(signer.alg()).into());
    }
    SigningKey { kid, signer, jwk }
}
