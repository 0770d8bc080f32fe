//! A credential's background task: fetch, store, sleep until the refresh time
//! (or an early wake-up), and on failure keep the current token while retrying
//! with jittered exponential backoff. It never dies silently: it only returns
//! when shutdown is signalled.
//!
//! Quota safety: with `max_token_requests_per_hour`, a request beyond the budget
//! of the last rolling hour is not made (the cached token is kept; logged once
//! per episode, counted). With `token_cache_dir`, a still-valid token from the
//! previous run is used at start instead of a token request, and every new
//! token is written there.
//!
//! Spreading: every request waits for its turn at the token endpoint's pace
//! (a request waiting for the token moves it to the front of the line),
//! and each refresh is booked at the endpoint's least busy second of its
//! window ([`super::pace`]); when more than [`super::pace::BURST`]
//! credentials share that endpoint, the first refresh after start may come
//! early ([`Fetcher::plan_refresh`]), so credentials started together do not
//! go on refreshing together.

use super::{Credential, Fetcher, Status};
use crate::metrics::{Outcome, TokenRequestLabels};
use crate::retry::backoff;
use rand::Rng as _;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

/// Keep `cred`'s token fresh until `shutdown` turns true; `cache_file` is where
/// it survives restarts (`token_cache_dir`).
pub async fn run(
    cred: Arc<Credential>,
    fetcher: Fetcher,
    cache_file: Option<super::disk::CacheFile>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    // When the last token requests were made, for the hourly budget.
    let mut sent: VecDeque<Instant> = VecDeque::new();
    let mut over_budget_logged = false;
    // Until the first token of this run (a token from disk keeps its schedule).
    let mut first = true;
    if let Some(wait) = cache_file.as_ref().and_then(|f| from_disk(&cred, f)) {
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cred.kick.notified() => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
    }
    loop {
        if let Some(budget) = cred.spec.max_requests_per_hour {
            while sent.front().is_some_and(|t| t.elapsed() >= HOUR) {
                sent.pop_front();
            }
            if sent.len() >= budget as usize {
                cred.metrics.over_budget.get_or_create(&cred.labels).inc();
                if !over_budget_logged {
                    tracing::warn!(
                        credential = %cred.name,
                        budget,
                        "max_token_requests_per_hour reached: keeping the cached token until the budget frees up"
                    );
                    over_budget_logged = true;
                }
                // Requests use the token we have rather than wait for a fetch
                // that will not happen; an upstream 401 wakes us to say so again.
                cred.unstale();
                cred.status.send_modify(|s| s.fetching = false);
                let free_at = sent.front().map_or(Instant::now(), |t| *t + HOUR);
                tokio::select! {
                    _ = tokio::time::sleep_until(free_at) => {}
                    _ = cred.kick.notified() => {}
                    _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
                }
                continue;
            }
            over_budget_logged = false;
            sent.push_back(Instant::now());
        }
        if !my_turn(&cred, &fetcher, &mut shutdown).await {
            return;
        }
        let wait = attempt(
            &cred,
            &fetcher,
            cache_file.as_ref(),
            &mut failures,
            &mut first,
        )
        .await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cred.kick.notified() => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// Wait for this request's turn at the endpoint's pace. A request waiting
/// for a token, or a kick, moves it to the front of the line, where it still
/// keeps the pace. False on shutdown.
async fn my_turn(
    cred: &Credential,
    fetcher: &Fetcher,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut ticket = fetcher.queue();
    loop {
        tokio::select! {
            () = ticket.wait() => return true,
            () = cred.demand.notified() => {}
            () = cred.kick.notified() => {}
            _ = crate::shutdown::until_shutdown(shutdown) => return false,
        }
        ticket.hurry();
    }
}

/// Take a still-valid token from `file`; how long until it should be refreshed.
fn from_disk(cred: &Credential, file: &super::disk::CacheFile) -> Option<Duration> {
    match file.load(Duration::from_secs(5)) {
        Ok(Some(c)) => {
            let (started, wall) = (Instant::now(), std::time::SystemTime::now());
            if let Err(why) = cred.store(&c.access_token, c.remaining, started, wall) {
                tracing::warn!(credential = %cred.name, error = %why, "token from token_cache_dir not used");
                return None;
            }
            cred.metrics.disk_reuse.get_or_create(&cred.labels).inc();
            cred.status.send_replace(super::Status::default());
            // Refresh where the original lifetime says, counted from now.
            let used = c.lifetime.saturating_sub(c.remaining);
            let due = c
                .lifetime
                .mul_f64(cred.spec.refresh_at)
                .saturating_sub(used);
            tracing::info!(
                credential = %cred.name,
                expires_in_s = c.remaining.as_secs(),
                refresh_in_s = due.as_secs(),
                "reusing the token kept in token_cache_dir"
            );
            Some(due)
        }
        Ok(None) => None,
        Err(why) => {
            tracing::warn!(credential = %cred.name, reason = %why, "token_cache_dir entry ignored");
            None
        }
    }
}

/// One fetch; returns how long to sleep before the next.
async fn attempt(
    cred: &Credential,
    fetcher: &Fetcher,
    cache_file: Option<&super::disk::CacheFile>,
    failures: &mut u32,
    first: &mut bool,
) -> Duration {
    cred.status.send_modify(|s| s.fetching = true);
    // The lifetime counts from when we asked: a slow answer must not stretch it.
    let (started, started_wall) = (Instant::now(), std::time::SystemTime::now());
    // Boxed: the request's state exists only while it runs, and the task that
    // sleeps between fetches stays small (1,000 credentials, 1,000 tasks).
    let result = tracing::Instrument::instrument(
        Box::pin(fetcher.fetch()),
        tracing::info_span!("token_fetch", credential = %cred.name),
    )
    .await;
    cred.metrics
        .latency
        .get_or_create(&cred.labels)
        .observe(started.elapsed().as_secs_f64());
    let outcome = result
        .as_ref()
        .map_or_else(|e| e.outcome, |_| Outcome::success);
    cred.metrics
        .requests
        .get_or_create(&TokenRequestLabels {
            credential: cred.spec.name.clone(),
            outcome,
        })
        .inc();
    let stored = result
        .map_err(|e| (e.message, e.retry_after))
        .and_then(|issued| {
            cred.store(&issued.access_token, issued.lifetime, started, started_wall)
                .map(|()| (issued.lifetime, issued.access_token))
                .map_err(|why| {
                    (
                        format!("credential {}: invalid token response: {why}", cred.name),
                        None,
                    )
                })
        });
    let mut rng = rand::rng();
    match stored {
        Ok((lifetime, token)) => {
            if let Some(file) = cache_file
                && let Err(why) = file.save(&token, lifetime)
            {
                tracing::warn!(credential = %cred.name, error = %why, "cannot keep the token in token_cache_dir");
            }
            if *failures > 0 {
                tracing::info!(credential = %cred.name, "token fetch recovered");
            }
            *failures = 0;
            let wait = fetcher.plan_refresh(lifetime, std::mem::take(first));
            tracing::info!(credential = %cred.name, lifetime_s = lifetime.as_secs(), refresh_in_s = wait.as_secs_f64().round(), "token fetched");
            cred.status.send_replace(Status::default());
            wait
        }
        Err((message, retry_after)) => {
            *failures = failures.saturating_add(1);
            // A token an upstream rejected is still the best we have: stop making
            // requests wait for refreshes that keep failing.
            cred.unstale();
            let wait = backoff(*failures, rng.random_range(-1.0..=1.0), retry_after);
            tracing::warn!(
                credential = %cred.name,
                error = %message,
                retry_in_s = wait.as_secs_f64(),
                "token fetch failed; keeping the current token until it expires"
            );
            cred.status.send_replace(Status {
                fetching: false,
                last_error: Some(Arc::from(message)),
                next_attempt: Some(Instant::now() + wait),
            });
            wait
        }
    }
}
