//! The pace of token requests to one token endpoint (`token_requests_per_second`):
//! every credential that names the same endpoint shares one [`Pacer`], so a
//! sidecar with 1,000 credentials starts them at the endpoint's pace instead of
//! in a burst that a rate-limited identity provider would refuse. The first
//! [`BURST`] requests go at once (a small sidecar starts as fast as before).
//!
//! A credential with requests waiting for its first token does not wait for
//! its turn ([`super::Credential::bearer`] signals demand): a request in hand
//! matters more than the pace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Requests that may go at once before the pace applies.
pub const BURST: u32 = 10;

/// Spaces out the token requests to one endpoint (a GCRA leaky bucket).
pub struct Pacer {
    interval: Duration,
    /// When the next request would go if the bucket were full: the
    /// "theoretical arrival time".
    tat: Mutex<Option<Instant>>,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.01)),
            tat: Mutex::new(None),
        }
    }

    /// Take the next turn: when this request may go (`now`, or later).
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut tat = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
        turn(&mut tat, now, self.interval)
    }
}

/// The GCRA step: a request may go once `tat - (BURST - 1) · interval` has
/// passed; each request moves `tat` on by one interval.
fn turn(tat: &mut Option<Instant>, now: Instant, interval: Duration) -> Instant {
    let current = tat.unwrap_or(now).max(now);
    let tolerance = interval * (BURST - 1);
    let at = current.checked_sub(tolerance).map_or(now, |t| t.max(now));
    *tat = Some(current + interval);
    at
}

type Pacers = Mutex<HashMap<(String, u64), Weak<Pacer>>>;

/// The pacer for `endpoint` at `per_second`: one per pair in the process,
/// held by the fetchers of the credentials that share it.
pub fn for_endpoint(endpoint: &str, per_second: f64) -> Arc<Pacer> {
    static PACERS: OnceLock<Pacers> = OnceLock::new();
    let mut map = PACERS
        .get_or_init(Pacers::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, p| p.strong_count() > 0);
    let key = (endpoint.to_owned(), per_second.to_bits());
    match map.get(&key).and_then(Weak::upgrade) {
        Some(p) => p,
        None => {
            let p = Arc::new(Pacer::new(per_second));
            map.insert(key, Arc::downgrade(&p));
            p
        }
    }
}

/// How many credentials share `pacer`'s endpoint.
pub fn sharers(pacer: &Arc<Pacer>) -> usize {
    Arc::strong_count(pacer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_pace() {
        let start = Instant::now();
        let interval = Duration::from_millis(20);
        let mut tat = None;
        let turns: Vec<Duration> = (0..15)
            .map(|_| turn(&mut tat, start, interval) - start)
            .collect();
        for (i, t) in turns.iter().enumerate() {
            let want = interval * (i as u32).saturating_sub(BURST - 1);
            assert_eq!(*t, want, "request {i}");
        }
        // After a quiet spell the bucket is full again.
        let later = start + Duration::from_secs(10);
        for _ in 0..BURST {
            assert_eq!(turn(&mut tat, later, interval), later);
        }
        assert_eq!(turn(&mut tat, later, interval), later + interval);
    }

    #[test]
    fn a_steady_rate_below_the_pace_never_waits() {
        let start = Instant::now();
        let interval = Duration::from_millis(20);
        let mut tat = None;
        for i in 0..100u32 {
            let now = start + Duration::from_millis(25) * i;
            assert_eq!(turn(&mut tat, now, interval), now, "request {i}");
        }
    }

    #[test]
    fn one_pacer_per_endpoint_and_rate() {
        let a = for_endpoint("http://pace-test.example/token", 5.0);
        assert_eq!(sharers(&a), 1);
        let b = for_endpoint("http://pace-test.example/token", 5.0);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(sharers(&a), 2);
        let c = for_endpoint("http://pace-test.example/token", 6.0);
        assert!(!Arc::ptr_eq(&a, &c));
        let d = for_endpoint("http://other.example/token", 5.0);
        assert!(!Arc::ptr_eq(&a, &d));
        drop((a, b));
        let e = for_endpoint("http://pace-test.example/token", 5.0);
        assert_eq!(sharers(&e), 1, "a pacer nobody uses is forgotten");
    }
}
