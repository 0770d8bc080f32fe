//! Retry timing: exponential backoff with jitter, honouring `Retry-After`.
//! Used by the credential manager and the inbound key fetcher.

use std::time::Duration;

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest delay between retries.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured (a server asking for more gets this).
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Delay before retry number `failures` (1 = the first retry): 1 s doubling to
/// 60 s, moved by `jitter` ∈ [-1, 1] times 20%, capped at 60 s; a `Retry-After`
/// longer than that wins (up to ten minutes).
pub fn backoff(failures: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_CAP);
    let jittered = base
        .mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
        .min(BACKOFF_CAP);
    match retry_after {
        Some(ra) => jittered.max(ra.min(RETRY_AFTER_CAP)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn backoff_grows_and_caps() {
        let cases = [
            (1, 0.0, None, 1.0),
            (2, 0.0, None, 2.0),
            (3, 0.0, None, 4.0),
            (6, 0.0, None, 32.0),
            (7, 0.0, None, 60.0),
            (50, 0.0, None, 60.0),
            (1, 1.0, None, 1.2),
            (1, -1.0, None, 0.8),
            (7, 1.0, None, 60.0),
            (1, 0.0, Some(5.0), 5.0),
            (6, 0.0, Some(5.0), 32.0),
            (1, 0.0, Some(7200.0), 600.0),
        ];
        for (failures, jitter, ra, want) in cases {
            let got = backoff(failures, jitter, ra.map(s));
            assert!(
                (got.as_secs_f64() - want).abs() < 1e-6,
                "{failures} {jitter} {ra:?}: {got:?} != {want}"
            );
        }
    }
}
