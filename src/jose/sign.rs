//! JWS signing (RFC 7515 compact serialisation) for every key this crate signs
//! with: the issuer's own keys (generated here, kept by `issuer::keys` as
//! PKCS#8 PEM) and the credential manager's client assertion keys (PKCS#8,
//! PKCS#1 RSA or SEC1 EC PEM). A key is parsed once into a [`Signer`], which
//! then signs any number of tokens; `alg` always comes from the key.

use super::alg::{self, Algorithm};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::error::{KeyRejected, Unspecified};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaEncoding,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use std::fmt;

/// Why a private key cannot sign. Names the key's kind, never its bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)")]
    NotPem,
    #[error("not a PKCS#8 PEM private key")]
    NotPkcs8Pem,
    #[error("unsupported private key format")]
    UnsupportedFormat,
    #[error("unsupported private key (P-256, Ed25519 or RSA)")]
    UnsupportedKey,
    #[error("bad RSA private key")]
    BadPkcs1(#[source] KeyRejected),
    #[error("bad EC private key (P-256 only)")]
    BadSec1(#[source] KeyRejected),
    #[error("not a P-256 key: {0}")]
    NotP256(#[source] KeyRejected),
    #[error("not an Ed25519 key: {0}")]
    NotEd25519(#[source] KeyRejected),
    #[error("not an RSA key: {0}")]
    NotRsa(#[source] KeyRejected),
    #[error("{} does not fit the key type", alg::name(*.0))]
    AlgDoesNotFit(Algorithm),
    #[error("RSA keys must have at least 2048 bits")]
    RsaTooShort,
    #[error("{} is not an algorithm signing keys are made for", alg::name(*.0))]
    NotGenerated(Algorithm),
    #[error("cannot generate a signing key")]
    Generate(#[source] Unspecified),
}

/// Why a JWS could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no randomness")]
    NoRandomness(#[source] Unspecified),
    #[error("signing failed")]
    Signature(#[source] Unspecified),
    #[error("cannot serialise the JWS: {0}")]
    Json(#[source] serde_json::Error),
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

/// A private key, parsed once, and the one algorithm it signs with.
pub struct Signer {
    alg: Algorithm,
    pair: Pair,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The algorithm only: the key pair stays out of logs.
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The JOSE header of a JWS made here: `typ`, `alg` (from the key) and `kid`.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub typ: &'a str,
    pub kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Protected<'a> {
    typ: &'a str,
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

/// A PKCS#8 private key as PEM text, to be stored by its owner (mode 0600).
pub struct Pkcs8Pem(String);

impl Pkcs8Pem {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pkcs8Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pkcs8Pem(...)")
    }
}

impl Signer {
    /// A client key from PEM: PKCS#8 (P-256, Ed25519 or RSA), PKCS#1 RSA or
    /// SEC1 P-256. `alg` (if given) must fit the key, else it follows from the
    /// key type (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| KeyError::NotPem)?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                if let Ok(p) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes) {
                    Pair::Ec(p)
                } else if let Ok(p) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes) {
                    Pair::Ed(p)
                } else {
                    aws_lc_rs::rsa::KeyPair::from_pkcs8(bytes)
                        .map(Pair::Rsa)
                        .map_err(|_| KeyError::UnsupportedKey)?
                }
            }
            PrivateKeyDer::Pkcs1(k) => aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der())
                .map(Pair::Rsa)
                .map_err(KeyError::BadPkcs1)?,
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            )
            .map(Pair::Ec)
            .map_err(KeyError::BadSec1)?,
            _ => return Err(KeyError::UnsupportedFormat),
        };
        let alg = match alg {
            Some(a) if pair.fits(a) => a,
            Some(a) => return Err(KeyError::AlgDoesNotFit(a)),
            None => pair.default_alg(),
        };
        Signer::checked(alg, pair)
    }

    /// An issuer key from a PKCS#8 PEM file's text, for exactly `alg`
    /// (ES256, EdDSA or RS256).
    pub fn from_pkcs8_pem(pem: &str, alg: Algorithm) -> Result<Self, KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::NotPkcs8Pem)?;
        Signer::from_pkcs8(der.secret_pkcs8_der(), alg)
    }

    /// A new issuer key for `alg` (ES256, EdDSA or RS256-2048) and its PEM text.
    pub fn generate(alg: Algorithm) -> Result<(Self, Pkcs8Pem), KeyError> {
        let rng = SystemRandom::new();
        let der = match alg {
            Algorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(KeyError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(KeyError::Generate)?
                .as_ref()
                .to_vec(),
            Algorithm::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|pair| pair.as_der())
                .map_err(KeyError::Generate)?
                .as_ref()
                .to_vec(),
            other => return Err(KeyError::NotGenerated(other)),
        };
        let signer = Signer::from_pkcs8(&der, alg)?;
        Ok((signer, Pkcs8Pem(pem("PRIVATE KEY", &der))))
    }

    fn from_pkcs8(der: &[u8], alg: Algorithm) -> Result<Self, KeyError> {
        let pair = match alg {
            Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(Pair::Ec)
                .map_err(KeyError::NotP256)?,
            Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(der)
                .map(Pair::Ed)
                .map_err(KeyError::NotEd25519)?,
            Algorithm::RS256 => aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                .map(Pair::Rsa)
                .map_err(KeyError::NotRsa)?,
            other => return Err(KeyError::NotGenerated(other)),
        };
        Signer::checked(alg, pair)
    }

    fn checked(alg: Algorithm, pair: Pair) -> Result<Self, KeyError> {
        if let Pair::Rsa(k) = &pair
            && k.public_modulus_len() < 256
        {
            return Err(KeyError::RsaTooShort);
        }
        Ok(Signer { alg, pair })
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a JWK (RFC 7517, RFC 7518 §6, RFC 8037): `kty` and
    /// its parameters only; the owner adds `kid`, `use` and `alg`.
    pub fn public_jwk(&self) -> serde_json::Value {
        match &self.pair {
            Pair::Ec(p) => {
                // Uncompressed point: 0x04 || x || y.
                let point = p.public_key().as_ref();
                let (x, y) = (point.get(1..33), point.get(33..65));
                serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x.unwrap_or_default()),
                    "y": URL_SAFE_NO_PAD.encode(y.unwrap_or_default()),
                })
            }
            Pair::Ed(p) => serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(p.public_key().as_ref()),
            }),
            Pair::Rsa(p) => {
                let public = p.public_key();
                serde_json::json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// A key id stable across restarts: base64url of the first 12 bytes of
    /// SHA-256 over the public key (the P-256 point, the Ed25519 key, the RSA
    /// modulus).
    pub fn key_id(&self) -> String {
        let digest = |public: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public);
        let digest = match &self.pair {
            Pair::Ec(p) => digest(p.public_key().as_ref()),
            Pair::Ed(p) => digest(p.public_key().as_ref()),
            Pair::Rsa(p) => digest(p.public_key().modulus().big_endian_without_leading_zero()),
        };
        URL_SAFE_NO_PAD.encode(digest.as_ref().get(..12).unwrap_or_default())
    }

    /// `header.claims.signature`, each base64url (RFC 7515 §7.1).
    pub fn sign_compact<C: Serialize + ?Sized>(
        &self,
        header: Header<'_>,
        claims: &C,
    ) -> Result<String, SignError> {
        let protected = Protected {
            typ: header.typ,
            alg: alg::name(self.alg),
            kid: header.kid,
        };
        let protected = serde_json::to_vec(&protected).map_err(SignError::Json)?;
        let claims = serde_json::to_vec(claims).map_err(SignError::Json)?;
        let b64 = |n: usize| n.div_ceil(3) * 4;
        let mut jws = String::with_capacity(
            b64(protected.len()) + b64(claims.len()) + b64(self.signature_len()) + 2,
        );
        URL_SAFE_NO_PAD.encode_string(&protected, &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jws);
        self.append_signature(&mut jws)?;
        Ok(jws)
    }

    fn signature_len(&self) -> usize {
        match &self.pair {
            Pair::Ec(_) | Pair::Ed(_) => 64,
            Pair::Rsa(p) => p.public_modulus_len(),
        }
    }

    /// Sign what `jws` holds (the signing input) and append `.` and the signature.
    fn append_signature(&self, jws: &mut String) -> Result<(), SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(p) => {
                let sig = p.sign(&rng, jws.as_bytes()).map_err(SignError::Signature)?;
                append(jws, sig.as_ref());
            }
            Pair::Ed(p) => {
                let sig = p.sign(jws.as_bytes());
                append(jws, sig.as_ref());
            }
            Pair::Rsa(p) => {
                let padding: &'static dyn RsaEncoding = if self.alg == Algorithm::PS256 {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(padding, &rng, jws.as_bytes(), &mut sig)
                    .map_err(SignError::Signature)?;
                append(jws, &sig);
            }
        }
        Ok(())
    }
}

fn append(jws: &mut String, signature: &[u8]) {
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, jws);
}

impl Pair {
    fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Pair::Ec(_), Algorithm::ES256)
                | (Pair::Ed(_), Algorithm::EdDSA)
                | (Pair::Rsa(_), Algorithm::RS256 | Algorithm::PS256)
        )
    }

    fn default_alg(&self) -> Algorithm {
        match self {
            Pair::Ec(_) => Algorithm::ES256,
            Pair::Ed(_) => Algorithm::EdDSA,
            Pair::Rsa(_) => Algorithm::RS256,
        }
    }
}

/// A fresh JWT ID (`jti`, RFC 7519 §4.1.7): `BYTES` random bytes, base64url.
pub fn new_jti<const BYTES: usize>() -> Result<String, SignError> {
    let mut id = [0u8; BYTES];
    aws_lc_rs::rand::fill(&mut id).map_err(SignError::NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(id))
}

/// `der` as PEM text under `label`, 64 characters a line (RFC 7468).
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests;
