//! The credential manager: one [`Credential`] per `[credentials.NAME]`, each with an
//! `ArcSwap` slot holding the ready-built `Authorization` header, read without
//! locks on every request, and one background task that fetches and refreshes it.
//!
//! Single flight is structural: only the credential's task ever asks for a token;
//! requests that find no usable token wait for that task's next result.

pub mod assertion;
pub mod disk;
mod fetch;
pub mod grant;
pub mod pace;
mod refresh;
pub mod schedule;

pub use fetch::Fetcher;
pub use refresh::run;

use crate::config::CredentialSpec;
use crate::metrics::{CredentialLabels, TokenMetrics};
use arc_swap::ArcSwapOption;
use http::HeaderValue;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// An upstream `401` triggers at most one early refresh per this period.
pub const EARLY_REFRESH_PERIOD: Duration = Duration::from_secs(30);

/// A cached token: the header to send and when it stops being usable.
pub struct Token {
    header: HeaderValue,
    generation: u64,
    usable_until: Instant,
    expires_at: SystemTime,
    /// Set when an upstream rejected this token: prefer waiting for the refresh.
    stale: AtomicBool,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("header", &"...")
            .field("generation", &self.generation)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Token {
    fn usable(&self, now: Instant) -> bool {
        now < self.usable_until
    }
}

/// What a request gets: the header and which token it was (for 401 feedback).
#[derive(Clone)]
pub struct Bearer {
    pub header: HeaderValue,
    pub generation: u64,
}

/// Why no token can be sent right now.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub credential: Arc<str>,
    pub reason: Arc<str>,
    pub retry_after: Duration,
}

/// The background task's progress, watched by waiting requests and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub fetching: bool,
    pub last_error: Option<Arc<str>>,
    pub next_attempt: Option<Instant>,
}

/// One credential: its cached token and the state of its refresh task.
pub struct Credential {
    pub spec: Arc<CredentialSpec>,
    name: Arc<str>,
    slot: ArcSwapOption<Token>,
    status: watch::Sender<Status>,
    /// Wakes the refresh task early (upstream 401, rotated secret file).
    kick: Arc<Notify>,
    /// A request waits for a token: the refresh task stops waiting for its
    /// turn at the endpoint's pace ([`pace`]).
    demand: Notify,
    last_early_refresh_ms: AtomicU64,
    epoch: Instant,
    metrics: TokenMetrics,
    labels: CredentialLabels,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(spec: Arc<CredentialSpec>, metrics: TokenMetrics) -> Arc<Self> {
        let (status, _) = watch::channel(Status {
            fetching: true,
            ..Status::default()
        });
        let labels = CredentialLabels {
            credential: spec.name.clone(),
        };
        Arc::new(Credential {
            name: Arc::from(spec.name.as_str()),
            spec,
            slot: ArcSwapOption::empty(),
            status,
            kick: Arc::new(Notify::new()),
            demand: Notify::new(),
            last_early_refresh_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            metrics,
            labels,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hot path: a usable, unrejected token, without locking or allocating.
    pub fn current(&self) -> Option<Bearer> {
        let guard = self.slot.load();
        let t = guard.as_ref()?;
        (t.usable(Instant::now()) && !t.stale.load(Ordering::Relaxed)).then(|| Bearer {
            header: t.header.clone(),
            generation: t.generation,
        })
    }

    /// A token for a request: the cached one, or wait (up to `wait`) for the
    /// refresh task's fetch in flight. Never a token past its usable time.
    pub async fn bearer(&self, wait: Duration) -> Result<Bearer, Unavailable> {
        if let Some(b) = self.current() {
            return Ok(b);
        }
        self.demand.notify_one();
        let deadline = Instant::now() + wait;
        let mut rx = self.status.subscribe();
        loop {
            if let Some(b) = self.current() {
                return Ok(b);
            }
            let fetching = rx.borrow_and_update().fetching;
            if !fetching {
                // The last fetch finished: take its token, or a rejected-but-unexpired
                // one when the refresh failed.
                return self.usable_any().ok_or_else(|| self.unavailable());
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.usable_any().ok_or_else(|| self.unavailable());
            }
        }
    }

    fn usable_any(&self) -> Option<Bearer> {
        let guard = self.slot.load();
        let t = guard.as_ref()?;
        t.usable(Instant::now()).then(|| Bearer {
            header: t.header.clone(),
            generation: t.generation,
        })
    }

    fn unavailable(&self) -> Unavailable {
        self.metrics.unavailable.get_or_create(&self.labels).inc();
        let st = self.status.borrow();
        let now = Instant::now();
        let retry_after = st
            .next_attempt
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
            .max(Duration::from_secs(1));
        let reason = match (&st.last_error, st.fetching) {
            (Some(e), _) => e.clone(),
            (None, true) => Arc::from("timed out waiting for the token request"),
            (None, false) => Arc::from("token expired"),
        };
        Unavailable {
            credential: self.name.clone(),
            reason,
            retry_after,
        }
    }

    /// An upstream answered `401` to a request that carried token `generation`:
    /// refresh early, at most once per [`EARLY_REFRESH_PERIOD`].
    pub fn rejected(&self, generation: u64) {
        let guard = self.slot.load();
        let Some(t) = guard.as_ref() else { return };
        if t.generation != generation || t.stale.load(Ordering::Relaxed) {
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_early_refresh_ms.load(Ordering::Relaxed);
        let period = EARLY_REFRESH_PERIOD.as_millis() as u64;
        if last != u64::MAX && now.saturating_sub(last) < period {
            return;
        }
        if self
            .last_early_refresh_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(credential = %self.name, "upstream rejected the token; refreshing early");
            self.metrics.early_refresh.get_or_create(&self.labels).inc();
            t.stale.store(true, Ordering::Relaxed);
            // A fetch in flight will replace the token anyway: a second would
            // only spend quota. Otherwise mark one in flight (requests wait for
            // it) before waking the task.
            let mut started = false;
            self.status.send_if_modified(|s| {
                started = !s.fetching;
                s.fetching = true;
                started
            });
            if started {
                self.kick.notify_one();
            }
        }
    }

    /// After a failed refresh: requests use the rejected token again rather than
    /// wait for every retry.
    fn unstale(&self) {
        if let Some(t) = self.slot.load().as_ref() {
            t.stale.store(false, Ordering::Relaxed);
        }
    }

    /// For `/readyz` and `/metrics`: when the token expires, and the last error.
    pub fn snapshot(&self) -> CredentialState {
        let st = self.status.borrow().clone();
        let guard = self.slot.load();
        let now = Instant::now();
        CredentialState {
            name: self.name.clone(),
            valid: guard.as_ref().is_some_and(|t| t.usable(now)),
            expires_at: guard.as_ref().map(|t| t.expires_at),
            last_error: st.last_error,
        }
    }

    /// The handle a secret-file watcher uses to wake this credential.
    pub fn kick_handle(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// Cache a token whose lifetime started at `started` (when it was requested).
    fn store(
        &self,
        access_token: &str,
        lifetime: Duration,
        started: Instant,
        started_wall: SystemTime,
    ) -> Result<(), UnusableToken> {
        let mut header =
            HeaderValue::try_from(format!("Bearer {access_token}")).map_err(|_| UnusableToken)?;
        header.set_sensitive(true);
        let generation = self.slot.load().as_ref().map_or(1, |t| t.generation + 1);
        self.slot.store(Some(Arc::new(Token {
            header,
            generation,
            usable_until: started + schedule::usable(lifetime),
            expires_at: started_wall + lifetime,
            stale: AtomicBool::new(false),
        })));
        Ok(())
    }
}

/// An issued token that cannot be sent: it has bytes a header may not hold.
#[derive(Debug, thiserror::Error)]
#[error("access_token has characters not allowed in a header")]
pub struct UnusableToken;

/// A credential's state as `/readyz` reports it. Never holds the token.
#[derive(Debug, Clone)]
pub struct CredentialState {
    pub name: Arc<str>,
    pub valid: bool,
    pub expires_at: Option<SystemTime>,
    pub last_error: Option<Arc<str>>,
}
