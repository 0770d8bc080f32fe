//! The access-token policy (RFC 9068 §4, RFC 8725) on top of [`crate::jose`]:
//! the token is parsed strictly and its signature verified with the key our
//! JWKS holds for its `kid`, with that key's algorithm ([`jose::verify`]);
//! then `typ` (`at+jwt` when required), `iss`, `aud`, `exp`, `nbf`, `iat` with
//! leeway, each of the right JSON type, and the identity and scope claims a
//! request needs, fit to reach the service as headers.

use crate::jose::claims::{self, TimeError, Window, WrongType};
use crate::jose::compact::{JwsError, Object};
use crate::jose::keys::KeySet;
use serde_json::Value;
use std::time::Duration;

/// Why a token was refused; the `reason` label in metrics and the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    TooLarge,
    Malformed,
    BadHeader,
    AlgNotAllowed,
    UnknownCrit,
    UnknownKid,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    BadClaims,
    WrongType,
    Revoked,
    /// The issuer's introspection endpoint says the token is not active.
    Inactive,
}

impl Invalid {
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::TooLarge => "token too large",
            Invalid::Malformed => "malformed token",
            Invalid::BadHeader => "bad token header",
            Invalid::AlgNotAllowed => "algorithm not allowed",
            Invalid::UnknownCrit => "unknown critical header",
            Invalid::UnknownKid => "unknown signing key",
            Invalid::BadSignature => "bad signature",
            Invalid::WrongIssuer => "wrong issuer",
            Invalid::WrongAudience => "wrong audience",
            Invalid::Expired => "token expired",
            Invalid::NotYetValid => "token not yet valid",
            Invalid::BadClaims => "bad claims",
            Invalid::WrongType => "wrong token type",
            Invalid::Revoked => "token revoked",
            Invalid::Inactive => "token inactive (introspection)",
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Invalid {}

impl From<JwsError> for Invalid {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLarge => Invalid::TooLarge,
            JwsError::Malformed => Invalid::Malformed,
            JwsError::BadHeader => Invalid::BadHeader,
            JwsError::AlgNotAllowed => Invalid::AlgNotAllowed,
            JwsError::UnknownCrit => Invalid::UnknownCrit,
            JwsError::UnknownKid => Invalid::UnknownKid,
            JwsError::BadSignature => Invalid::BadSignature,
        }
    }
}

impl From<WrongType> for Invalid {
    fn from(_: WrongType) -> Self {
        Invalid::BadClaims
    }
}

impl From<TimeError> for Invalid {
    fn from(e: TimeError) -> Self {
        match e {
            TimeError::NoExpiry | TimeError::WrongType(_) => Invalid::BadClaims,
            TimeError::Expired => Invalid::Expired,
            TimeError::NotYetValid => Invalid::NotYetValid,
        }
    }
}

/// What a request needs to know about a verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub client_id: Option<String>,
    pub subject: Option<String>,
    /// Space-separated, in the token's order (`scope`, else `scp`).
    pub scopes: Option<String>,
    pub jti: Option<String>,
    pub kid: String,
    pub exp: u64,
    pub iat: Option<u64>,
}

impl Verified {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|x| x == scope))
    }
}

/// The checks that do not depend on the key.
pub struct Policy {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub require_at_jwt: bool,
}

/// Verify `token` against `keys` and `policy`.
pub fn verify(token: &str, keys: &KeySet, policy: &Policy) -> Result<Verified, Invalid> {
    let (jws, key) = crate::jose::verify::verify(token, keys)?;
    check_typ(&jws.header, policy)?;
    claims(&jws.claims, policy, key.kid.clone())
}

fn check_typ(header: &Object, policy: &Policy) -> Result<(), Invalid> {
    let ok = match header.get("typ") {
        None => !policy.require_at_jwt,
        Some(Value::String(t)) => {
            if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") {
                true
            } else {
                t.eq_ignore_ascii_case("jwt") && !policy.require_at_jwt
            }
        }
        Some(_) => return Err(Invalid::BadHeader),
    };
    if ok { Ok(()) } else { Err(Invalid::WrongType) }
}

fn claims(c: &Object, policy: &Policy, kid: String) -> Result<Verified, Invalid> {
    match c.get("iss") {
        Some(Value::String(i)) if *i == policy.issuer => {}
        Some(Value::String(_)) | None => return Err(Invalid::WrongIssuer),
        Some(_) => return Err(Invalid::BadClaims),
    }
    if !claims::audience(c, |a| policy.audiences.iter().any(|x| x == a))? {
        return Err(Invalid::WrongAudience);
    }
    let times = Window::now(policy.leeway.as_secs()).check(c)?;
    // Identity claims reach the service as headers: no control characters.
    let identity = |v: &Value| {
        string(v).and_then(|s| {
            if is_identity(&s) {
                Ok(s)
            } else {
                Err(Invalid::BadClaims)
            }
        })
    };
    // Every identity claim present is checked, not only the one used: a
    // service may read the token itself.
    for k in ["client_id", "cid", "azp", "sub"] {
        if let Some(v) = c.get(k) {
            identity(v)?;
        }
    }
    // Checked above: taken as they are.
    let client_id = ["client_id", "cid", "azp", "sub"]
        .iter()
        .find_map(|k| c.get(*k))
        .map(string)
        .transpose()?;
    let subject = c.get("sub").map(string).transpose()?;
    let jti = c.get("jti").map(string).transpose()?;
    // RFC 6749 §3.3: scope = scope-token *( SP scope-token ), nothing else; a
    // value with a space inside an `scp` element would count as two scopes.
    let scopes = match (c.get("scope"), c.get("scp")) {
        (Some(Value::String(s)), _) if s.is_empty() => None,
        (Some(Value::String(s)), _) => {
            if !s.split(' ').all(is_scope_token) {
                return Err(Invalid::BadClaims);
            }
            Some(s.clone())
        }
        (Some(_), _) => return Err(Invalid::BadClaims),
        (None, Some(Value::Array(list))) => {
            let names: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
            let names = names.ok_or(Invalid::BadClaims)?;
            if !names.iter().all(|n| is_scope_token(n)) {
                return Err(Invalid::BadClaims);
            }
            Some(names.join(" "))
        }
        (None, Some(_)) => return Err(Invalid::BadClaims),
        (None, None) => None,
    }
    .filter(|s| !s.is_empty());
    Ok(Verified {
        client_id,
        subject,
        scopes,
        jti,
        kid,
        exp: times.exp,
        iat: times.iat,
    })
}

/// An identity claim fit to reach a service as a header value: not empty, no
/// whitespace at either end (a service may trim `"admin "` to `admin`), no
/// control characters and no invisible formatting ones (zero-width, bidi
/// overrides, line and paragraph separators, BOM).
pub fn is_identity(s: &str) -> bool {
    let invisible = |c: char| matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}');
    !s.is_empty()
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s.chars().any(|c| c.is_control() || invisible(c))
}

/// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

fn string(v: &Value) -> Result<String, Invalid> {
    v.as_str().map(str::to_owned).ok_or(Invalid::BadClaims)
}
