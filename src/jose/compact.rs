//! Compact JWS parsing (RFC 7515 §7.1), strict before anything else: a size
//! limit, exactly three segments, canonical base64url (no padding, no other
//! alphabet, no stray trailing bits), header and payload JSON objects without
//! repeated members (through [`crate::json`]), no `alg: none` in any case, no
//! `crit` (we implement no JWS extension). `jku`/`x5u`/`jwk`/`x5c` are never
//! read: the key comes from a [`super::keys::KeySet`] the caller holds.

use super::alg::{self, Algorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Tokens larger than this are refused before any decoding (access tokens,
/// client assertions).
pub const MAX_TOKEN: usize = 8 * 1024;

/// A JSON object: a JOSE header or a claims set.
pub type Object = Map<String, Value>;

/// Why a JWS was refused before its claims were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("bad token header")]
    BadHeader,
    #[error("algorithm not allowed")]
    AlgNotAllowed,
    #[error("unknown critical header")]
    UnknownCrit,
    #[error("unknown signing key")]
    UnknownKid,
    #[error("bad signature")]
    BadSignature,
}

/// The parts of a compact JWS, decoded, not yet verified.
pub struct Jws<'t> {
    pub header: Object,
    pub claims: Object,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
    /// The header's `alg`, when it names an algorithm this crate knows.
    pub alg: Option<Algorithm>,
}

impl Jws<'_> {
    /// The header's `kid` (a string: [`parse`] refused any other type).
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

/// Decode `token` (at most [`MAX_TOKEN`] bytes) without verifying it.
pub fn parse(token: &str) -> Result<Jws<'_>, JwsError> {
    parse_within(token, MAX_TOKEN)
}

/// [`parse`] with another size limit (the issuer's own tokens, bounded by
/// the request that carries them).
pub fn parse_within(token: &str, max_len: usize) -> Result<Jws<'_>, JwsError> {
    if token.len() > max_len {
        return Err(JwsError::TooLarge);
    }
    let (h, p, s) = segments(token)?;
    let header = object(h)?;
    let claims = object(p)?;
    // The padding-free engine refuses `=`, other alphabets and non-canonical trailing bits.
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwsError::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a,
        _ => return Err(JwsError::BadHeader),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwsError::AlgNotAllowed);
    }
    // An algorithm we do not know stays `None`: the key decides (and refuses).
    let alg = alg::parse(alg);
    if header.contains_key("crit") {
        // We implement no JWS extension, so every critical one is unknown (RFC 7515 §4.1.11).
        return Err(JwsError::UnknownCrit);
    }
    if !registered_members_well_typed(&header) {
        return Err(JwsError::BadHeader);
    }
    Ok(Jws {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
        alg,
    })
}

/// The registered header parameters (RFC 7515 §4.1) that are present have
/// their JSON type, whichever caller reads them (so a `typ` of `1` or an `x5c`
/// that is not an array of strings is refused everywhere).
fn registered_members_well_typed(header: &Object) -> bool {
    const STRINGS: [&str; 7] = ["kid", "typ", "cty", "jku", "x5u", "x5t", "x5t#S256"];
    STRINGS
        .iter()
        .all(|m| header.get(*m).is_none_or(Value::is_string))
        && header
            .get("x5c")
            .is_none_or(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        && header.get("jwk").is_none_or(Value::is_object)
}

/// The claims of a token we only hold and never verify (an access token from
/// an authorization server, read for its `exp`): three segments, the payload
/// a canonical base64url JSON object; the header is not looked at and there
/// is no size limit.
pub fn unverified_claims(token: &str) -> Result<Object, JwsError> {
    let (_, payload, _) = segments(token)?;
    object(payload)
}

fn segments(token: &str) -> Result<(&str, &str, &str), JwsError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JwsError::Malformed),
    }
}

fn object(segment: &str) -> Result<Object, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwsError::Malformed)?;
    // A repeated member (two `alg`s, two `aud`s) is refused, not resolved
    // (RFC 7515 §5.2 allows either; verifiers disagree on which one wins).
    match crate::json::parse(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwsError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
    fn structure() {
        let h = json!({"alg": "ES256", "kid": "k"});
        let c = json!({"sub": "a"});
        let good = token(&h, &c, b"sig");
        let jws = parse(&good).unwrap();
        assert_eq!((jws.alg, jws.kid()), (Some(Algorithm::ES256), Some("k")));
        let with = |header: Value| format!("{}.{}.{}", seg(&header), seg(&c), "c2ln");
        for (bad, why) in [
            (format!("{good}."), JwsError::Malformed),
            (format!(".{good}"), JwsError::Malformed),
            (good.replacen('.', "..", 1), JwsError::Malformed),
            (format!("{good}="), JwsError::Malformed),
            (format!("{good} "), JwsError::Malformed),
            (good.replace('.', ". "), JwsError::Malformed),
            ("a.b".to_owned(), JwsError::Malformed),
            (String::new(), JwsError::Malformed),
            (with(json!([1])), JwsError::Malformed),
            (
                format!("{}.{}.", seg(&json!({"alg": "none"})), seg(&c)),
                JwsError::AlgNotAllowed,
            ),
            (with(json!({"alg": "nOnE"})), JwsError::AlgNotAllowed),
            (
                with(json!({"alg": "ES256", "crit": ["x"]})),
                JwsError::UnknownCrit,
            ),
            (with(json!({"alg": 1})), JwsError::BadHeader),
            (with(json!({"kid": "k"})), JwsError::BadHeader),
            (with(json!({"alg": "ES256", "kid": 1})), JwsError::BadHeader),
            (with(json!({"alg": "ES256", "typ": 1})), JwsError::BadHeader),
            (
                with(json!({"alg": "ES256", "typ": true})),
                JwsError::BadHeader,
            ),
            (
                with(json!({"alg": "ES256", "cty": {}})),
                JwsError::BadHeader,
            ),
            (with(json!({"alg": "ES256", "x5c": 1})), JwsError::BadHeader),
            (
                with(json!({"alg": "ES256", "x5c": [1]})),
                JwsError::BadHeader,
            ),
            (
                with(json!({"alg": "ES256", "x5t#S256": []})),
                JwsError::BadHeader,
            ),
            (
                with(json!({"alg": "ES256", "jku": null})),
                JwsError::BadHeader,
            ),
            (
                with(json!({"alg": "ES256", "jwk": "k"})),
                JwsError::BadHeader,
            ),
        ] {
            assert_eq!(parse(&bad).err(), Some(why), "{bad}");
        }
        assert_eq!(
            parse(&"a".repeat(MAX_TOKEN + 1)).err(),
            Some(JwsError::TooLarge)
        );
        // An algorithm we do not implement parses; the key refuses it later.
        assert_eq!(parse(&with(json!({"alg": "ES512"}))).unwrap().alg, None);
    }

    #[test]
    fn repeated_members_are_refused_in_header_and_claims() {
        let c = seg(&json!({"sub": "a"}));
        let dup_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","alg":"HS256"}"#);
        let dup_claims = URL_SAFE_NO_PAD.encode(r#"{"aud":"a","aud":"b"}"#);
        let h = seg(&json!({"alg": "ES256"}));
        for t in [
            format!("{dup_header}.{c}.c2ln"),
            format!("{h}.{dup_claims}.c2ln"),
        ] {
            assert_eq!(parse(&t).err(), Some(JwsError::Malformed), "{t}");
        }
        assert!(unverified_claims(&format!("{h}.{dup_claims}.c2ln")).is_err());
    }

    #[test]
    fn unverified_claims_ignore_the_header_and_the_size() {
        let big = "x".repeat(2 * MAX_TOKEN);
        let t = format!("e30.{}.", seg(&json!({"exp": 5, "big": big})));
        assert_eq!(unverified_claims(&t).unwrap()["exp"], 5);
        for bad in ["a.b", "a.b.c.d", "e30.W10.", "e30.e30=."] {
            assert!(unverified_claims(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_of_ones_own_applies() {
        let t = token(
            &json!({"alg": "ES256"}),
            &json!({"x": "y".repeat(MAX_TOKEN)}),
            b"s",
        );
        assert_eq!(parse(&t).err(), Some(JwsError::TooLarge));
        assert!(parse_within(&t, usize::MAX).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse(&s);
            let _ = unverified_claims(&s);
        }

        #[test]
        fn never_panics_on_three_segments(a in "[A-Za-z0-9_=+/-]{0,40}", b in "[A-Za-z0-9_=+/-]{0,40}", c in "[A-Za-z0-9_=+/-]{0,40}") {
            let _ = parse(&format!("{a}.{b}.{c}"));
        }

        /// Only the canonical encoding of a segment is accepted: no padding,
        /// no standard alphabet, no stray trailing bits.
        #[test]
        fn refuses_non_canonical_encodings(kid in "[a-z]{0,12}", sig in prop::collection::vec(any::<u8>(), 1..70), which in 0..3usize) {
            let h = json!({"alg": "ES256", "kid": kid});
            let c = json!({"sub": "a"});
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
