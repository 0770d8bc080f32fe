//! The `Authorization` header schemes OAuth uses: `Basic` client credentials
//! (RFC 6749 §2.3.1) and `Bearer` tokens (RFC 6750 §2.1). Schemes are matched
//! case-insensitively (RFC 9110 §11.1); one parser for the whole crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
pub fn basic(client_id: &str, secret: &str) -> String {
    format!("Basic {}", basic_credentials(client_id, secret))
}

/// The base64 part of [`basic`] (what a redactor must look for too).
pub fn basic_credentials(client_id: &str, secret: &str) -> String {
    STANDARD.encode(format!(
        "{}:{}",
        form_encode(client_id),
        form_encode(secret)
    ))
}

/// The value after `scheme` in an `Authorization` header, the scheme matched
/// case-insensitively (RFC 9110 §11.1) and followed by one or more spaces.
pub fn credentials_after<'v>(value: &'v [u8], scheme: &str) -> Option<&'v [u8]> {
    let n = scheme.len();
    let (head, rest) = (value.get(..n)?, value.get(n..)?);
    if !head.eq_ignore_ascii_case(scheme.as_bytes()) || rest.first() != Some(&b' ') {
        return None;
    }
    let rest = rest.trim_ascii();
    (!rest.is_empty()).then_some(rest)
}

/// The token of a `Bearer` header value, surrounding spaces trimmed; `None`
/// for another scheme, an empty token or bytes outside ASCII. `value` is a
/// header value, which holds no control bytes but tab; this runs on every
/// inbound request, so it is one word-at-a-time ASCII check, no per-byte loop.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let token = credentials_after(value, "Bearer")?;
    if !token.is_ascii() {
        return None;
    }
    std::str::from_utf8(token).ok()
}

/// The `(client_id, secret)` of a `Basic` header value, each form-decoded.
pub fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let b64 = credentials_after(value, "Basic")?;
    let decoded = STANDARD.decode(b64).ok()?;
    let pair = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = pair.split_once(':')?;
    let unform = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unform(id), unform(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_trimmed() {
        let cases: [(&[u8], Option<&str>); 9] = [
            (b"Bearer abc", Some("abc")),
            (b"bearer abc", Some("abc")),
            (b"BEARER  abc ", Some("abc")),
            (b"Bearer", None),
            (b"Bearer ", None),
            (b"Bearerx abc", None),
            (b"Bearer\tabc", None),
            (b"Basic abc", None),
            (b"Bearer \xc3\xa9", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer(value), want, "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn basic_round_trips_through_form_encoding() {
        let header = basic("app:1", "s3cr%t ü");
        assert_eq!(
            parse_basic(header.as_bytes()),
            Some(("app:1".to_owned(), "s3cr%t ü".to_owned()))
        );
        assert_eq!(parse_basic(b"basic !!"), None);
    }
}
