//! Request path normalisation (RFC 3986 §6.2.2), done once per request so the
//! check and the service always see the same path: percent-encoded unreserved
//! characters are decoded, other escapes get upper-case hex, `.` and `..`
//! segments are resolved (§5.2.4) and repeated `/` merged. What cannot be
//! normalised unambiguously is refused: a backslash, a control character or a
//! raw non-ASCII byte, invalid percent-encoding, a double encoding (`%25`
//! followed by two hex digits once decoded), `..` above the root, and, unless
//! the policy says otherwise, an encoded `/` or `\` and `;` path parameters
//! (an encoded `%3B` always).
//!
//! The common path (nothing to decode, no dot segment, no `//`) is checked in
//! one pass over the bytes and borrowed, not copied.

use std::borrow::Cow;

/// What to do with `%2F` and `%5C` (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Refuse the request (400).
    #[default]
    Reject,
    /// Decode them to `/` (both): they separate segments like a literal `/`.
    Unescape,
    /// Keep them encoded: a segment's data, never a separator, forwarded as `%2F`.
    Keep,
}

/// What to do with `;` path parameters (`/admin;x/`, Tomcat's `..;`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Refuse the request (400), `%3B` included.
    #[default]
    Reject,
    /// Drop each segment's `;…` before anything else (as Tomcat and Spring
    /// read it); an encoded `%3B` is still refused (ambiguous).
    Strip,
}

/// The two configurable parts of the normalisation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub path_parameters: PathParameters,
}

/// Why a path cannot be normalised unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("an encoded / or \\ in the path")]
    EncodedSlash,
    #[error("a double percent-encoding in the path")]
    DoubleEncoding,
    #[error("a backslash in the path")]
    Backslash,
    #[error("a control character in the path")]
    ControlCharacter,
    #[error("a raw non-ASCII byte in the path")]
    NonAscii,
    #[error("invalid percent-encoding in the path")]
    InvalidEscape,
    #[error("percent-encoded bytes in the path that are not UTF-8")]
    NotUtf8,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("path parameters (;) are not allowed")]
    PathParameter,
}

/// `path` in normal form, or why it has none. Borrowed when already normal.
pub fn normalize(path: &str, policy: PathPolicy) -> Result<Cow<'_, str>, BadPath> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(BadPath::NotAbsolute);
    }
    if is_plain(b) {
        return Ok(Cow::Borrowed(path));
    }
    normalize_slow(path, policy).map(Cow::Owned)
}

/// Whether `b` (starting with `/`) is already normal and needs no copy: no
/// `%`, `;` or `\`, nothing outside visible ASCII, no empty segment before
/// the last and no segment starting with `.` (a dot-file goes the slow way).
fn is_plain(b: &[u8]) -> bool {
    let mut prev = b'/';
    for &c in &b[1..] {
        match c {
            b'%' | b';' | b'\\' | 0..=0x20 | 0x7f.. => return false,
            b'/' | b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = c;
    }
    true
}

fn normalize_slow(path: &str, policy: PathPolicy) -> Result<String, BadPath> {
    let b = path.as_bytes();
    // Decode into segments; `segments[i]` holds segment i in normal form.
    let mut segments: Vec<String> = Vec::new();
    let mut cur = String::with_capacity(b.len());
    // The encoded non-ASCII bytes of the current segment, which must be UTF-8
    // (an overlong `%C0%AF` is a `/` to some decoders).
    let mut high: Vec<u8> = Vec::new();
    let mut i = 1;
    // Whether the current segment's `;` parameters are being skipped (Strip).
    let mut in_params = false;
    while i < b.len() {
        let c = b[i];
        i += 1;
        match c {
            b'/' => {
                utf8(&mut high)?;
                segments.push(std::mem::take(&mut cur));
                in_params = false;
                continue;
            }
            _ if in_params => {
                // Still checked: parameters are dropped, not a hiding place.
                if c == b'\\' {
                    return Err(BadPath::Backslash);
                }
                check_raw(c)?;
                if c == b'%' && matches!(decode_escape(b, &mut i)?, 0..=0x1f | 0x7f) {
                    return Err(BadPath::ControlCharacter);
                }
                continue;
            }
            b'\\' => return Err(BadPath::Backslash),
            b';' => match policy.path_parameters {
                PathParameters::Reject => return Err(BadPath::PathParameter),
                PathParameters::Strip => in_params = true,
            },
            b'%' => {
                let d = decode_escape(b, &mut i)?;
                if d >= 0x80 {
                    high.push(d);
                } else {
                    utf8(&mut high)?;
                }
                match d {
                    _ if is_unreserved(d) => cur.push(char::from(d)),
                    b'/' | b'\\' => match policy.escaped_slashes {
                        EscapedSlashes::Reject => return Err(BadPath::EncodedSlash),
                        EscapedSlashes::Unescape => {
                            segments.push(std::mem::take(&mut cur));
                        }
                        EscapedSlashes::Keep => push_escape(&mut cur, d),
                    },
                    0..=0x1f | 0x7f => return Err(BadPath::ControlCharacter),
                    // Data to some servers, a parameter to those that decode
                    // before they strip: ambiguous, whatever the policy.
                    b';' => return Err(BadPath::PathParameter),
                    _ => push_escape(&mut cur, d),
                }
            }
            _ => {
                check_raw(c)?;
                utf8(&mut high)?;
                cur.push(char::from(c));
            }
        }
    }
    utf8(&mut high)?;
    segments.push(cur);
    for s in &segments {
        if has_double_encoding(s) {
            return Err(BadPath::DoubleEncoding);
        }
    }
    // remove_dot_segments (RFC 3986 §5.2.4) with empty segments merged; the
    // result ends with `/` when the input's last segment was empty or a dot one.
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing = false;
    for (n, s) in segments.iter().enumerate() {
        match s.as_str() {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(BadPath::AboveRoot);
                }
            }
            s => out.push(s),
        }
        if n == last {
            trailing = matches!(s.as_str(), "" | "." | "..");
        }
    }
    let mut normal = String::with_capacity(path.len());
    for s in &out {
        normal.push('/');
        normal.push_str(s);
    }
    if trailing || out.is_empty() {
        normal.push('/');
    }
    Ok(normal)
}

/// The run of encoded non-ASCII bytes just ended: it must be UTF-8.
fn utf8(high: &mut Vec<u8>) -> Result<(), BadPath> {
    if !high.is_empty() {
        std::str::from_utf8(high).map_err(|_| BadPath::NotUtf8)?;
        high.clear();
    }
    Ok(())
}

/// A raw byte that may stand in a path as it is (visible ASCII).
fn check_raw(c: u8) -> Result<(), BadPath> {
    match c {
        0..=0x20 | 0x7f => Err(BadPath::ControlCharacter),
        0x80.. => Err(BadPath::NonAscii),
        _ => Ok(()),
    }
}

/// The byte a `%XX` (the `%` just read, `XX` at `*i`) encodes; advances `*i`.
fn decode_escape(b: &[u8], i: &mut usize) -> Result<u8, BadPath> {
    let hex = |c: u8| (c as char).to_digit(16);
    let (Some(h), Some(l)) = (
        b.get(*i).copied().and_then(hex),
        b.get(*i + 1).copied().and_then(hex),
    ) else {
        return Err(BadPath::InvalidEscape);
    };
    *i += 2;
    Ok((h * 16 + l) as u8)
}

fn push_escape(out: &mut String, d: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(d >> 4)]));
    out.push(char::from(HEX[usize::from(d & 15)]));
}

/// RFC 3986 §2.3.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// `%25` followed by two hex digits in a decoded segment: decoding it again
/// (as some servers do) would give another path than the one checked.
fn has_double_encoding(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(5)
        .any(|w| w[..3] == *b"%25" && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, BadPath> {
        normalize(p, PathPolicy::default()).map(Cow::into_owned)
    }

    #[test]
    fn normal_forms() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a", "/a"),
            ("/a//b", "/a/b"),
            ("/a///", "/a/"),
            ("/./a", "/a"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/public/../admin/x", "/admin/x"),
            ("/public/%2e%2e/admin/x", "/admin/x"),
            ("/public/%2E./admin/x", "/admin/x"),
            ("/%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%7e%5f%2d", "/~_-"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%25zz", "/a%25zz"),
            ("/a%20b", "/a%20b"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a..b/...", "/a..b/..."),
            ("/a/..", "/"),
        ] {
            assert_eq!(n(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refusals() {
        for (input, want) in [
            ("a", BadPath::NotAbsolute),
            ("*", BadPath::NotAbsolute),
            ("/a%2fb", BadPath::EncodedSlash),
            ("/a%2Fb", BadPath::EncodedSlash),
            ("/a%5cb", BadPath::EncodedSlash),
            ("/a\\b", BadPath::Backslash),
            ("/a%00", BadPath::ControlCharacter),
            ("/a%0d%0a", BadPath::ControlCharacter),
            ("/a%7f", BadPath::ControlCharacter),
            ("/a\u{7f}", BadPath::ControlCharacter),
            ("/caf\u{e9}", BadPath::NonAscii),
            ("/a%", BadPath::InvalidEscape),
            ("/a%2", BadPath::InvalidEscape),
            ("/a%zz", BadPath::InvalidEscape),
            ("/a%u0041", BadPath::InvalidEscape),
            ("/..%c0%af", BadPath::NotUtf8),
            ("/%c0%ae%c0%ae/", BadPath::NotUtf8),
            ("/a%ff", BadPath::NotUtf8),
            ("/a%c3", BadPath::NotUtf8),
            ("/a%c3x", BadPath::NotUtf8),
            ("/a%252e", BadPath::DoubleEncoding),
            ("/a%25%32%65", BadPath::DoubleEncoding),
            ("/a%2541", BadPath::DoubleEncoding),
            ("/..", BadPath::AboveRoot),
            ("/a/../..", BadPath::AboveRoot),
            ("/%2e%2e/a", BadPath::AboveRoot),
            ("/admin;x/", BadPath::PathParameter),
            ("/..;/admin", BadPath::PathParameter),
            ("/admin%3bx", BadPath::PathParameter),
        ] {
            assert_eq!(n(input), Err(want), "{input}");
        }
    }

    #[test]
    fn policies() {
        let p = |s, q| PathPolicy {
            escaped_slashes: s,
            path_parameters: q,
        };
        let unescape = p(EscapedSlashes::Unescape, PathParameters::Reject);
        let keep = p(EscapedSlashes::Keep, PathParameters::Reject);
        let strip = p(EscapedSlashes::Reject, PathParameters::Strip);
        let go = |path, pol| normalize(path, pol).map(Cow::into_owned);
        assert_eq!(go("/a%2fb", unescape).as_deref(), Ok("/a/b"));
        assert_eq!(go("/public/..%2fadmin", unescape).as_deref(), Ok("/admin"));
        assert_eq!(go("/a%5Cb", unescape).as_deref(), Ok("/a/b"));
        assert_eq!(go("/a%2fb", keep).as_deref(), Ok("/a%2Fb"));
        assert_eq!(go("/a/..%2f", keep).as_deref(), Ok("/a/..%2F"));
        assert_eq!(go("/admin;x/y", strip).as_deref(), Ok("/admin/y"));
        assert_eq!(go("/a/..;x/admin", strip).as_deref(), Ok("/admin"));
        assert_eq!(go("/a%3bx", strip), Err(BadPath::PathParameter));
        assert_eq!(go("/a;%00", strip), Err(BadPath::ControlCharacter));
        assert_eq!(go("/a;\\", strip), Err(BadPath::Backslash));
        assert_eq!(go("/a;%zz", strip), Err(BadPath::InvalidEscape));
    }

    #[test]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/orders/42", "/a/b/", "/a.b/c..d"] {
            assert!(
                matches!(normalize(p, PathPolicy::default()), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// RFC 3986 §5.2.4, step by step on a string buffer (the reference).
        fn remove_dot_segments(input: &str) -> String {
            let mut input = input.to_owned();
            let mut output = String::new();
            while !input.is_empty() {
                if let Some(rest) = input.strip_prefix("../") {
                    input = rest.to_owned();
                } else if let Some(rest) = input.strip_prefix("./") {
                    input = rest.to_owned();
                } else if input.starts_with("/./") {
                    input = input[2..].to_owned();
                } else if input == "/." {
                    input = "/".to_owned();
                } else if input.starts_with("/../") || input == "/.." {
                    input = if input == "/.." {
                        "/".to_owned()
                    } else {
                        input[3..].to_owned()
                    };
                    match output.rfind('/') {
                        Some(i) => output.truncate(i),
                        None => output.clear(),
                    }
                } else if input == "." || input == ".." {
                    input.clear();
                } else {
                    let start = usize::from(input.starts_with('/'));
                    let end = input[start..].find('/').map_or(input.len(), |i| i + start);
                    output.push_str(&input[..end]);
                    input = input[end..].to_owned();
                }
            }
            output
        }

        /// Whether resolving `p`'s dot segments ever climbs above the root.
        fn climbs(p: &str) -> bool {
            let mut depth = 0i32;
            for s in p.split('/').skip(1) {
                match s {
                    ".." if depth == 0 => return true,
                    ".." => depth -= 1,
                    "." | "" => {}
                    _ => depth += 1,
                }
            }
            false
        }

        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("a".to_owned()),
                Just("b".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("a.".to_owned()),
                Just("..b".to_owned()),
                Just("...".to_owned()),
            ]
        }

        /// Paths without empty segments (RFC 3986 keeps `//`, we merge it),
        /// maybe with a trailing `/`.
        fn dotted_path() -> impl Strategy<Value = String> {
            (prop::collection::vec(segment(), 0..8), any::<bool>()).prop_map(|(segs, slash)| {
                let mut p = format!("/{}", segs.join("/"));
                if slash && !p.ends_with('/') {
                    p.push('/');
                }
                p
            })
        }

        /// Arbitrary path-ish strings, weighted towards what matters.
        fn hostile_path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just(";".to_owned()),
                Just("\\".to_owned()),
                Just("%".to_owned()),
                Just("%2e".to_owned()),
                Just("%2E".to_owned()),
                Just("%2f".to_owned()),
                Just("%5c".to_owned()),
                Just("%25".to_owned()),
                Just("%3b".to_owned()),
                Just("%00".to_owned()),
                Just("%c3%a9".to_owned()),
                Just("%c0%af".to_owned()),
                Just("%41".to_owned()),
                "[a-zA-Z0-9]{1,3}",
                any::<char>().prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
        }

        fn policy() -> impl Strategy<Value = PathPolicy> {
            (0..3u8, any::<bool>()).prop_map(|(s, p)| PathPolicy {
                escaped_slashes: [
                    EscapedSlashes::Reject,
                    EscapedSlashes::Unescape,
                    EscapedSlashes::Keep,
                ][usize::from(s)],
                path_parameters: if p {
                    PathParameters::Strip
                } else {
                    PathParameters::Reject
                },
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn agrees_with_remove_dot_segments(p in dotted_path()) {
                match normalize(&p, PathPolicy::default()) {
                    Ok(n) => {
                        prop_assert!(!climbs(&p));
                        let want = remove_dot_segments(&p);
                        prop_assert_eq!(n.as_ref(), want.as_str());
                    }
                    Err(e) => {
                        prop_assert_eq!(e, BadPath::AboveRoot);
                        prop_assert!(climbs(&p));
                    }
                }
            }

            #[test]
            fn idempotent_and_without_dot_segments(p in hostile_path(), pol in policy()) {
                if let Ok(n) = normalize(&p, pol) {
                    prop_assert!(n.starts_with('/'));
                    for s in n.split('/').skip(1) {
                        prop_assert!(s != ".." && s != ".", "{:?} from {:?}", n, p);
                    }
                    let n_slash_free_middle = n.trim_end_matches('/');
                    prop_assert!(!n_slash_free_middle.contains("//"), "{:?}", n);
                    prop_assert!(!n.contains('\\') && n.bytes().all(|b| (0x21..=0x7e).contains(&b)));
                    let again = normalize(&n, pol);
                    prop_assert_eq!(again.as_deref(), Ok(n.as_ref()));
                    prop_assert!(matches!(again, Ok(Cow::Borrowed(_))) || n.contains('%') || n.contains(';') || n.contains("/."));
                }
            }

            #[test]
            fn encoding_an_unreserved_character_changes_nothing(p in dotted_path(), at in any::<prop::sample::Index>()) {
                let chars: Vec<(usize, char)> = p.char_indices().filter(|(_, c)| *c != '/').collect();
                prop_assume!(!chars.is_empty());
                let (i, c) = chars[at.index(chars.len())];
                let encoded = format!("{}%{:02X}{}", &p[..i], c as u32, &p[i + c.len_utf8()..]);
                let plain = normalize(&p, PathPolicy::default()).map(Cow::into_owned);
                let other = normalize(&encoded, PathPolicy::default()).map(Cow::into_owned);
                prop_assert_eq!(plain, other);
            }
        }
    }
}
