//! `private_key_jwt` at the token endpoint (RFC 7523 §2.2 and §3): an app
//! registered with a public JWKS authenticates with a JWT it signed. The JWT
//! must name the app as `iss` and `sub`, this server (its issuer identifier or
//! token endpoint) in `aud`, carry `exp` (at most 10 minutes ahead) and a `jti`
//! never seen before: each `jti` is remembered until its `exp`, so a replayed
//! assertion is refused.

use super::limit::FailureLimiter;
use super::registry::{App, Registry};
use super::token::{TokenError, TokenRequest};
use crate::inbound::jwks::KeySet;
use crate::inbound::verify::{self, Invalid};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed for `exp`, `nbf`, `iat`.
const LEEWAY: u64 = 30;
/// Assertions valid longer than this are refused (RFC 7523 §3 asks for short ones).
const MAX_LIFETIME: u64 = 600;
/// `jti`s remembered at most; past this, expired ones are dropped first, then
/// new assertions are refused until room frees up.
const MAX_REMEMBERED: usize = 100_000;

const ALGS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How apps authenticate: failure throttling for all methods, and what a client
/// assertion must say.
pub struct ClientAuth {
    pub limiter: FailureLimiter,
    /// What `aud` may name: the issuer identifier and the token endpoint.
    audiences: [String; 2],
    /// `client_id\0jti` → `exp`.
    seen: Mutex<HashMap<String, u64>>,
}

impl ClientAuth {
    /// For the issuer at `url` (ends with `/`).
    pub fn new(url: &str) -> Self {
        ClientAuth {
            limiter: FailureLimiter::default(),
            audiences: [url.to_owned(), format!("{url}oauth/token")],
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The app `req`'s client assertion authenticates, or why not.
    pub fn assertion<'r>(
        &self,
        reg: &'r Registry,
        req: &TokenRequest,
    ) -> Result<&'r App, TokenError> {
        let fail = |why: &str| {
            TokenError::new("invalid_client", format!("client assertion refused: {why}"))
        };
        if req.get("client_assertion_type") != Some(JWT_BEARER) {
            return Err(TokenError::new(
                "invalid_request",
                format!("client_assertion_type must be {JWT_BEARER}"),
            ));
        }
        if req.has_basic() || req.get("client_secret").is_some() {
            return Err(TokenError::new(
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        let jwt = req
            .get("client_assertion")
            .ok_or_else(|| TokenError::new("invalid_request", "client_assertion is required"))?;
        let parsed = verify::parse(jwt).map_err(|e| fail(e.reason()))?;
        let client_id = match parsed.claims.get("iss") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(fail("no iss")),
        };
        if req.get("client_id").is_some_and(|id| id != client_id) {
            return Err(fail("client_id differs from the assertion's iss"));
        }
        if let Err(wait) = self.limiter.check(&client_id) {
            let mut e = TokenError::new(
                "invalid_client",
                "too many failed authentications for this client; retry later",
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
        let app = match reg.apps.get(&client_id) {
            Some(app) if app.jwks.is_some() => app,
            Some(_) => {
                self.limiter.failed(&client_id);
                return Err(fail("the app has no registered keys (jwks)"));
            }
            None => return Err(fail("unknown client")),
        };
        let result = self.check(app, jwt, &client_id);
        if result.is_err() {
            self.limiter.failed(&client_id);
        }
        result.map_err(|why| fail(&why)).map(|()| app)
    }

    fn check(&self, app: &App, jwt: &str, client_id: &str) -> Result<(), String> {
        let doc = app.jwks.as_ref().map(Value::to_string).unwrap_or_default();
        let (keys, _) = KeySet::parse(doc.as_bytes(), &ALGS)?;
        let keys = keys.any_kid_for_a_sole_key();
        let (parsed, _) = verify::verify_signature(jwt, &keys).map_err(|e| match e {
            Invalid::UnknownKid => "no registered key matches the kid".to_owned(),
            other => other.reason().to_owned(),
        })?;
        let c = &parsed.claims;
        let text = |name: &str| c.get(name).and_then(Value::as_str);
        if text("sub") != Some(client_id) {
            return Err("sub must equal iss (the client id)".into());
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list.iter().any(|v| {
                v.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            }),
            _ => false,
        };
        if !aud_ok {
            return Err(format!(
                "aud must name this server ({} or {})",
                self.audiences[0], self.audiences[1]
            ));
        }
        let now = super::registry::now();
        let number = |name: &str| c.get(name).and_then(Value::as_u64);
        let exp = number("exp").ok_or("exp is required")?;
        if exp.saturating_add(LEEWAY) <= now {
            return Err("the assertion has expired".into());
        }
        if exp > now.saturating_add(MAX_LIFETIME) {
            return Err(format!("exp is more than {MAX_LIFETIME} s ahead"));
        }
        if number("nbf").is_some_and(|n| n > now.saturating_add(LEEWAY))
            || number("iat").is_some_and(|i| i > now.saturating_add(LEEWAY))
        {
            return Err("the assertion is not valid yet".into());
        }
        let jti = text("jti")
            .filter(|j| !j.is_empty())
            .ok_or("jti is required")?;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let key = format!("{client_id}\0{jti}");
        if seen
            .get(&key)
            .is_some_and(|e| e.saturating_add(LEEWAY) > now)
        {
            return Err("this assertion's jti was already used".into());
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, e| e.saturating_add(LEEWAY) > now);
            if seen.len() >= MAX_REMEMBERED {
                return Err("too many assertions in flight; retry shortly".into());
            }
        }
        seen.insert(key, exp);
        Ok(())
    }
}
