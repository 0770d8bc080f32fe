//! The store key: 32 bytes that encrypt what the store must keep secret at
//! rest (the signing private keys, the key client secrets are hashed with)
//! with AES-256-GCM. Each sealed value is bound to its row (the associated
//! data names it), so a sealed value copied into another row does not open.
//! From `store_key` (base64 of 32 random bytes), or, with SQLite and no
//! `store_key`, from a file generated beside the database (mode 0600).

use crate::config::SecretSource;
use crate::private_file::{WriteError, write as write_private};
use crate::secret::{self, SecretError};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why the store key cannot be had. Names the file or key, never its bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("store_key: {0}")]
    Source(#[source] SecretError),
    #[error("{what}: expected 32 random bytes in base64 (`openssl rand -base64 32`)")]
    Malformed { what: String },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot generate the store key")]
    Random(#[source] aws_lc_rs::error::Unspecified),
}

/// A sealed value does not open: the wrong store key, or a damaged row.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decrypt {what} with this store_key (a different key than the one it was stored with?)"
)]
pub struct OpenError {
    pub what: String,
}

/// The key that seals secrets at rest.
pub struct StoreKey(LessSafeKey);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    /// From `store_key` if given, else (SQLite) the key file beside the
    /// database, generated on first start.
    pub fn load(source: Option<&SecretSource>, beside: Option<&Path>) -> Result<Self, KeyError> {
        match (source, beside) {
            (Some(source), _) => {
                let text = secret::read(source).map_err(KeyError::Source)?;
                Self::decode(&text, "store_key")
            }
            (None, Some(path)) => Self::from_file(path),
            (None, None) => Err(KeyError::Malformed {
                what: "store_key (required)".into(),
            }),
        }
    }

    fn from_file(path: &Path) -> Result<Self, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::decode(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                aws_lc_rs::rand::fill(&mut bytes).map_err(KeyError::Random)?;
                let text = format!("{}\n", STANDARD.encode(bytes));
                write_private(path, text.as_bytes())?;
                tracing::info!(file = %path.display(), "generated the store key (back it up with the database: without it the signing keys cannot be read)");
                Self::decode(&text, &path.display().to_string())
            }
            Err(source) => Err(KeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn decode(text: &str, what: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed { what: what.into() };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| malformed())?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| malformed())?;
        if bytes.len() != 32 {
            return Err(malformed());
        }
        Ok(StoreKey(LessSafeKey::new(key)))
    }

    /// `plain` encrypted for the row `what`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)?;
        let mut out = plain.to_vec();
        self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(what.as_bytes()),
            &mut out,
        )?;
        let mut sealed = nonce.to_vec();
        sealed.append(&mut out);
        Ok(sealed)
    }

    /// What [`StoreKey::seal`] sealed for the row `what`.
    pub fn open(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let fail = || OpenError { what: what.into() };
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(what.as_bytes()), &mut buf)
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StoreKey {
        StoreKey::decode(&STANDARD.encode([7u8; 32]), "k").unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_row_and_key() {
        let k = key();
        let sealed = k.seal("signing key a", b"secret pem").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"secret pem"));
        assert_eq!(k.open("signing key a", &sealed).unwrap(), b"secret pem");
        assert!(k.open("signing key b", &sealed).is_err());
        let other = StoreKey::decode(&STANDARD.encode([8u8; 32]), "k").unwrap();
        let e = other.open("signing key a", &sealed).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot decrypt signing key a with this store_key (a different key than the one it was stored with?)"
        );
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(k.open("signing key a", &bad).is_err());
        assert!(k.open("signing key a", &sealed[..5]).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64_and_files_are_generated_private() {
        for bad in ["", "not base64!", &STANDARD.encode([1u8; 16])] {
            let e = StoreKey::decode(bad, "store_key").unwrap_err();
            assert_eq!(
                e.to_string(),
                "store_key: expected 32 random bytes in base64 (`openssl rand -base64 32`)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        let a = StoreKey::load(None, Some(&path)).unwrap();
        let sealed = a.seal("x", b"y").unwrap();
        let b = StoreKey::load(None, Some(&path)).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap(), b"y");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(format!("{a:?}"), "StoreKey(..)");
    }
}
