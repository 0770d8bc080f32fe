//! A credential's background task: fetch, store, sleep until the refresh time
//! (or an early wake-up), and on failure keep the current token while retrying
//! with jittered exponential backoff. It never dies silently: it only returns
//! when shutdown is signalled.

use super::schedule::{backoff, refresh_in};
use super::{Credential, Fetcher, Status};
use crate::metrics::{Outcome, TokenRequestLabels};
use rand::Rng as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Keep `cred`'s token fresh until `shutdown` turns true.
pub async fn run(cred: Arc<Credential>, fetcher: Fetcher, mut shutdown: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    loop {
        let wait = attempt(&cred, &fetcher, &mut failures).await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cred.kick.notified() => {}
            _ = crate::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// One fetch; returns how long to sleep before the next.
async fn attempt(cred: &Credential, fetcher: &Fetcher, failures: &mut u32) -> Duration {
    cred.status.send_modify(|s| s.fetching = true);
    // The lifetime counts from when we asked: a slow answer must not stretch it.
    let (started, started_wall) = (Instant::now(), std::time::SystemTime::now());
    let result = fetcher.fetch().await;
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
                .map(|()| issued.lifetime)
                .map_err(|why| {
                    (
                        format!("credential {}: invalid token response: {why}", cred.name),
                        None,
                    )
                })
        });
    let mut rng = rand::rng();
    match stored {
        Ok(lifetime) => {
            if *failures > 0 {
                tracing::info!(credential = %cred.name, "token fetch recovered");
            }
            *failures = 0;
            let wait = refresh_in(lifetime, cred.spec.refresh_at, rng.random_range(-1.0..=1.0));
            tracing::debug!(credential = %cred.name, lifetime_s = lifetime.as_secs(), refresh_in_s = wait.as_secs_f64(), "token fetched");
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
