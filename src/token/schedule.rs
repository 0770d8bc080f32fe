//! When to refresh and when to retry: pure functions of time, tested with tables.

use std::time::Duration;

/// Longest margin kept before a token's real expiry.
pub const MAX_SKEW: Duration = Duration::from_secs(5);
/// Shortest wait between two fetches after a success, whatever lifetime the
/// server announced: a near-zero lifetime must not turn into a request flood.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Delay from issuance until a refresh starts: `refresh_at` of the lifetime,
/// moved by `jitter` ∈ [-1, 1] times 5%, never past the usable lifetime.
pub fn refresh_in(lifetime: Duration, refresh_at: f64, jitter: f64) -> Duration {
    let factor = refresh_at * (1.0 + 0.05 * jitter.clamp(-1.0, 1.0));
    lifetime
        .mul_f64(factor.clamp(0.0, 1.0))
        .min(usable(lifetime))
        .max(MIN_REFRESH)
}

/// The window a refresh may fall in: `refresh_at` of the lifetime ±5%.
pub fn refresh_window(lifetime: Duration, refresh_at: f64) -> (Duration, Duration) {
    (
        refresh_in(lifetime, refresh_at, -1.0),
        refresh_in(lifetime, refresh_at, 1.0),
    )
}

/// How long a token is sent: its lifetime less a small skew for clock
/// differences and transit (at most 5 s, at most a tenth of the lifetime).
pub fn usable(lifetime: Duration) -> Duration {
    lifetime - skew(lifetime)
}

fn skew(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_SKEW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn refresh_times() {
        // (lifetime, refresh_at, jitter, expected)
        let cases = [
            (3600.0, 0.8, 0.0, 2880.0),
            (3600.0, 0.8, 1.0, 3024.0),
            (3600.0, 0.8, -1.0, 2736.0),
            (100.0, 0.5, 0.0, 50.0),
            // never past the usable lifetime (100 - 5 s skew)
            (100.0, 0.99, 1.0, 95.0),
            // short tokens: skew is a tenth of the lifetime
            (2.0, 0.8, 0.0, 1.6),
            (2.0, 0.95, 1.0, 1.8),
            // a near-zero lifetime still waits a second
            (0.001, 0.8, 0.0, 1.0),
        ];
        for (lifetime, at, jitter, want) in cases {
            let got = refresh_in(s(lifetime), at, jitter);
            assert!(
                (got.as_secs_f64() - want).abs() < 1e-6,
                "{lifetime} {at} {jitter}: {got:?} != {want}"
            );
        }
    }

    #[test]
    fn the_window_is_five_percent_either_side() {
        assert_eq!(refresh_window(s(60.0), 0.8), (s(45.6), s(50.4)));
        assert_eq!(refresh_window(s(100.0), 0.99), (s(94.05), s(95.0)));
    }

    #[test]
    fn usable_keeps_a_margin() {
        assert_eq!(usable(s(3600.0)), s(3595.0));
        assert_eq!(usable(s(10.0)), s(9.0));
    }
}
