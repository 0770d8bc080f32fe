//! The pace of token requests to one token endpoint (`token_requests_per_second`):
//! every credential that names the same endpoint shares one [`Pacer`], so a
//! sidecar with 1,000 credentials starts them at the endpoint's pace instead of
//! in a burst that a rate-limited identity provider would refuse. The first
//! [`BURST`] requests go at once (a small sidecar starts as fast as before).
//!
//! Requests wait in one line per endpoint ([`Ticket`]). A credential with
//! requests waiting for its token moves to the front of the line
//! ([`Ticket::hurry`], signalled by [`super::Credential::bearer`]) but still
//! takes a turn, so an app that calls every credential at start does not bring
//! the burst back.
//!
//! The pacer also plans refreshes ([`Pacer::plan`]): each one goes to the
//! least-booked second among a few drawn at random in its window (the
//! "power of choices"), so the refreshes of many credentials spread evenly
//! instead of keeping the rhythm in which they started.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Requests that may go at once before the pace applies.
pub const BURST: u32 = 10;

/// Seconds drawn in a refresh window; the least booked one wins.
const CHOICES: usize = 8;

/// Spaces out the token requests to one endpoint (a GCRA leaky bucket and
/// the line of requests waiting for it).
pub struct Pacer {
    interval: Duration,
    line: Mutex<Line>,
    /// Refreshes booked, by whole second since `epoch`.
    booked: Mutex<BTreeMap<u64, u32>>,
    epoch: Instant,
}

/// The requests waiting for their turn, urgent ones first.
#[derive(Default)]
struct Line {
    /// When the next request would go if the bucket were full: the
    /// "theoretical arrival time".
    tat: Option<Instant>,
    waiting: VecDeque<Place>,
    /// How many at the front of `waiting` are urgent.
    urgent: usize,
    next_id: u64,
}

struct Place {
    id: u64,
    wake: Arc<Notify>,
}

impl Line {
    fn position(&self, id: u64) -> Option<usize> {
        self.waiting.iter().position(|p| p.id == id)
    }

    /// Take `id` out of the line; the one now at the front hears of it.
    fn remove(&mut self, id: u64) {
        if let Some(i) = self.position(id) {
            self.waiting.remove(i);
            if i < self.urgent {
                self.urgent -= 1;
            }
            if i == 0
                && let Some(front) = self.waiting.front()
            {
                front.wake.notify_one();
            }
        }
    }
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.01)),
            line: Mutex::new(Line::default()),
            booked: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
        }
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long until the requests already waiting for their turn have gone.
    pub fn backlog(&self, now: Instant) -> Duration {
        let line = self.line();
        let bucket = ready_at(line.tat, now, self.interval).saturating_duration_since(now);
        let waiting = u32::try_from(line.waiting.len()).unwrap_or(u32::MAX);
        bucket + self.interval.saturating_mul(waiting)
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

    /// Join the back of the line for a turn.
    pub fn queue(self: &Arc<Self>) -> Ticket {
        let wake = Arc::new(Notify::new());
        let mut line = self.line();
        let id = line.next_id;
        line.next_id += 1;
        line.waiting.push_back(Place {
            id,
            wake: wake.clone(),
        });
        Ticket {
            pacer: self.clone(),
            id,
            wake,
            urgent: false,
            done: false,
        }
    }
}

/// A place in a [`Pacer`]'s line; leaving it (drop) gives the place up.
pub struct Ticket {
    pacer: Arc<Pacer>,
    id: u64,
    wake: Arc<Notify>,
    urgent: bool,
    done: bool,
}

impl Ticket {
    /// Wait until this ticket is at the front of the line and the pace lets
    /// a request go, then take the turn. Cancel-safe: the place is kept.
    pub async fn wait(&mut self) {
        let interval = self.pacer.interval;
        while !self.done {
            let at = {
                let mut line = self.pacer.line();
                if line.waiting.front().map(|p| p.id) == Some(self.id) {
                    let now = Instant::now();
                    let at = ready_at(line.tat, now, interval);
                    if at <= now {
                        take(&mut line.tat, now, interval);
                        line.remove(self.id);
                        self.done = true;
                        return;
                    }
                    Some(at)
                } else {
                    None
                }
            };
            match at {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Move to the front of the line, behind the urgent tickets already there.
    pub fn hurry(&mut self) {
        if self.urgent || self.done {
            return;
        }
        self.urgent = true;
        let mut line = self.pacer.line();
        let Some(i) = line.position(self.id) else {
            return;
        };
        let Some(place) = line.waiting.remove(i) else {
            return;
        };
        let to = line.urgent;
        line.waiting.insert(to, place);
        line.urgent += 1;
        // Whoever is at the front now checks again (this one may be it).
        if let Some(front) = line.waiting.front() {
            front.wake.notify_one();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.pacer.line().remove(self.id);
        }
    }
}

/// When a request may go under the GCRA: once `tat - (BURST - 1) · interval`
/// has passed.
fn ready_at(tat: Option<Instant>, now: Instant, interval: Duration) -> Instant {
    let current = tat.unwrap_or(now).max(now);
    let tolerance = interval * (BURST - 1);
    current.checked_sub(tolerance).map_or(now, |t| t.max(now))
}

/// The GCRA step for a request going at `now`: `tat` moves on by one interval.
fn take(tat: &mut Option<Instant>, now: Instant, interval: Duration) {
    *tat = Some(tat.unwrap_or(now).max(now) + interval);
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

    /// The GCRA alone: when a request asking at `now` goes, taking its turn.
    fn turn(tat: &mut Option<Instant>, now: Instant, interval: Duration) -> Instant {
        let at = ready_at(*tat, now, interval);
        take(tat, at, interval);
        at
    }

    /// Tickets `0..n` of `pacer` waiting on tasks; each sends its number
    /// when its turn comes. The `urgent` ones hurry at once.
    fn line_up(
        pacer: &Arc<Pacer>,
        n: usize,
        urgent: &[usize],
    ) -> tokio::sync::mpsc::UnboundedReceiver<(usize, Instant)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..n {
            let (mut ticket, tx) = (pacer.queue(), tx.clone());
            let hurry = urgent.contains(&i);
            tokio::spawn(async move {
                if hurry {
                    ticket.hurry();
                }
                ticket.wait().await;
                let _ = tx.send((i, Instant::now()));
            });
        }
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_keeps_its_order_and_the_pace() {
        let pacer = Arc::new(Pacer::new(10.0));
        let start = Instant::now();
        let mut rx = line_up(&pacer, 15, &[]);
        for i in 0..15 {
            let (who, at) = rx.recv().await.unwrap();
            assert_eq!(who, i);
            let want = Duration::from_millis(100) * (i as u32).saturating_sub(BURST - 1);
            assert_eq!(at - start, want, "ticket {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_ticket_goes_first_but_takes_a_turn() {
        let pacer = Arc::new(Pacer::new(10.0));
        let start = Instant::now();
        let mut rx = line_up(&pacer, 20, &[17, 19]);
        let mut order = Vec::new();
        for _ in 0..20 {
            let (who, at) = rx.recv().await.unwrap();
            let n = order.len() as u32;
            assert_eq!(
                at - start,
                Duration::from_millis(100) * n.saturating_sub(BURST - 1),
                "turn {n} ({who}) kept the pace"
            );
            order.push(who);
        }
        // The burst went before anyone hurried; then the urgent two, in the
        // order they hurried, then the rest in their order.
        let want: Vec<usize> = (0..10).chain([17, 19]).chain(10..17).chain([18]).collect();
        assert_eq!(order, want);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_given_up_frees_its_place() {
        let pacer = Arc::new(Pacer::new(1.0));
        for _ in 0..BURST {
            pacer.queue().wait().await;
        }
        let mut first = pacer.queue();
        let mut second = pacer.queue();
        let start = Instant::now();
        // The first gives up while waiting; the second goes at its time.
        tokio::select! {
            _ = first.wait() => panic!("went without the pace"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        drop(first);
        second.wait().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        assert_eq!(pacer.line().waiting.len(), 0);
    }

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
