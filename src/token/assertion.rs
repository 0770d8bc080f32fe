//! `private_key_jwt` client assertions (RFC 7523 §2.2 and §3, as OIDC Core §9
//! profiles them): `iss` = `sub` = the client id, `aud` = the authorization
//! server, a fresh `jti`, `iat`, and `exp` 60 s later, signed with a PEM key
//! (PKCS#8, PKCS#1 RSA or SEC1 EC) as RS256, PS256, ES256 or EdDSA.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

/// How long an assertion is valid: short, as RFC 7523 §3 advises.
pub const LIFETIME_SECS: u64 = 60;

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

/// A parsed signing key and the algorithm it signs with.
pub struct AssertionKey {
    alg: Algorithm,
    pair: Pair,
}

impl AssertionKey {
    /// Parse `pem`; `alg` (if given) must fit the key, else it follows from the
    /// key type (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| "not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)".to_owned())?;
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
                        .map_err(|_| "unsupported private key (P-256, Ed25519 or RSA)".to_owned())?
                }
            }
            PrivateKeyDer::Pkcs1(k) => aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der())
                .map(Pair::Rsa)
                .map_err(|_| "bad RSA private key".to_owned())?,
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            )
            .map(Pair::Ec)
            .map_err(|_| "bad EC private key (P-256 only)".to_owned())?,
            _ => return Err("unsupported private key format".into()),
        };
        let fits = |a: Algorithm| {
            matches!(
                (&pair, a),
                (Pair::Ec(_), Algorithm::ES256)
                    | (Pair::Ed(_), Algorithm::EdDSA)
                    | (Pair::Rsa(_), Algorithm::RS256 | Algorithm::PS256)
            )
        };
        let alg = match alg {
            Some(a) if fits(a) => a,
            Some(a) => return Err(format!("assertion_alg {a:?} does not fit the key type")),
            None => match pair {
                Pair::Ec(_) => Algorithm::ES256,
                Pair::Ed(_) => Algorithm::EdDSA,
                Pair::Rsa(_) => Algorithm::RS256,
            },
        };
        if let Pair::Rsa(k) = &pair
            && k.public_modulus_len() < 256
        {
            return Err("RSA keys must have at least 2048 bits".into());
        }
        Ok(AssertionKey { alg, pair })
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// A fresh assertion for `client_id` towards `audience`.
    pub fn sign(
        &self,
        client_id: &str,
        audience: &str,
        kid: Option<&str>,
    ) -> Result<String, String> {
        let rng = SystemRandom::new();
        let mut jti = [0u8; 18];
        rng.fill(&mut jti).map_err(|_| "no randomness".to_owned())?;
        let now = crate::clock::unix_now();
        let mut header = serde_json::json!({"alg": alg_name(self.alg), "typ": "JWT"});
        if let Some(k) = kid {
            header["kid"] = k.into();
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let failed = |_| "signing failed".to_owned();
        let sig = match &self.pair {
            Pair::Ec(p) => p
                .sign(&rng, jwt.as_bytes())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Pair::Ed(p) => p.sign(jwt.as_bytes()).as_ref().to_vec(),
            Pair::Rsa(p) => {
                let padding: &'static dyn aws_lc_rs::signature::RsaEncoding =
                    if self.alg == Algorithm::PS256 {
                        &RSA_PSS_SHA256
                    } else {
                        &RSA_PKCS1_SHA256
                    };
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(padding, &rng, jwt.as_bytes(), &mut sig)
                    .map_err(failed)?;
                sig
            }
        };
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::PS256 => "PS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "RS256",
    }
}
