//! `POST /oauth/introspect` (RFC 7662): callers authenticate as apps granted
//! `tokens:introspect` on the management API's audience; a token is active when
//! the issuer signed it, it has not expired, it was not revoked, and its app
//! still exists, is not blocked and was not blocked or deleted (then created
//! again) after the token was issued ([`Registry::token_app`]).

use super::registry::Registry;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Checks tokens against the issuer's own keys.
pub struct Verifier {
    keys: Vec<(String, Algorithm, DecodingKey)>,
    issuer: String,
}

impl Verifier {
    /// A verifier for every key in `jwks` (public JWKs with `kid` and `alg`).
    pub fn new(jwks: &[serde_json::Value], issuer: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for value in jwks {
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(value.clone()).map_err(|e| format!("JWK: {e}"))?;
            let kid = jwk.common.key_id.clone().ok_or("JWK without kid")?;
            let alg = match value.get("alg").and_then(|a| a.as_str()) {
                Some("ES256") => Algorithm::ES256,
                Some("EdDSA") => Algorithm::EdDSA,
                Some("RS256") => Algorithm::RS256,
                other => return Err(format!("JWK with unsupported alg {other:?}")),
            };
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("JWK: {e}"))?;
            keys.push((kid, alg, decoding));
        }
        Ok(Verifier {
            keys,
            issuer: issuer.to_owned(),
        })
    }

    /// The claims of `token` if the issuer signed it and it has not expired.
    pub fn verify(&self, token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        // The algorithm is the one bound to our key, never the token's choice.
        let (_, alg, key) = self.keys.iter().find(|(k, _, _)| *k == kid)?;
        let mut v = Validation::new(*alg);
        v.set_issuer(&[&self.issuer]);
        v.validate_aud = false;
        v.leeway = 0;
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &v)
            .ok()
            .map(|d| d.claims)
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
