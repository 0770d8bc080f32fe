//! Access-token verification (RFC 9068 §4, RFC 8725), strict before anything
//! else: size, exactly three segments, canonical base64url, JSON objects
//! without repeated members, no
//! `alg: none`, no unknown `crit`; `jku`/`x5u`/`jwk`/`x5c` are never used (the
//! key comes from our JWKS by `kid`, and the algorithm is the one bound to that
//! key, never the header's choice); then `iss`, `aud`, `exp`, `nbf`, `iat` with
//! leeway, each of the right JSON type.

use super::jwks::KeySet;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use std::time::Duration;

/// Tokens larger than this are refused before any decoding.
pub const MAX_TOKEN: usize = 8 * 1024;

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

/// The parts of a compact JWS, decoded.
pub struct Parsed<'t> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    pub message: &'t str,
    pub signature: Vec<u8>,
    pub kid: Option<String>,
    pub alg: String,
}

/// Decode without verifying: structure, base64url, JSON, header rules.
pub fn parse(token: &str) -> Result<Parsed<'_>, Invalid> {
    if token.len() > MAX_TOKEN {
        return Err(Invalid::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let header = object(h)?;
    let claims = object(p)?;
    // The padding-free engine refuses `=`, other alphabets and non-canonical trailing bits.
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| Invalid::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(Invalid::BadHeader),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(Invalid::AlgNotAllowed);
    }
    if header.contains_key("crit") {
        // We implement no JWS extension, so every critical one is unknown (RFC 7515 §4.1.11).
        return Err(Invalid::UnknownCrit);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Invalid::BadHeader),
    };
    Ok(Parsed {
        header,
        claims,
        message: &token[..h.len() + 1 + p.len()],
        signature,
        kid,
        alg,
    })
}

fn object(segment: &str) -> Result<Map<String, Value>, Invalid> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Invalid::Malformed)?;
    // A repeated member (two `alg`s, two `aud`s) is refused, not resolved
    // (RFC 7515 §5.2 allows either; verifiers disagree on which one wins).
    match crate::json::parse(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Invalid::Malformed),
    }
}

/// Verify `token` against `keys` and `policy`.
pub fn verify(token: &str, keys: &KeySet, policy: &Policy) -> Result<Verified, Invalid> {
    let (parsed, kid) = verify_signature(token, keys)?;
    check_typ(&parsed.header, policy)?;
    claims(&parsed.claims, policy, kid)
}

/// The structural checks and the signature, with the key `keys` holds for the
/// token's `kid` and that key's algorithm. Returns the parts and the key's id.
pub fn verify_signature<'t>(
    token: &'t str,
    keys: &KeySet,
) -> Result<(Parsed<'t>, String), Invalid> {
    let parsed = parse(token)?;
    let key = keys
        .find(parsed.kid.as_deref())
        .ok_or(Invalid::UnknownKid)?;
    // The key decides the algorithm; a header naming another one is refused.
    if key.alg_name() != parsed.alg {
        return Err(Invalid::AlgNotAllowed);
    }
    if !key.verify(parsed.message.as_bytes(), &parsed.signature) {
        return Err(Invalid::BadSignature);
    }
    let kid = key.kid.clone();
    Ok((parsed, kid))
}

fn check_typ(header: &Map<String, Value>, policy: &Policy) -> Result<(), Invalid> {
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        Some(_) => return Err(Invalid::BadHeader),
    };
    let ok = match typ.as_deref() {
        Some("at+jwt" | "application/at+jwt") => true,
        None | Some("jwt") => !policy.require_at_jwt,
        Some(_) => false,
    };
    if ok { Ok(()) } else { Err(Invalid::WrongType) }
}

fn claims(c: &Map<String, Value>, policy: &Policy, kid: String) -> Result<Verified, Invalid> {
    let now = crate::clock::unix_now();
    let leeway = policy.leeway.as_secs();
    match c.get("iss") {
        Some(Value::String(i)) if *i == policy.issuer => {}
        Some(Value::String(_)) | None => return Err(Invalid::WrongIssuer),
        Some(_) => return Err(Invalid::BadClaims),
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => policy.audiences.contains(a),
        Some(Value::Array(list)) => {
            if list.iter().any(|v| !v.is_string()) {
                return Err(Invalid::BadClaims);
            }
            list.iter().any(|v| {
                v.as_str()
                    .is_some_and(|a| policy.audiences.iter().any(|x| x == a))
            })
        }
        None => false,
        Some(_) => return Err(Invalid::BadClaims),
    };
    if !aud_ok {
        return Err(Invalid::WrongAudience);
    }
    let exp = number(c, "exp")?.ok_or(Invalid::BadClaims)?;
    if now >= exp.saturating_add(leeway) {
        return Err(Invalid::Expired);
    }
    if let Some(nbf) = number(c, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(Invalid::NotYetValid);
    }
    let iat = number(c, "iat")?;
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(Invalid::NotYetValid);
    }
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
        exp,
        iat,
    })
}

/// A NumericDate: a JSON number (not a string), non-negative.
fn number(c: &Map<String, Value>, name: &str) -> Result<Option<u64>, Invalid> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(Invalid::BadClaims),
        Some(_) => Err(Invalid::BadClaims),
    }
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
    use proptest::prelude::*;

    fn seg(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(header: &Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            seg(header),
            seg(claims),
            URL_SAFE_NO_PAD.encode(sig)
        )
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
    fn structure() {
        let h = serde_json::json!({"alg": "ES256", "kid": "k"});
        let c = serde_json::json!({"sub": "a"});
        let good = token(&h, &c, b"sig");
        assert!(parse(&good).is_ok());
        for bad in [
            format!("{good}."),
            format!(".{good}"),
            good.replacen('.', "..", 1),
            format!("{good}="),
            format!("{good} "),
            good.replace('.', ". "),
            "a.b".to_owned(),
            "".to_owned(),
            format!("{}.{}.{}", seg(&serde_json::json!([1])), seg(&c), "c2ln"),
            format!(
                "{}.{}.{}",
                seg(&serde_json::json!({"alg": "none"})),
                seg(&c),
                ""
            ),
            format!(
                "{}.{}.{}",
                seg(&serde_json::json!({"alg": "ES256", "crit": ["x"]})),
                seg(&c),
                "c2ln"
            ),
            format!(
                "{}.{}.{}",
                seg(&serde_json::json!({"alg": 1})),
                seg(&c),
                "c2ln"
            ),
            format!(
                "{}.{}.{}",
                seg(&serde_json::json!({"alg": "ES256", "kid": 1})),
                seg(&c),
                "c2ln"
            ),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&"a".repeat(MAX_TOKEN + 1)).err(),
            Some(Invalid::TooLarge)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_three_segments(a in "[A-Za-z0-9_=+/-]{0,40}", b in "[A-Za-z0-9_=+/-]{0,40}", c in "[A-Za-z0-9_=+/-]{0,40}") {
            let _ = parse(&format!("{a}.{b}.{c}"));
        }

        /// Only the canonical encoding of a segment is accepted: no padding,
        /// no standard alphabet, no stray trailing bits.
        #[test]
        fn refuses_non_canonical_encodings(kid in "[a-z]{0,12}", sig in prop::collection::vec(any::<u8>(), 1..70), which in 0..3usize) {
            let h = serde_json::json!({"alg": "ES256", "kid": kid});
            let c = serde_json::json!({"sub": "a"});
            let good = token(&h, &c, &sig);
            prop_assert!(parse(&good).is_ok());
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            let p = parts[which].clone();
            // Padding.
            if !p.len().is_multiple_of(4) {
                parts[which] = format!("{p}{}", "=".repeat(4 - p.len() % 4));
                prop_assert!(parse(&parts.join(".")).is_err());
            }
            // The standard alphabet instead of the URL-safe one.
            if p.contains('-') || p.contains('_') {
                parts[which] = p.replace('-', "+").replace('_', "/");
                prop_assert!(parse(&parts.join(".")).is_err());
            }
            // Non-zero unused bits in the last character.
            if p.len() % 4 == 2 || p.len() % 4 == 3 {
                const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let last = p.as_bytes()[p.len() - 1];
                let v = ALPHA.iter().position(|x| *x == last).unwrap_or(0);
                let flipped = ALPHA[v ^ 1] as char;
                parts[which] = format!("{}{flipped}", &p[..p.len() - 1]);
                prop_assert!(parse(&parts.join(".")).is_err());
            }
        }
    }
}
