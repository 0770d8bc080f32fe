//! Host names as routes compare them: ASCII lower case, and an IP literal in
//! its one canonical spelling. The system resolver takes `127.1`,
//! `0x7f.0.0.1`, `2130706433` and `0177.0.0.1` for 127.0.0.1 (inet_aton), and
//! an IPv4-mapped IPv6 address reaches the IPv4 host, so a route for
//! `127.0.0.1` must see all of them as itself.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `host` (without IPv6 brackets) in the form routes are keyed by.
pub fn canonical(host: &str) -> Cow<'_, str> {
    // The usual case first, without allocating: plain dotted decimal (std's
    // parser takes no other form) is already canonical.
    if host.parse::<Ipv4Addr>().is_ok() {
        return Cow::Borrowed(host);
    }
    if let Some(ip) = ip_literal(host) {
        let text = ip.to_string();
        return if text == host {
            Cow::Borrowed(host)
        } else {
            Cow::Owned(text)
        };
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The address `host` spells, in any form the resolver reads as an address
/// rather than a name. IPv4-mapped IPv6 addresses come back as IPv4.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4));
    }
    inet_aton(host).map(IpAddr::V4)
}

/// IPv4 as `inet_aton(3)` reads it: one to four parts, each decimal, octal
/// (leading `0`) or hex (`0x`); the last part fills the bytes left.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    if s.is_empty() || !s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut parts = [0u32; 4];
    let mut n = 0;
    for text in s.split('.') {
        *parts.get_mut(n)? = number(text)?;
        n += 1;
    }
    let (last, init) = parts[..n].split_last()?;
    if init.iter().any(|p| *p > 0xff) {
        return None;
    }
    let room = 8 * (4 - init.len() as u32);
    if room < 32 && *last >> room != 0 {
        return None;
    }
    let high = init
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, p)| acc | (p << (24 - 8 * i as u32)));
    Some(Ipv4Addr::from(high | last))
}

/// One inet_aton part.
fn number(text: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_are_one_host() {
        for alias in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.0.0.1",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "0177.0.0.01",
            "127.0x0.0.1",
            "::ffff:127.0.0.1",
            "::FFFF:7F00:1",
        ] {
            assert_eq!(canonical(alias), "127.0.0.1", "{alias}");
        }
        assert_eq!(canonical("0:0:0:0:0:0:0:1"), "::1");
        assert_eq!(canonical("FD00::0001"), "fd00::1");
        assert_eq!(canonical("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn names_are_lower_cased_and_nothing_more() {
        for (name, want) in [
            ("Orders.Internal", "orders.internal"),
            ("localhost", "localhost"),
            ("localhost.", "localhost."),
            ("127.0.0.1.", "127.0.0.1."),
            ("1.2.3.4.5", "1.2.3.4.5"),
            ("256.0.0.1", "256.0.0.1"),
            ("1.2.3.256", "1.2.3.256"),
            ("1.2.65536", "1.2.65536"),
            ("08.0.0.1", "08.0.0.1"),
            ("0xg.0.0.1", "0xg.0.0.1"),
            ("4294967296", "4294967296"),
            ("1..2", "1..2"),
            ("1.+2", "1.+2"),
            ("x127.0.0.1", "x127.0.0.1"),
            ("", ""),
        ] {
            assert_eq!(canonical(name), want, "{name}");
        }
    }

    #[test]
    fn the_last_part_fills_the_bytes_left() {
        assert_eq!(canonical("1.2.772"), "1.2.3.4");
        assert_eq!(canonical("1.131844"), "1.2.3.4");
        assert_eq!(canonical("4294967295"), "255.255.255.255");
        assert_eq!(canonical("0x"), "0x");
        assert_eq!(canonical("00"), "0.0.0.0");
        assert_eq!(canonical("0"), "0.0.0.0");
    }
}
