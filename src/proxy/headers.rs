//! Hop-by-hop header handling (RFC 9110 §7.6.1): what a proxy must not forward.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that only concern one connection, plus `Proxy-Authorization`, which
/// is meant for us and must never travel on.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The lengths of the names in [`HOP_BY_HOP`] and of `Upgrade` (bit n: n bytes):
/// most names are ruled out by their length alone, without comparing.
const HOP_LENGTHS: u32 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 19;

/// Which hop-by-hop headers a message carries, found in one pass over its names
/// without hashing: bit i is `HOP_BY_HOP[i]`, bit 8 is `Upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopByHop(u16);

impl HopByHop {
    pub fn scan(headers: &HeaderMap) -> Self {
        let mut present = 0u16;
        for k in headers.keys() {
            let n = k.as_str().len();
            if n >= 32 || HOP_LENGTHS & (1 << n) == 0 {
                continue;
            }
            match HOP_BY_HOP.iter().position(|h| h == k) {
                Some(i) => present |= 1 << i,
                None if k == header::UPGRADE => present |= 1 << 8,
                None => {}
            }
        }
        HopByHop(present)
    }

    /// Whether the message asks to switch protocols (WebSocket and the like):
    /// [`wants_upgrade`], answered without a lookup when it has no `Upgrade`.
    pub fn wants_upgrade(self, headers: &HeaderMap) -> bool {
        self.0 & (1 << 8) != 0 && self.0 & 1 != 0 && wants_upgrade(headers)
    }
}

/// Remove hop-by-hop headers and those named in `Connection`, and a
/// `Content-Length` that came with `Transfer-Encoding`. An `Upgrade`
/// request or `101` answer keeps `Connection: upgrade` and `Upgrade`, which the
/// two ends need to switch protocols; `TE: trailers` is kept (gRPC needs it).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    remove_found(headers, HopByHop::scan(headers), keep_upgrade);
}

/// [`remove_hop_by_hop`] with the headers' scan already made (`found`; a
/// header it names that is gone since is no matter).
pub fn remove_found(headers: &mut HeaderMap, found: HopByHop, keep_upgrade: bool) {
    let mut present = found.0;
    // Most messages carry none or only `Connection: keep-alive`, and then
    // nothing is allocated.
    if present == 0 && !keep_upgrade {
        return;
    }
    // `Connection: keep-alive` (or `close`) alone, the usual value, names nothing
    // more: then it goes with one lookup.
    let plain = |v: &HeaderValue| {
        let b = v.as_bytes();
        // The exact spelling first: one comparison, no case folding.
        b == b"keep-alive"
            || b.eq_ignore_ascii_case(b"keep-alive")
            || b.eq_ignore_ascii_case(b"close")
    };
    if present & 1 != 0
        && let header::Entry::Occupied(connection) = headers.entry(header::CONNECTION)
    {
        present &= !1;
        if connection.iter().all(plain) {
            connection.remove();
        } else {
            let named: Vec<HeaderName> = connection
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| !removed_anyway(t))
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            connection.remove();
            for name in named {
                headers.remove(&name);
            }
        }
    }
    // Both framings (RFC 9112 §6.3): the body is chunked, so a
    // `Content-Length` beside `Transfer-Encoding` is wrong (bit 7).
    if present & (1 << 7) != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
    // Only the names found (usually none left by now).
    let mut left = present & 0xff;
    while left != 0 {
        let i = left.trailing_zeros() as usize;
        left &= left - 1;
        let name = &HOP_BY_HOP[i];
        if name == header::TE && te_is_trailers(headers) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & (1 << 8) != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// `Connection` tokens that name no header, one removed (or kept) anyway, or
/// one a client may never nominate: `Authorization` (the token checked or
/// injected), `Host`, and the sidecar's own `x-m2m-*` identity headers.
fn removed_anyway(token: &str) -> bool {
    token.is_empty()
        || token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case("upgrade")
        || token.eq_ignore_ascii_case("authorization")
        || token.eq_ignore_ascii_case("host")
        || is_m2m_name(token)
        || HOP_BY_HOP
            .iter()
            .any(|h| token.eq_ignore_ascii_case(h.as_str()))
}

/// A header name in the sidecar's `x-m2m-` space, however spelled: any case,
/// `_` for `-` (WSGI and CGI servers fold the two together).
pub fn is_m2m_name(name: &str) -> bool {
    name.get(..6).is_some_and(|head| same_name(head, "x-m2m-"))
}

/// `name` is `word` (lower-case) in any case, with `_` for any `-`.
fn same_name(name: &str, word: &str) -> bool {
    name.len() == word.len()
        && name
            .bytes()
            .zip(word.bytes())
            .all(|(c, w)| c.to_ascii_lowercase() == w || (w == b'-' && c == b'_'))
}

/// Headers that some servers let override the request path (IIS URL
/// Rewrite, Symfony, Zend) or method (Express method-override, Symfony,
/// ASP.NET): a way around the path and method the rules checked.
fn is_path_override(name: &str) -> bool {
    const OVERRIDES: [&str; 5] = [
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    name.len() > 12 && OVERRIDES.iter().any(|w| same_name(name, w))
}

/// What inbound never lets through from a client: every `x-m2m-*` header
/// (and underscore variants), and the path-override headers.
fn reserved(name: &str) -> bool {
    // Every reserved name starts with `x` (header names arrive lower-case).
    name.as_bytes()
        .first()
        .is_some_and(|c| c.eq_ignore_ascii_case(&b'x'))
        && (is_m2m_name(name) || is_path_override(name))
}

/// Remove the reserved headers ([`reserved`]) a client sent; whether the
/// request has a `Connection` header (found by the same scan).
pub fn remove_reserved(headers: &mut HeaderMap) -> bool {
    // Most requests carry none: one scan without allocating.
    let (mut any, mut connection) = (false, false);
    for k in headers.keys() {
        any |= reserved(k.as_str());
        connection |= k == header::CONNECTION;
    }
    if any {
        remove_all(headers, reserved);
    }
    connection
}

/// Remove every header whose name `unwanted` picks.
fn remove_all(headers: &mut HeaderMap, unwanted: fn(&str) -> bool) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| unwanted(k.as_str()))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Remove every `x-m2m-*` header (any case, `_` for `-`): an app cannot speak
/// for the sidecar to an upstream that trusts them.
pub fn remove_m2m(headers: &mut HeaderMap) {
    // Most requests carry none: one scan without allocating.
    if headers.keys().any(|k| is_m2m_name(k.as_str())) {
        remove_all(headers, is_m2m_name);
    }
}

/// The protocols an `Upgrade` header names, lower-case, without versions'
/// case changed (`websocket`, `h2c`, `foo/2`).
pub fn upgrade_protocols(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::UPGRADE)
        .iter()
        // A value that is not text names no protocol anyone may allow.
        .flat_map(|v| v.to_str().unwrap_or("(not text)").split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

fn te_is_trailers(headers: &HeaderMap) -> bool {
    headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
}

/// Whether a request asks to switch protocols (WebSocket and the like).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_standard_and_named() {
        let mut h = map(&[
            ("connection", "close, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic abc"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn connection_cannot_nominate_protected_headers() {
        let mut h = map(&[
            (
                "connection",
                "authorization, Host, x-m2m-client-id, X-M2M-Scopes, x_m2m_subject, x-other",
            ),
            ("authorization", "Bearer t"),
            ("host", "svc"),
            ("x-m2m-client-id", "a"),
            ("x-m2m-scopes", "s"),
            ("x-m2m-subject", "b"),
            ("x-other", "1"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "authorization",
                "host",
                "x-m2m-client-id",
                "x-m2m-scopes",
                "x-m2m-subject"
            ]
        );
    }

    #[test]
    fn m2m_names_in_every_spelling() {
        for n in [
            "x-m2m-client-id",
            "X_M2M_CLIENT_ID",
            "x_m2m-scopes",
            "x-m2m_anything",
        ] {
            assert!(is_m2m_name(n), "{n}");
        }
        for n in ["x-m2m", "x-m2mx-a", "xm2m-a", "authorization"] {
            assert!(!is_m2m_name(n), "{n}");
        }
        let mut h = map(&[
            ("x_m2m_client_id", "admin"),
            ("x-keep", "1"),
            ("X-M2M-Scopes", "a"),
            ("x-original-url", "/admin"),
            ("X_Rewrite_URL", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("X_HTTP_Method", "DELETE"),
            ("x-method-override", "DELETE"),
        ]);
        remove_reserved(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn scan_finds_every_hop_by_hop_name_and_no_other() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-other", HeaderValue::from_static("y"));
            assert_eq!(HopByHop::scan(&h), HopByHop(1 << i), "{name}");
        }
        let h = map(&[("UPGRADE", "websocket"), ("Connection", "upgrade")]);
        assert_eq!(HopByHop::scan(&h), HopByHop(1 | 1 << 8));
        assert!(HopByHop::scan(&h).wants_upgrade(&h));
        let h = map(&[
            ("user-agent", "x"),
            ("upgrade-insecure-requests", "1"),
            ("content-length", "1"),
            ("tee", "1"),
            ("trailers", "1"),
            ("x-connection", "1"),
        ]);
        assert_eq!(HopByHop::scan(&h), HopByHop(0));
        assert!(!HopByHop::scan(&h).wants_upgrade(&h));
    }

    #[test]
    fn keeps_te_trailers_and_upgrade() {
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(wants_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }
}
