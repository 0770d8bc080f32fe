//! The issuer's revocation feed (`revocations_url`, e.g. the built-in issuer's
//! `GET /api/v1/revocations`), polled every `revocations_interval`: tokens of a
//! client blocked after they were issued, and revoked `jti`s, are refused. A
//! failed poll keeps the last list.
//!
//! Feed format: `blocked_clients` (`client_id`, `blocked_at`: apps blocked now),
//! `client_not_before` (`client_id`, `not_before`: every token of that client
//! with `iat <= not_before` is refused, even after an unblock or for an app
//! created again under the same id) and `revoked_tokens` (`jti`, `exp`). A
//! feed without `client_not_before` (an older issuer) still works.

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
    /// client id → tokens issued at or before this Unix second are refused
    /// (blocked since, or the issuer's `not_before` for it)
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
        if let Some(since) = v
            .client_id
            .as_ref()
            .and_then(|c| list.blocked.get(c.as_str()))
        {
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
                let now = crate::clock::unix_now();
                last_success.set(i64::try_from(now).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(error = %e, "revocation feed poll failed; keeping the last list")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// Why one poll of the revocation feed failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Get(#[from] crate::oauth::metadata::GetError),
    #[error("GET {url}: not JSON: {source}")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

async fn poll(client: &reqwest::Client, url: &Url) -> Result<List, PollError> {
    let (body, _) = crate::oauth::metadata::get(client, url.as_str()).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|source| PollError::NotJson {
            url: url.to_string(),
            source,
        })?;
    Ok(parse(&v))
}

/// The list a feed document describes.
fn parse(v: &serde_json::Value) -> List {
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
            let since = since.unwrap_or(u64::MAX);
            let entry = list.blocked.entry(id.to_owned()).or_insert(since);
            *entry = (*entry).max(since);
        }
    }
    for b in v
        .get("client_not_before")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(id) = b.get("client_id").and_then(|c| c.as_str()) {
            // Without a time, every token of the client is refused.
            let nb = b
                .get("not_before")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(u64::MAX);
            let entry = list.blocked.entry(id.to_owned()).or_insert(nb);
            *entry = (*entry).max(nb);
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
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(client: &str, iat: u64) -> Verified {
        Verified {
            client_id: Some(client.into()),
            subject: None,
            scopes: None,
            jti: Some(format!("{client}-{iat}")),
            kid: Default::default(),
            exp: iat + 3600,
            iat: Some(iat),
        }
    }

    #[test]
    fn not_before_outlives_the_block() {
        let r = Revocations::default();
        r.list.store(Arc::new(parse(&serde_json::json!({
            "blocked_clients": [{"client_id": "blocked", "blocked_at": 100, "not_before": 100}],
            "client_not_before": [
                {"client_id": "blocked", "not_before": 100},
                {"client_id": "unblocked", "not_before": 200},
                {"client_id": "no-time"},
            ],
            "revoked_tokens": [{"jti": "ok-1", "exp": 9}],
        }))));
        let cases = [
            ("blocked", 99, false),
            ("blocked", 100, false),
            ("blocked", 101, true),
            ("unblocked", 150, false),
            ("unblocked", 200, false),
            ("unblocked", 201, true),
            ("no-time", 1 << 40, false),
            ("ok", 1, false),
            ("ok", 2, true),
            ("other", 5, true),
        ];
        for (client, iat, accepted) in cases {
            assert_eq!(
                r.check(&token(client, iat)).is_ok(),
                accepted,
                "{client} iat={iat}"
            );
        }
        // An older feed (blocked_clients only) still works.
        r.list.store(Arc::new(parse(&serde_json::json!({
            "blocked_clients": [{"client_id": "old", "blocked_at": 50}],
        }))));
        assert!(r.check(&token("old", 50)).is_err());
        assert!(r.check(&token("old", 51)).is_ok());
    }
}
