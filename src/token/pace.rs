//! The pace of token requests to one token endpoint (`token_requests_per_second`):
//! every credential that names the same endpoint shares one [`Pacer`], so a
//! sidecar with 1,000 credentials starts them at the endpoint's pace instead of
//! in a burst that a rate-limited identity provider would refuse. The first
//! [`BURST`] requests go at once (a small sidecar starts as fast as before).
//!
//! A credential with requests waiting for its first token does not wait for
//! its turn ([`super::Credential::bearer`] signals demand): a request in hand
//! matters more than the pace.
//!
//! The pacer also plans refreshes ([`Pacer::plan`]): each one goes to the
//! least-booked second among a few drawn at random in its window (the
//! "power of choices"), so the refreshes of many credentials spread evenly
//! instead of keeping the rhythm in which they started.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Requests that may go at once before the pace applies.
pub const BURST: u32 = 10;

/// Seconds drawn in a refresh window; the least booked one wins.
const CHOICES: usize = 8;

/// Spaces out the token requests to one endpoint (a GCRA leaky bucket).
pub struct Pacer {
    interval: Duration,
    /// When the next request would go if the bucket were full: the
    /// "theoretical arrival time".
    tat: Mutex<Option<Instant>>,
    /// Refreshes booked, by whole second since `epoch`.
    booked: Mutex<BTreeMap<u64, u32>>,
    epoch: Instant,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.01)),
            tat: Mutex::new(None),
            booked: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
        }
    }

    /// How long until the requests already waiting for their turn have gone.
    pub fn backlog(&self, now: Instant) -> Duration {
        let tat = *self.tat.lock().unwrap_or_else(PoisonError::into_inner);
        let tolerance = self.interval * (BURST - 1);
        tat.and_then(|t| t.checked_sub(tolerance))
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// Book a refresh between `now + lo` and `now + hi`: of [`CHOICES`] times
    /// drawn by `draw` (uniform in [0, 1)), the one whose second has the
    /// fewest refreshes booked. How long from `now` it is.
    pub fn plan(
        &self,
        now: Instant,
        (lo, hi): (Duration, Duration),
        mut draw: impl FnMut() -> f64,
    ) -> Duration {
        let hi = hi.max(lo);
        let second = |d: Duration| (now + d).saturating_duration_since(self.epoch).as_secs();
        let mut booked = self.booked.lock().unwrap_or_else(PoisonError::into_inner);
        let past = second(Duration::ZERO);
        *booked = booked.split_off(&past);
        let (wait, at) = (0..CHOICES)
            .map(|_| {
                let d = lo + (hi - lo).mul_f64(draw().clamp(0.0, 1.0));
                (d, second(d))
            })
            .min_by_key(|(_, at)| booked.get(at).copied().unwrap_or(0))
            .unwrap_or((lo, second(lo)));
        *booked.entry(at).or_default() += 1;
        wait
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
    fn refreshes_go_where_fewest_are_booked() {
        let pacer = Pacer::new(50.0);
        let now = Instant::now();
        let window = (Duration::from_secs(10), Duration::from_secs(20));
        let mut seed = 7u64;
        let mut draw = move || {
            // A small LCG: repeatable, and enough for a spread.
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut per_second = [0u32; 11];
        for _ in 0..200 {
            let wait = pacer.plan(now, window, &mut draw);
            assert!(wait >= window.0 && wait <= window.1, "{wait:?}");
            let s = (now + wait)
                .saturating_duration_since(pacer.epoch)
                .as_secs() as usize;
            per_second[s.saturating_sub(10).min(10)] += 1;
        }
        // 200 refreshes over 10 seconds: about 20 each, none piled up.
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        assert!(busiest <= 26, "{per_second:?}");
        // An empty window books its one moment.
        let wait = pacer.plan(
            now,
            (Duration::from_secs(3), Duration::from_secs(3)),
            || 0.5,
        );
        assert_eq!(wait, Duration::from_secs(3));
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
