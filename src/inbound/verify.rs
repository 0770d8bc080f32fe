//! The access-token policy (RFC 9068 §4, RFC 8725) on top of [`crate::jose`]:
//! the token is parsed strictly and its signature verified with the key our
//! JWKS holds for its `kid`, with that key's algorithm ([`jose::verify`]);
//! then `typ` (`at+jwt` when required), `iss`, `aud`, `exp`, `nbf`, `iat` with
//! leeway, each of the right JSON type, and the identity and scope claims a
//! request needs, fit to reach the service as headers.

use crate::jose::claims::{self, TimeError, Window, WrongType};
use crate::jose::compact::{JwsError, Object};
use crate::jose::keys::KeySet;
use crate::oauth::ids::{ClientId, Kid};
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
    pub client_id: Option<ClientId>,
    pub subject: Option<String>,
    /// Space-separated, in the token's order (`scope`, else `scp`).
    pub scopes: Option<String>,
    pub jti: Option<String>,
    pub kid: Kid,
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
    claims(&jws.claims, policy, Kid::from(key.kid.clone()))
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

fn claims(c: &Object, policy: &Policy, kid: Kid) -> Result<Verified, Invalid> {
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
        .map(|v| string(v).map(ClientId::from))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::test_keys::{TestKey, key_set};
    use serde_json::json;

    const ISS: &str = "https://issuer.test/";
    const AUD: &str = "https://orders.test/";

    fn policy(require_at_jwt: bool) -> Policy {
        Policy {
            issuer: ISS.into(),
            audiences: vec!["https://other.test/".into(), AUD.into()],
            leeway: Duration::from_secs(30),
            require_at_jwt,
        }
    }

    fn claims() -> Value {
        let now = crate::clock::unix_now();
        json!({"iss": ISS, "aud": AUD, "sub": "svc", "client_id": "app", "scope": "orders:read orders:write", "jti": "j", "exp": now + 300, "iat": now})
    }

    #[test]
    fn the_access_token_policy_refuses_with_its_reason() {
        let key = TestKey::es256("k");
        let keys = key_set(&[&key]);
        let strict = policy(true);
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            key.sign(&key.header(), &c)
        };
        let typ = |t: Value| {
            let mut h = key.header();
            h["typ"] = t;
            key.sign(&h, &claims())
        };
        let cases = [
            (
                "wrong iss",
                with("iss", "https://evil.test/".into()),
                Invalid::WrongIssuer,
            ),
            (
                "iss without its slash",
                with("iss", "https://issuer.test".into()),
                Invalid::WrongIssuer,
            ),
            (
                "iss with another slash",
                with("iss", "https://issuer.test//".into()),
                Invalid::WrongIssuer,
            ),
            (
                "iss not a string",
                with("iss", json!([ISS])),
                Invalid::BadClaims,
            ),
            (
                "wrong aud",
                with("aud", "https://x.test/".into()),
                Invalid::WrongAudience,
            ),
            (
                "aud with a number",
                with("aud", json!([AUD, 5])),
                Invalid::BadClaims,
            ),
            ("expired", with("exp", json!(0)), Invalid::Expired),
            (
                "exp as a string",
                with("exp", "9999999999".into()),
                Invalid::BadClaims,
            ),
            (
                "nbf ahead",
                with("nbf", json!(crate::clock::unix_now() + 600)),
                Invalid::NotYetValid,
            ),
            (
                "scope a number",
                with("scope", json!(5)),
                Invalid::BadClaims,
            ),
            (
                "scope with a quote",
                with("scope", "a\"b".into()),
                Invalid::BadClaims,
            ),
            (
                "scp element with a space",
                {
                    let mut c = claims();
                    c.as_object_mut().unwrap().remove("scope");
                    c["scp"] = json!(["a b"]);
                    key.sign(&key.header(), &c)
                },
                Invalid::BadClaims,
            ),
            (
                "sub with a newline",
                with("sub", "svc\nx-admin: 1".into()),
                Invalid::BadClaims,
            ),
            (
                "azp with a zero-width space",
                with("azp", "svc\u{200b}".into()),
                Invalid::BadClaims,
            ),
            (
                "client_id with a trailing space",
                with("client_id", "admin ".into()),
                Invalid::BadClaims,
            ),
            ("jti a number", with("jti", json!(1)), Invalid::BadClaims),
            (
                "typ JWT where at+jwt is required",
                typ("JWT".into()),
                Invalid::WrongType,
            ),
            ("typ JOSE+JSON", typ("JOSE+JSON".into()), Invalid::WrongType),
            ("typ not a string", typ(json!(1)), Invalid::BadHeader),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    crate::jose::test_keys::seg(&json!({"alg": "none"})),
                    crate::jose::test_keys::seg(&claims())
                ),
                Invalid::AlgNotAllowed,
            ),
            (
                "unknown kid",
                {
                    let mut h = key.header();
                    h["kid"] = "other".into();
                    key.sign(&h, &claims())
                },
                Invalid::UnknownKid,
            ),
            (
                "too large",
                "a".repeat(crate::jose::compact::MAX_TOKEN + 1),
                Invalid::TooLarge,
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(verify(&token, &keys, &strict).err(), Some(want), "{what}");
        }
    }

    #[test]
    fn a_verified_token_gives_the_identity() {
        let key = TestKey::eddsa("k");
        let keys = key_set(&[&key]);
        let v = verify(&key.sign(&key.header(), &claims()), &keys, &policy(true)).unwrap();
        assert_eq!(v.client_id.as_ref().map(ClientId::as_str), Some("app"));
        assert_eq!(v.subject.as_deref(), Some("svc"));
        assert_eq!(v.kid, "k");
        assert!(v.has_scope("orders:write") && !v.has_scope("orders"));
        // `scp` when there is no `scope`; `typ` may be absent or `JWT` unless required.
        let mut c = claims();
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["a", "b"]);
        let mut h = key.header();
        for typ in [None, Some("JWT"), Some("application/AT+JWT")] {
            match typ {
                Some(t) => h["typ"] = t.into(),
                None => drop(h.as_object_mut().unwrap().remove("typ")),
            }
            let v = verify(&key.sign(&h, &c), &keys, &policy(false)).unwrap();
            assert_eq!(v.scopes.as_deref(), Some("a b"), "{typ:?}");
        }
    }

    #[test]
    fn scope_tokens() {
        for ok in ["a", "orders:read", "!#[]~", "https://x/y"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a\"b",
            "a\\b",
            "caf\u{e9}",
            "a\u{0}",
            "a\tb",
            "\u{7f}",
        ] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_reason_reads_as_before() {
        // The body and the metrics label: the same words as always.
        assert_eq!(
            Invalid::Inactive.to_string(),
            "token inactive (introspection)"
        );
        assert_eq!(
            Invalid::from(JwsError::UnknownKid).reason(),
            "unknown signing key"
        );
        assert_eq!(Invalid::from(TimeError::NoExpiry), Invalid::BadClaims);
    }
}
