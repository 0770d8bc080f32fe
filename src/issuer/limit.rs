//! Throttling at the issuer, built so that it can never lock a legitimate
//! client out.
//!
//! [`FailureLimiter`]: failed client authentications (RFC 6749 §2.3.1) are
//! counted per client id *and* per source address, whether the client id
//! exists or not. Credentials are always checked first: correct credentials of
//! an unblocked app always succeed, however many failures came before them.
//! Once a client id (10 failures, refilled one every 6 s) or a source address
//! (30 failures, refilled one every 2 s) has used up its budget, further
//! *failures* are answered `429` with `Retry-After` after a short delay, the
//! same for known and unknown client ids. The counters live in fixed-size
//! tables indexed by a keyed hash, so invented client ids cannot grow memory; a
//! collision only ever affects how a failure is answered, never a success.
//!
//! [`RevokeLimiter`]: `POST /oauth/revoke` per app (30, refilled one every 6 s),
//! so one app cannot grow the revocation list and the state file without bound.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Failures a client id may have before its failures are refused.
pub const CLIENT_CAPACITY: f64 = 10.0;
/// One more failure allowed per client id every this long.
pub const CLIENT_REFILL: Duration = Duration::from_secs(6);
/// Failures one source address may have before its failures are refused.
pub const ADDRESS_CAPACITY: f64 = 30.0;
/// One more failure allowed per source address every this long.
pub const ADDRESS_REFILL: Duration = Duration::from_secs(2);
/// How long a throttled failure waits before it is answered (slows guessing
/// down without holding anything but a timer).
pub const THROTTLED_DELAY: Duration = Duration::from_millis(500);
/// Counters per table (a power of two).
const SLOTS: usize = 4096;
/// Revocations an app may make in a burst, and the refill.
pub const REVOKE_CAPACITY: f64 = 30.0;
pub const REVOKE_REFILL: Duration = Duration::from_secs(6);

/// A token bucket: `(tokens, last update)`; `None` is a full bucket.
type Bucket = Option<(f64, Instant)>;

fn level(b: Bucket, capacity: f64, refill: Duration) -> f64 {
    match b {
        None => capacity,
        Some((tokens, at)) => {
            (tokens + at.elapsed().as_secs_f64() / refill.as_secs_f64()).min(capacity)
        }
    }
}

/// Take one token from `b`: `Err(wait)` when it was empty (then nothing changes).
fn take(b: &mut Bucket, capacity: f64, refill: Duration) -> Result<(), Duration> {
    let now = level(*b, capacity, refill);
    if now < 1.0 {
        return Err(refill.mul_f64(1.0 - now).max(Duration::from_secs(1)));
    }
    *b = Some((now - 1.0, Instant::now()));
    Ok(())
}

/// Fixed-size tables of failure buckets.
pub struct FailureLimiter {
    hasher: RandomState,
    tables: Mutex<(Vec<Bucket>, Vec<Bucket>)>,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        FailureLimiter {
            hasher: RandomState::new(),
            tables: Mutex::new((vec![None; SLOTS], vec![None; SLOTS])),
        }
    }
}

impl FailureLimiter {
    fn slot<T: std::hash::Hash>(&self, what: u8, key: T) -> usize {
        // The low bits of a keyed SipHash: an outsider cannot aim at a slot.
        (self.hasher.hash_one((what, key)) as usize) & (SLOTS - 1)
    }

    /// Count a failed authentication naming `client_id` (known or not) from
    /// `addr`. `Some(retry_after)` when the client id or the address had already
    /// used up its budget: answer the failure with 429.
    pub fn failed(&self, client_id: &str, addr: Option<IpAddr>) -> Option<Duration> {
        let c = self.slot(0, client_id);
        let a = addr.map(|ip| self.slot(1, normalise(ip)));
        let mut t = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let by_client = take(&mut t.0[c], CLIENT_CAPACITY, CLIENT_REFILL).err();
        let by_addr = a.and_then(|a| take(&mut t.1[a], ADDRESS_CAPACITY, ADDRESS_REFILL).err());
        match (by_client, by_addr) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        }
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address; an IPv6 client
/// counts by its /64 (one host usually holds a whole /64).
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Revocations per app (authenticated callers only, so the map is bounded by
/// the number of apps).
#[derive(Default)]
pub struct RevokeLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RevokeLimiter {
    /// `Err(retry_after)` when `client_id` has revoked too much lately.
    pub fn take(&self, client_id: &str) -> Result<(), Duration> {
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if b.len() > 10_000 {
            // Full buckets carry no information.
            b.retain(|_, v| level(*v, REVOKE_CAPACITY, REVOKE_REFILL) < REVOKE_CAPACITY);
        }
        let entry = b.entry(client_id.to_owned()).or_default();
        take(entry, REVOKE_CAPACITY, REVOKE_REFILL)
    }
}

/// Refused management calls recorded in the audit log per caller: 60 in a
/// burst, then one a second (authenticated callers only, so the map is
/// bounded by the number of apps). Past that, refusals are logged, not
/// stored: one caller cannot grow the log (and load the database) at will.
#[derive(Default)]
pub struct RefusalLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

pub const REFUSAL_CAPACITY: f64 = 60.0;
pub const REFUSAL_REFILL: Duration = Duration::from_secs(1);

impl RefusalLimiter {
    /// Whether a refusal of `client_id` may be recorded now.
    pub fn take(&self, client_id: &str) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if b.len() > 10_000 {
            b.retain(|_, v| level(*v, REFUSAL_CAPACITY, REFUSAL_REFILL) < REFUSAL_CAPACITY);
        }
        let entry = b.entry(client_id.to_owned()).or_default();
        take(entry, REFUSAL_CAPACITY, REFUSAL_REFILL).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ten_failures_per_client_then_one_per_refill() {
        let l = FailureLimiter::default();
        for _ in 0..10 {
            assert!(l.failed("a", None).is_none());
        }
        let wait = l.failed("a", None).unwrap();
        assert!(
            wait <= CLIENT_REFILL && wait >= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.failed("b", None).is_none(), "per client");
        tokio::time::advance(CLIENT_REFILL).await;
        assert!(l.failed("a", None).is_none());
        assert!(l.failed("a", None).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_count_per_address_across_client_ids() {
        let l = FailureLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let throttled = (0..40)
            .filter(|i| l.failed(&format!("invented-{i}"), Some(ip)).is_some())
            .count();
        assert_eq!(throttled, 10, "30 failures per address, then 429");
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(l.failed("invented-x", Some(other)).is_none());
        // An IPv4-mapped IPv6 address is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(l.failed("invented-y", Some(mapped)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn revocations_per_app() {
        let l = RevokeLimiter::default();
        for _ in 0..30 {
            assert!(l.take("a").is_ok());
        }
        assert!(l.take("a").is_err());
        assert!(l.take("b").is_ok());
        tokio::time::advance(REVOKE_REFILL).await;
        assert!(l.take("a").is_ok());
    }
}
