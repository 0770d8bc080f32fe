//! `POST /oauth/introspect` (RFC 7662): callers authenticate as apps granted
//! `tokens:introspect` on the management API's audience; a token is active when
//! the issuer signed it, it has not expired, it was not revoked, and its app
//! still exists, is not blocked and was not blocked or deleted (then created
//! again) after the token was issued ([`Registry::token_app`]).

use super::registry::Registry;
use crate::jose::alg;
use crate::jose::claims::{TimeError, Window};
use crate::jose::compact::{self, JwsError, Object};
use crate::jose::keys::{self, KeySet, VerifyKeyError};
use serde_json::Value;

/// Checks tokens against the issuer's own keys: [`crate::jose`] (strict
/// parsing, the key named by `kid`, that key's algorithm), then this policy:
/// `iss` is this issuer and `exp` has not passed (no leeway: the issuer reads
/// its own clock). `aud` is the caller's to check.
pub struct Verifier {
    keys: KeySet,
    issuer: String,
}

/// Why a token is not one the issuer signed and still accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error("the token has no kid")]
    NoKid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error(transparent)]
    Time(#[from] TimeError),
}

/// Why the issuer's own public keys cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("JWK without kid")]
    NoKid,
    #[error("JWK with unsupported alg {0:?}")]
    UnsupportedAlg(Option<String>),
    #[error("JWK: {0}")]
    Key(#[source] VerifyKeyError),
}

impl Verifier {
    /// A verifier for every key in `jwks` (public JWKs with `kid` and `alg`).
    pub fn new(jwks: &[Value], issuer: &str) -> Result<Self, VerifierError> {
        let mut all = Vec::with_capacity(jwks.len());
        for jwk in jwks {
            if jwk.get("kid").and_then(Value::as_str).is_none() {
                return Err(VerifierError::NoKid);
            }
            let named = jwk.get("alg").and_then(Value::as_str);
            if !named
                .and_then(alg::parse)
                .is_some_and(|a| alg::ISSUER_SIGNING.contains(&a))
            {
                return Err(VerifierError::UnsupportedAlg(named.map(str::to_owned)));
            }
            all.push(keys::from_jwk(jwk, &alg::ISSUER_SIGNING).map_err(VerifierError::Key)?);
        }
        Ok(Verifier {
            keys: KeySet::from_keys(all),
            issuer: issuer.to_owned(),
        })
    }

    /// The claims of `token` if the issuer signed it and it has not expired.
    pub fn check(&self, token: &str) -> Result<Object, Rejected> {
        // No size limit of its own: the request that carries it has one.
        let jws = compact::parse_within(token, usize::MAX)?;
        // The key named, exactly; its algorithm, never the token's choice.
        let kid = jws.kid().ok_or(Rejected::NoKid)?;
        let key = self.keys.get(kid).ok_or(JwsError::UnknownKid)?;
        crate::jose::verify::check(&jws, key)?;
        match jws.claims.get("iss") {
            Some(Value::String(i)) if *i == self.issuer => {}
            _ => return Err(Rejected::WrongIssuer),
        }
        Window::now(0).expiry(&jws.claims)?;
        Ok(jws.claims)
    }

    /// [`Verifier::check`], for callers that only need the claims.
    pub fn verify(&self, token: &str) -> Option<Object> {
        self.check(token).ok()
    }
}

/// The RFC 7662 answer for `token`.
pub fn answer(verifier: &Verifier, reg: &Registry, token: &str) -> serde_json::Value {
    let inactive = serde_json::json!({"active": false});
    let Some(claims) = verifier.verify(token) else {
        return inactive;
    };
    if reg.token_app(&claims).is_err() {
        return inactive;
    }
    let mut out = serde_json::json!({"active": true, "token_type": "Bearer"});
    for k in [
        "client_id",
        "scope",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
    ] {
        if let Some(v) = claims.get(k) {
            out[k] = v.clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::test_keys::{TestKey, b64, seg};
    use serde_json::json;

    const ISS: &str = "https://issuer.test/";

    fn claims(exp_in: i64) -> Value {
        let now = crate::clock::unix_now();
        json!({"iss": ISS, "aud": "https://api/", "client_id": "app", "jti": "j",
               "iat": now, "exp": now.saturating_add_signed(exp_in)})
    }

    #[test]
    fn the_issuers_tokens_get_the_same_strictness_as_access_tokens() {
        let key = TestKey::es256("current");
        let retired = TestKey::eddsa("retired");
        let v = Verifier::new(&[key.jwk(), retired.jwk()], ISS).unwrap();
        let h = json!({"alg": "ES256", "kid": "current", "typ": "at+jwt"});
        let good = key.sign(&h, &claims(60));
        assert!(v.check(&good).is_ok());
        let old = retired.sign(&json!({"alg": "EdDSA", "kid": "retired"}), &claims(60));
        assert!(
            v.check(&old).is_ok(),
            "a retired key verifies until it leaves"
        );
        let (gh, gp, gs) = {
            let p: Vec<&str> = good.split('.').collect();
            (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
        };
        let raw = |header: &str| {
            let msg = format!("{}.{}", b64(header), seg(&claims(60)));
            format!("{msg}.{}", b64(key.signature(msg.as_bytes())))
        };
        let cases = [
            (
                "alg none",
                format!("{}.{gp}.", seg(&json!({"alg": "none", "kid": "current"}))),
                Rejected::Jws(JwsError::AlgNotAllowed),
            ),
            (
                "HS256 with the public key",
                crate::jose::test_keys::hmac_token(
                    &json!({"alg": "HS256", "kid": "current"}),
                    &claims(60),
                    key.jwk().to_string().as_bytes(),
                ),
                Rejected::Jws(JwsError::AlgNotAllowed),
            ),
            (
                "the retired key's id",
                key.sign(&json!({"alg": "ES256", "kid": "retired"}), &claims(60)),
                Rejected::Jws(JwsError::AlgNotAllowed),
            ),
            (
                "no kid",
                key.sign(&json!({"alg": "ES256"}), &claims(60)),
                Rejected::NoKid,
            ),
            (
                "unknown kid",
                key.sign(&json!({"alg": "ES256", "kid": "x"}), &claims(60)),
                Rejected::Jws(JwsError::UnknownKid),
            ),
            (
                "signed by another key",
                TestKey::es256("current").sign(&h, &claims(60)),
                Rejected::Jws(JwsError::BadSignature),
            ),
            (
                "crit",
                key.sign(
                    &json!({"alg": "ES256", "kid": "current", "crit": ["x"]}),
                    &claims(60),
                ),
                Rejected::Jws(JwsError::UnknownCrit),
            ),
            (
                "repeated alg",
                raw(r#"{"alg":"ES256","kid":"current","alg":"none"}"#),
                Rejected::Jws(JwsError::Malformed),
            ),
            (
                "padded",
                format!("{gh}.{gp}.{gs}=="),
                Rejected::Jws(JwsError::Malformed),
            ),
            (
                "wrong iss",
                key.sign(&h, &{
                    let mut c = claims(60);
                    c["iss"] = "https://evil/".into();
                    c
                }),
                Rejected::WrongIssuer,
            ),
            (
                "no iss",
                key.sign(&h, &{
                    let mut c = claims(60);
                    c.as_object_mut().unwrap().remove("iss");
                    c
                }),
                Rejected::WrongIssuer,
            ),
            (
                "expired",
                key.sign(&h, &claims(-1)),
                Rejected::Time(TimeError::Expired),
            ),
            (
                "no exp",
                key.sign(&h, &{
                    let mut c = claims(60);
                    c.as_object_mut().unwrap().remove("exp");
                    c
                }),
                Rejected::Time(TimeError::NoExpiry),
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(v.check(&token).err(), Some(want), "{what}");
            assert!(v.verify(&token).is_none(), "{what}");
        }
    }

    #[test]
    fn a_large_token_of_its_own_still_verifies() {
        // Many scopes make a large token: the request's limits bound it, not 8 KiB.
        let key = TestKey::eddsa("k");
        let v = Verifier::new(&[key.jwk()], ISS).unwrap();
        let mut c = claims(60);
        c["scp"] = (0..2000).map(|i| format!("scope:{i}")).collect();
        let token = key.sign(&json!({"alg": "EdDSA", "kid": "k"}), &c);
        assert!(token.len() > crate::jose::compact::MAX_TOKEN);
        assert_eq!(v.verify(&token).unwrap()["scp"][1999], "scope:1999");
    }

    #[test]
    fn the_issuers_keys_need_a_kid_and_a_signing_algorithm() {
        let key = TestKey::es256("k");
        let mut no_kid = key.jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut hs = key.jwk();
        hs["alg"] = "HS256".into();
        let mut ps = TestKey::rsa("r", crate::jose::alg::Algorithm::PS256).jwk();
        ps["alg"] = "PS256".into();
        for (what, jwk, want) in [
            ("no kid", no_kid, "JWK without kid"),
            ("HS256", hs, "JWK with unsupported alg Some(\"HS256\")"),
            ("PS256", ps, "JWK with unsupported alg Some(\"PS256\")"),
        ] {
            let e = Verifier::new(&[jwk], ISS).err().unwrap();
            assert_eq!(e.to_string(), want, "{what}");
        }
    }
}
