//! The issuer's signing key: generated on first start and kept as a PKCS#8 PEM
//! file (mode 0600) beside the state, or loaded from there; its public half as
//! a JWK for `/.well-known/jwks.json`.

use crate::config::SigningAlg;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::signature::{Error as SignatureError, Signer};
use std::fmt;
use std::path::{Path, PathBuf};

/// A key the issuer signs with.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub signer: KeySigner,
    /// The public JWK.
    pub jwk: serde_json::Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Where the key for `alg` is kept: `<state dir>/signing-<alg>.pem`.
pub fn key_path(state: &Path, alg: SigningAlg) -> PathBuf {
    crate::private_file::dir_of(state).join(format!("signing-{}.pem", alg.as_str().to_lowercase()))
}

/// Load the key for `alg`, generating and saving it on first start.
pub fn load_or_generate(state: &Path, alg: SigningAlg) -> Result<SigningKey, String> {
    let path = key_path(state, alg);
    let pkcs8 = match std::fs::read_to_string(&path) {
        Ok(pem) => from_pem(&pem)
            .ok_or_else(|| format!("{}: not a PKCS#8 PEM private key", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der = generate(alg)?;
            crate::private_file::write(&path, to_pem(&der).as_bytes())
                .map_err(|e| e.to_string())?;
            tracing::info!(file = %path.display(), alg = alg.as_str(), "generated a signing key");
            der
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    from_pkcs8(alg, &pkcs8).map_err(|e| format!("{}: {e}", path.display()))
}

/// Generate a new key for `alg` and make it the one on disk.
pub fn replace(state: &Path, alg: SigningAlg) -> Result<SigningKey, String> {
    let der = generate(alg)?;
    crate::private_file::write(&key_path(state, alg), to_pem(&der).as_bytes())
        .map_err(|e| e.to_string())?;
    from_pkcs8(alg, &der)
}

fn generate(alg: SigningAlg) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let doc = match alg {
        SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
        SigningAlg::RS256 => {
            use aws_lc_rs::encoding::AsDer as _;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| "cannot generate an RSA key".to_owned())?;
            let der = pair
                .as_der()
                .map_err(|_| "cannot encode an RSA key".to_owned())?;
            return Ok(der.as_ref().to_vec());
        }
    }
    .map_err(|_| "cannot generate a signing key".to_owned())?;
    Ok(doc.as_ref().to_vec())
}

fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<SigningKey, String> {
    let (public, mut jwk, jalg, signer) = match alg {
        SigningAlg::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map_err(|e| format!("not a P-256 key: {e}"))?;
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref().to_vec();
            let (x, y) = point
                .get(1..33)
                .zip(point.get(33..65))
                .ok_or("bad P-256 public key")?;
            let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)});
            (point, jwk, Algorithm::ES256, KeySigner::Es256(pair))
        }
        SigningAlg::EdDSA => {
            let pair =
                Ed25519KeyPair::from_pkcs8(der).map_err(|e| format!("not an Ed25519 key: {e}"))?;
            let public = pair.public_key().as_ref().to_vec();
            let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public)});
            (public, jwk, Algorithm::EdDSA, KeySigner::EdDsa(pair))
        }
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                .map_err(|e| format!("not an RSA key: {e}"))?;
            if pair.public_modulus_len() < 256 {
                return Err("RSA keys must have at least 2048 bits".into());
            }
            let public = pair.public_key();
            let n = public.modulus().big_endian_without_leading_zero().to_vec();
            let e = public.exponent().big_endian_without_leading_zero().to_vec();
            let jwk = serde_json::json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e)});
            (n, jwk, Algorithm::RS256, KeySigner::Rs256(pair))
        }
    };
    // kid: a hash of the public key, stable across restarts.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
    let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), kid.clone().into());
        obj.insert("use".into(), "sig".into());
        obj.insert("alg".into(), alg.as_str().into());
    }
    Ok(SigningKey {
        kid,
        alg: jalg,
        signer,
        jwk,
    })
}

/// A signing key parsed once. (jsonwebtoken's own `encode` re-parses the PKCS#8
/// key on every signature, which for P-256 costs about as much as the signature
/// itself, and for RSA far more; this signer plugs into its `JwtSigner` trait.)
pub enum KeySigner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(aws_lc_rs::rsa::KeyPair),
}

impl Signer<Vec<u8>> for KeySigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        match self {
            KeySigner::Es256(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(SignatureError::from_source),
            KeySigner::EdDsa(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            KeySigner::Rs256(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(SignatureError::from_source)?;
                Ok(sig)
            }
        }
    }
}

impl JwtSigner for KeySigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            KeySigner::Es256(_) => Algorithm::ES256,
            KeySigner::EdDsa(_) => Algorithm::EdDSA,
            KeySigner::Rs256(_) => Algorithm::RS256,
        }
    }
}

impl SigningKey {
    /// `header.claims.signature`, each base64url, signed with this key.
    pub fn sign_jwt(
        &self,
        header: &jsonwebtoken::Header,
        claims: &serde_json::Value,
    ) -> Result<String, String> {
        let h = serde_json::to_vec(header).map_err(|e| e.to_string())?;
        let c = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(c)
        );
        let sig = self
            .signer
            .try_sign(jwt.as_bytes())
            .map_err(|e| e.to_string())?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }
}

fn to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

fn from_pem(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body.trim()).ok()
}
