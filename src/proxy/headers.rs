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

/// Remove hop-by-hop headers and those named in `Connection`. An `Upgrade`
/// request or `101` answer keeps `Connection: upgrade` and `Upgrade`, which the
/// two ends need to switch protocols; `TE: trailers` is kept (gRPC needs it).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names, without hashing: which ones are present (bit i is
    // HOP_BY_HOP[i], bit 8 is Upgrade). Most messages carry none or only
    // `Connection: keep-alive`, and then nothing is allocated.
    let mut present = 0u16;
    for k in headers.keys() {
        match HOP_BY_HOP.iter().position(|h| h == k) {
            Some(i) => present |= 1 << i,
            None if k == header::UPGRADE => present |= 1 << 8,
            None => {}
        }
    }
    if present == 0 && !keep_upgrade {
        return;
    }
    // `Connection: keep-alive` (or `close`) alone, the usual value, names nothing more.
    let plain = |v: &HeaderValue| {
        let b = v.as_bytes();
        b.eq_ignore_ascii_case(b"keep-alive") || b.eq_ignore_ascii_case(b"close")
    };
    if present & 1 != 0 && !headers.get_all(header::CONNECTION).iter().all(plain) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !removed_anyway(t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(&name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0 || (name == header::TE && te_is_trailers(headers)) {
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

/// `Connection` tokens that name no header, or one removed (or kept) anyway.
fn removed_anyway(token: &str) -> bool {
    token.is_empty()
        || token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case("upgrade")
        || HOP_BY_HOP
            .iter()
            .any(|h| token.eq_ignore_ascii_case(h.as_str()))
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
