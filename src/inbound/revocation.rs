//! The issuer's revocation feed (`revocations_url`, e.g. the built-in issuer's
//! `GET /api/v1/revocations`), polled every `revocations_interval`: tokens of a
//! client blocked after they were issued, and revoked `jti`s, are refused. A
//! failed poll keeps the last list.

use super::verify::{Invalid, Verified};
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use url::Url;

#[derive(Default)]
struct List {
    /// client id → blocked since (Unix seconds)
    blocked: HashMap<String, u64>,
    revoked: HashSet<String>,
    fetched_at: Option<Instant>,
}

#[derive(Default)]
pub struct Revocations {
    list: ArcSwap<List>,
}

impl Revocations {
    /// Refuse `v` if its client was blocked at or after it was issued, or its
    /// `jti` was revoked.
    pub fn check(&self, v: &Verified) -> Result<(), Invalid> {
        let list = self.list.load();
        if v.jti.as_ref().is_some_and(|j| list.revoked.contains(j)) {
            return Err(Invalid::Revoked);
        }
        if let Some(since) = v.client_id.as_ref().and_then(|c| list.blocked.get(c)) {
            // A token issued after the block would have been refused by the
            // issuer; one without `iat` is refused to be safe.
            if v.iat.is_none_or(|iat| iat <= *since) {
                return Err(Invalid::Revoked);
            }
        }
        Ok(())
    }

    /// Seconds since the last successful poll, if there was one.
    pub fn age(&self) -> Option<f64> {
        self.list
            .load()
            .fetched_at
            .map(|t| t.elapsed().as_secs_f64())
    }
}

/// Poll `url` every `interval` until shutdown.
pub async fn run(
    revocations: Arc<Revocations>,
    url: Url,
    interval: Duration,
    timeout: Duration,
    last_success: prometheus_client::metrics::gauge::Gauge,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match super::metadata_client(timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "revocation feed poller not started");
            return;
        }
    };
    loop {
        match poll(&client, &url).await {
            Ok(list) => {
                revocations.list.store(Arc::new(list));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                last_success.set(i64::try_from(now).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(error = %e, "revocation feed poll failed; keeping the last list")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::until_shutdown(&mut shutdown) => return,
        }
    }
}

async fn poll(client: &reqwest::Client, url: &Url) -> Result<List, String> {
    let (body, _) = crate::discovery::get(client, url.as_str()).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let mut list = List {
        fetched_at: Some(Instant::now()),
        ..List::default()
    };
    for b in v
        .get("blocked_clients")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(id), since) = (
            b.get("client_id").and_then(|c| c.as_str()),
            b.get("blocked_at").and_then(serde_json::Value::as_u64),
        ) {
            // Without a time, every token of the client is refused.
            list.blocked
                .insert(id.to_owned(), since.unwrap_or(u64::MAX));
        }
    }
    for r in v
        .get("revoked_tokens")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(jti) = r.get("jti").and_then(|j| j.as_str()) {
            list.revoked.insert(jti.to_owned());
        }
    }
    Ok(list)
}
