//! `private_key_jwt` client assertions (RFC 7523 §2.2 and §3, as OIDC Core §9
//! profiles them): `iss` = `sub` = the client id, `aud` = the authorization
//! server, a fresh `jti`, `iat`, and `exp` 60 s later, signed with a PEM key
//! (PKCS#8, PKCS#1 RSA or SEC1 EC) as RS256, PS256, ES256 or EdDSA. The key
//! and the signature are [`crate::jose::sign`]'s; this module is the claims policy.

use crate::jose::alg::{self, Algorithm};
use crate::jose::sign::{self, Header, KeyError, SignError, Signer};
use serde::Serialize;

/// How long an assertion is valid: short, as RFC 7523 §3 advises.
pub const LIFETIME_SECS: u64 = 60;

/// Why a client assertion cannot be made. Names the key's kind, never its bytes.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("assertion_alg {} does not fit the key type", alg::name(*.0))]
    AlgDoesNotFit(Algorithm),
    #[error(transparent)]
    Key(KeyError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A parsed signing key and the algorithm it signs with.
#[derive(Debug)]
pub struct AssertionKey {
    signer: Signer,
}

/// The claims, in the order serde_json has always written them (by name).
#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    iat: u64,
    iss: &'a str,
    jti: String,
    sub: &'a str,
}

impl AssertionKey {
    /// Parse `pem`; `alg` (if given) must fit the key, else it follows from the
    /// key type (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, AssertionError> {
        match Signer::from_pem(pem, alg) {
            Ok(signer) => Ok(AssertionKey { signer }),
            Err(KeyError::AlgDoesNotFit(a)) => Err(AssertionError::AlgDoesNotFit(a)),
            Err(e) => Err(AssertionError::Key(e)),
        }
    }

    pub fn alg(&self) -> Algorithm {
        self.signer.alg()
    }

    /// A fresh assertion for `client_id` towards `audience`.
    pub fn sign(
        &self,
        client_id: &str,
        audience: &str,
        kid: Option<&str>,
    ) -> Result<String, AssertionError> {
        let now = crate::clock::unix_now();
        let claims = Claims {
            aud: audience,
            exp: now + LIFETIME_SECS,
            iat: now,
            iss: client_id,
            jti: sign::new_jti::<18>()?,
            sub: client_id,
        };
        let header = Header { typ: "JWT", kid };
        Ok(self.signer.sign_compact(header, &claims)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn assertions_carry_the_rfc_7523_claims() {
        let (_, pem) = Signer::generate(Algorithm::EdDSA).unwrap();
        let key =
            AssertionKey::from_pem(std::str::from_utf8(pem.as_bytes()).unwrap(), None).unwrap();
        assert_eq!(key.alg(), Algorithm::EdDSA);
        let jwt = key
            .sign("svc", "https://issuer.example/", Some("k1"))
            .unwrap();
        let parts: Vec<Vec<u8>> = jwt
            .split('.')
            .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap())
            .collect();
        let header: serde_json::Value = serde_json::from_slice(&parts[0]).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"})
        );
        let claims: serde_json::Value = serde_json::from_slice(&parts[1]).unwrap();
        let (iat, jti) = (
            claims["iat"].as_u64().unwrap(),
            claims["jti"].as_str().unwrap(),
        );
        assert_eq!(jti.len(), 24);
        // Byte for byte what a `serde_json::json!` map wrote before.
        let expected = serde_json::json!({
            "iss": "svc",
            "sub": "svc",
            "aud": "https://issuer.example/",
            "jti": jti,
            "iat": iat,
            "exp": iat + LIFETIME_SECS,
        });
        assert_eq!(String::from_utf8_lossy(&parts[1]), expected.to_string());

        let e = AssertionKey::from_pem(
            std::str::from_utf8(pem.as_bytes()).unwrap(),
            Some(Algorithm::ES256),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "assertion_alg ES256 does not fit the key type"
        );
        let e = AssertionKey::from_pem("nothing", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)"
        );
    }
}
