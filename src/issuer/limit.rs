//! Brute-force protection for client authentication (RFC 6749 §2.3.1): each
//! known client id has a bucket of failures (10, refilled one every 6 s). When it
//! is empty, token requests for that client are refused with 429 before the
//! secret is even checked, so guessing goes no faster than ten a minute.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

const CAPACITY: f64 = 10.0;
const REFILL: Duration = Duration::from_secs(6);

#[derive(Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl FailureLimiter {
    /// `Err(retry_after)` while `client_id` has used up its failures.
    pub fn check(&self, client_id: &str) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get(client_id) {
            Some(&(tokens, at)) if refilled(tokens, at) < 1.0 => {
                let missing = 1.0 - refilled(tokens, at);
                Err(REFILL.mul_f64(missing).max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Count a failed authentication of a known `client_id`.
    pub fn failed(&self, client_id: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = buckets
            .entry(client_id.to_owned())
            .or_insert((CAPACITY, now));
        *entry = ((refilled(entry.0, entry.1) - 1.0).max(0.0), now);
    }
}

fn refilled(tokens: f64, at: Instant) -> f64 {
    (tokens + at.elapsed().as_secs_f64() / REFILL.as_secs_f64()).min(CAPACITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ten_failures_then_one_per_refill() {
        let l = FailureLimiter::default();
        for _ in 0..10 {
            assert!(l.check("a").is_ok());
            l.failed("a");
        }
        let wait = l.check("a").unwrap_err();
        assert!(wait <= REFILL && wait >= Duration::from_secs(1), "{wait:?}");
        assert!(l.check("b").is_ok(), "per client");
        tokio::time::advance(REFILL).await;
        assert!(l.check("a").is_ok());
        l.failed("a");
        assert!(l.check("a").is_err());
    }
}
