//! `private_key_jwt` at the token endpoint (RFC 7523 §2.2 and §3): an app
//! registered with a public JWKS authenticates with a JWT it signed. The JWT
//! must name the app as `iss` and `sub`, this server (its issuer identifier or
//! token endpoint) in `aud`, carry `exp` (at most 10 minutes ahead) and a `jti`
//! never seen before: each `jti` is remembered until its `exp`, so a replayed
//! assertion is refused. A `jti` longer than [`MAX_JTI_LEN`] bytes is refused,
//! and what is remembered is a SHA-256 of client id and `jti`: 32 bytes per
//! entry whatever the client sends.
//!
//! Failures are throttled like secrets ([`super::limit`]): a valid assertion
//! always passes, and whether the client id exists, has keys, or the signature
//! is wrong, the answer is the same.

use super::limit::FailureLimiter;
use super::registry::{App, Registry};
use super::token::{TokenError, TokenRequest};
use crate::inbound::jwks::KeySet;
use crate::inbound::verify;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use crate::oauth::JWT_BEARER;
/// Clock skew allowed for `exp`, `nbf`, `iat`.
const LEEWAY: u64 = 30;
/// Assertions valid longer than this are refused (RFC 7523 §3 asks for short ones).
const MAX_LIFETIME: u64 = 600;
/// `jti`s remembered at most; past this, expired ones are dropped first, then
/// new assertions are refused until room frees up.
const MAX_REMEMBERED: usize = 100_000;
/// The longest `jti` accepted, in bytes.
pub const MAX_JTI_LEN: usize = 256;
/// What every failure that depends on the app's registration says.
const NOT_VERIFIED: &str = "the assertion is not signed by a key registered for its client";

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
    /// SHA-256(`client_id\0jti`) → `exp`.
    seen: Mutex<HashMap<[u8; 32], u64>>,
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

    /// A failed authentication naming `client_id` from `peer`: counted, and
    /// the error to answer (429 once past the budget). The same for every
    /// client id, known or not.
    pub fn failure(&self, client_id: &str, peer: Option<IpAddr>) -> TokenError {
        match self.limiter.failed(client_id, peer) {
            None => TokenError::new("invalid_client", "client authentication failed"),
            Some(wait) => {
                let mut e = TokenError::new(
                    "invalid_client",
                    "client authentication failed; too many failures, retry later",
                );
                e.retry_after = Some(wait);
                e
            }
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
        // Until the signature verifies, every failure says the same.
        let refused = |why: &str| {
            let mut e = self.failure(&client_id, req.peer);
            e.description = format!("client assertion refused: {why}");
            if e.retry_after.is_some() {
                e.description.push_str("; too many failures, retry later");
            }
            e
        };
        let Some(app) = reg.apps.get(&client_id) else {
            return Err(refused(NOT_VERIFIED));
        };
        match self.check(app, jwt, &client_id) {
            Ok(()) => Ok(app),
            Err(Check::Signature) => Err(refused(NOT_VERIFIED)),
            Err(Check::Claims(why)) => Err(refused(&why)),
        }
    }

    fn check(&self, app: &App, jwt: &str, client_id: &str) -> Result<(), Check> {
        let Some(doc) = app.jwks.as_ref().map(Value::to_string) else {
            return Err(Check::Signature);
        };
        let (keys, _) = KeySet::parse(doc.as_bytes(), &ALGS).map_err(|_| Check::Signature)?;
        let keys = keys.any_kid_for_a_sole_key();
        let (parsed, _) = verify::verify_signature(jwt, &keys).map_err(|_| Check::Signature)?;
        self.claims(&parsed.claims, client_id)
            .map_err(Check::Claims)
    }

    /// The claims of an assertion whose signature verified.
    fn claims(&self, c: &serde_json::Map<String, Value>, client_id: &str) -> Result<(), String> {
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
        let now = crate::clock::unix_now();
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
        if jti.len() > MAX_JTI_LEN {
            return Err(format!("jti is longer than {MAX_JTI_LEN} bytes"));
        }
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(client_id.as_bytes());
        ctx.update(b"\0");
        ctx.update(jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Why an assertion failed: its signature (said the same for every client), or
/// a claim of an assertion its client did sign.
enum Check {
    Signature,
    Claims(String),
}
