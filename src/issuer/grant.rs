//! The client credentials grant as the issuer decides it: which app a
//! request authenticates as (secret, Basic or `private_key_jwt`), and whether
//! it may have a token for the audience and scopes it asks (RFC 6749 §4.4,
//! `audience` or `resource` per RFC 8707).

use super::client_auth::{AssertionOffer, ClientAuthenticator};
use super::registry::Registry;
use super::token_request::{TokenError, TokenRequest};
use crate::oauth::ids::{Audience, ClientId, Scope};

/// A granted token, ready to sign.
pub struct Grant {
    pub client_id: ClientId,
    pub audience: Audience,
    pub scopes: Vec<Scope>,
}

/// The app a request authenticates as (Basic, or `client_id` + `client_secret`
/// in the body, or a client assertion). Correct credentials always pass;
/// failures are counted and, past the budget, answered 429 (see [`super::limit`]).
pub fn authenticate<'r>(
    reg: &'r Registry,
    auth: &ClientAuthenticator,
    req: &TokenRequest,
) -> Result<&'r super::registry::App, TokenError> {
    if req.get("client_assertion").is_some() || req.get("client_assertion_type").is_some() {
        let offer = AssertionOffer {
            assertion_type: req.get("client_assertion_type"),
            assertion: req.get("client_assertion"),
            client_id: req.get("client_id"),
            other_method: req.has_basic() || req.get("client_secret").is_some(),
            peer: req.peer,
        };
        return Ok(auth.assertion(reg, &offer)?);
    }
    let body_secret = req.get("client_secret");
    let (client_id, secret, basic) = match (req.basic(), body_secret) {
        (Some(_), Some(_)) => {
            return Err(TokenError::new(
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some((id, s)), None) => (id, s, true),
        (None, Some(s)) => (req.get("client_id").unwrap_or_default(), s, false),
        (None, None) => {
            return Err(TokenError::new(
                "invalid_client",
                "client authentication is required",
            ));
        }
    };
    if let (true, Some(body_id)) = (basic, req.get("client_id"))
        && body_id != client_id
    {
        return Err(TokenError::new(
            "invalid_request",
            "client_id in the body differs from the Basic credentials",
        ));
    }
    match reg.authenticate(client_id, secret) {
        Some(app) => Ok(app),
        None => {
            let mut e = TokenError::from(auth.failure(client_id, req.peer));
            e.basic = basic;
            Err(e)
        }
    }
}

/// Check a token request against the registry: authentication, grant type,
/// audience, scopes.
pub fn authorize(
    reg: &Registry,
    auth: &ClientAuthenticator,
    req: &TokenRequest,
) -> Result<Grant, TokenError> {
    let app = authenticate(reg, auth, req)?;
    match req.get("grant_type") {
        None => return Err(TokenError::new("invalid_request", "grant_type is required")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(TokenError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type `{}` is not supported; use client_credentials",
                    truncate(other)
                ),
            ));
        }
    }
    if app.blocked {
        return Err(TokenError::new(
            "unauthorized_client",
            format!("app {} is blocked", app.client_id),
        ));
    }
    let audience = match (req.get("audience"), req.get("resource")) {
        (Some(a), Some(r)) if a != r => {
            return Err(TokenError::new(
                "invalid_request",
                "audience and resource differ",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(TokenError::new(
                "invalid_request",
                "audience (or resource) is required",
            ));
        }
    };
    if reg.api(audience).is_none() {
        return Err(TokenError::new(
            "invalid_target",
            format!("no API with identifier `{}`", truncate(audience)),
        ));
    }
    let Some(granted) = app.grants.get(audience) else {
        return Err(TokenError::new(
            "unauthorized_client",
            format!(
                "app {} has no grant for `{}`",
                app.client_id,
                truncate(audience)
            ),
        ));
    };
    let scopes = match req.get("scope") {
        None => granted.clone(),
        Some(s) => {
            let wanted: Vec<Scope> = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(Scope::from)
                .collect();
            if let Some(missing) = wanted.iter().find(|w| !granted.contains(w)) {
                return Err(TokenError::new(
                    "invalid_scope",
                    format!("scope `{}` is not granted", truncate(missing.as_str())),
                ));
            }
            wanted
        }
    };
    Ok(Grant {
        client_id: app.client_id.clone(),
        audience: audience.into(),
        scopes,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}
