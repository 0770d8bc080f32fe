//! `POST /oauth/introspect` (RFC 7662): callers authenticate as apps granted
//! `tokens:introspect` on the management API's audience; a token is active when
//! the issuer signed it, it has not expired, it was not revoked, and its app
//! still exists, is not blocked and was not blocked or deleted (then created
//! again) after the token was issued ([`Registry::token_app`]).

use super::registry::Registry;
use crate::jose::alg;
use crate::jose::claims::{TimeError, Window};
use crate::jose::compact::{self, JwsError, Object};
use crate::jose::keys::{self, KeyError, KeySet};
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
    Key(#[source] KeyError),
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
