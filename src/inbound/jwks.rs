//! Verification keys: fetched from `jwks_url` (or found through RFC 8414 / OIDC
//! discovery from the issuer, or read from `jwks_file`), each decoded once per
//! fetch, kept in an `ArcSwap` read without locks. One background task fetches:
//! on a timer (`jwks_refresh`, or the answer's `Cache-Control: max-age`), and
//! early when a token names an unknown `kid` — at most once per `jwks_cooldown`,
//! however many requests ask. A failed fetch keeps the last good keys.
//!
//! HS256/384/512 only with a secret configured as `hmac_secret`: validation
//! makes that the sole key source (never beside JWKS keys), and a JWKS `oct`
//! key is never used. The secret is re-read on the same timer, so a rotated
//! file is picked up.

use crate::config::{InboundSpec, KeySource};
use crate::jose::keys::{KeySet, Skipped, VerifyKeyError};
use crate::oauth::metadata::get;
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// The live key set and its fetcher's controls.
pub struct Jwks {
    current: ArcSwapOption<KeySet>,
    /// Incremented after every fetch attempt, for requests waiting on one.
    generation: watch::Sender<u64>,
    refetch: Notify,
    epoch: Instant,
    last_fetch_ms: AtomicU64,
    cooldown: Duration,
    wait: Duration,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl Jwks {
    pub fn new(spec: &InboundSpec) -> Arc<Self> {
        Arc::new(Jwks {
            current: ArcSwapOption::empty(),
            generation: watch::channel(0).0,
            refetch: Notify::new(),
            epoch: Instant::now(),
            last_fetch_ms: AtomicU64::new(u64::MAX),
            cooldown: spec.jwks_cooldown,
            wait: spec.jwks_timeout + Duration::from_secs(1),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// The keys now, if any were ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Wait until keys are loaded (by [`run`]), at most until `deadline`;
    /// whether there are keys then.
    pub async fn wait_loaded(&self, deadline: tokio::time::Instant) -> bool {
        let mut rx = self.generation.subscribe();
        // Each fetch attempt stores its keys before it bumps the generation.
        let loaded = rx.wait_for(|_| self.current.load().is_some());
        let _ = tokio::time::timeout_at(deadline, loaded).await;
        self.current.load().is_some()
    }

    /// A token named `kid`, which the keys lack: ask for one refetch (unless one
    /// happened within the cooldown) and wait for it, bounded.
    pub async fn refetch_for(&self, kid: &str) -> Option<Arc<KeySet>> {
        let last = self.last_fetch_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        if last != u64::MAX && now.saturating_sub(last) < self.cooldown.as_millis() as u64 {
            return None;
        }
        let mut rx = self.generation.subscribe();
        let seen = *rx.borrow_and_update();
        self.refetch.notify_one();
        let _ = tokio::time::timeout(self.wait, rx.wait_for(|g| *g > seen)).await;
        self.keys().filter(|k| k.contains(kid))
    }
}

/// Keep `jwks` loaded from `spec`'s key source until shutdown.
pub async fn run(
    jwks: Arc<Jwks>,
    spec: InboundSpec,
    metrics: super::InboundMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match super::metadata_client(spec.jwks_timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "JWKS fetcher not started");
            return;
        }
    };
    let mut failures = 0u32;
    let mut skipped_before = None;
    loop {
        jwks.last_fetch_ms
            .store(jwks.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let result = tracing::Instrument::instrument(
            fetch(&client, &spec),
            tracing::info_span!("jwks_fetch"),
        )
        .await;
        let outcome = if result.is_ok() { "success" } else { "error" };
        metrics
            .jwks_fetches
            .get_or_create(&super::OutcomeLabels { outcome })
            .inc();
        let next = match result {
            Ok((set, skipped, max_age)) => {
                if let Some(examples) = skipped_news(&mut skipped_before, &skipped) {
                    tracing::warn!(
                        skipped = skipped.len(),
                        examples = %examples,
                        "JWKS keys not used"
                    );
                }
                // Info when the key ids change (first load, rotation), else debug.
                let changed = jwks.keys().is_none_or(|old| {
                    old.len() != set.len() || set.kids().any(|k| !old.contains(k))
                });
                if changed {
                    tracing::info!(keys = set.len(), kids = %bounded_list(set.kids(), LOGGED_ITEMS), "JWKS loaded");
                } else {
                    tracing::debug!(keys = set.len(), "JWKS unchanged");
                }
                jwks.current.store(Some(Arc::new(set)));
                let now = crate::clock::unix_now();
                metrics
                    .jwks_loaded
                    .set(i64::try_from(now).unwrap_or(i64::MAX));
                *jwks
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                failures = 0;
                max_age.map_or(spec.jwks_refresh, |a| {
                    a.clamp(Duration::from_secs(10), Duration::from_secs(86400))
                })
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the last good keys");
                *jwks
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                crate::retry::backoff(failures, 0.0, None).min(spec.jwks_refresh)
            }
        };
        jwks.generation.send_modify(|g| *g += 1);
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = jwks.refetch.notified() => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// How many kids or skip reasons one log line names at most.
const LOGGED_ITEMS: usize = 5;

/// `items` joined with `,`, at most `max` of them, then how many more.
fn bounded_list<'a>(items: impl Iterator<Item = &'a str>, max: usize) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (i, item) in items.enumerate() {
        if i < max {
            if i > 0 {
                out.push(',');
            }
            // A kid or a reason is the document's text: bounded too.
            out.extend(item.chars().take(120));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push_str(&format!(" (and {more} more)"));
    }
    out
}

/// What to log of the keys a fetch could not use: `None` when none were
/// skipped or the same were skipped last time (`before` keeps a digest), so a
/// JWKS full of unusable keys costs one warning when it changes, not one per
/// key per fetch. Otherwise the first few reasons.
fn skipped_news(before: &mut Option<Vec<u8>>, skipped: &[Skipped]) -> Option<String> {
    let lines: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for s in &lines {
        ctx.update(s.as_bytes());
        ctx.update(&[0]);
    }
    let digest = ctx.finish().as_ref().to_vec();
    let same = before.as_ref() == Some(&digest);
    *before = Some(digest);
    (!lines.is_empty() && !same)
        .then(|| bounded_list(lines.iter().map(String::as_str), LOGGED_ITEMS))
}

/// Why a fetch brought no keys (the last good ones stay).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no HMAC algorithm allowed")]
    NoHmacAlgorithm,
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error(transparent)]
    Keys(#[from] VerifyKeyError),
    #[error(transparent)]
    Get(#[from] crate::oauth::metadata::GetError),
    #[error(transparent)]
    Metadata(#[from] crate::oauth::metadata::MetadataError),
    #[error(transparent)]
    Endpoint(#[from] crate::oauth::metadata::EndpointError),
}

type Fetched = (KeySet, Vec<Skipped>, Option<Duration>);

async fn fetch(client: &reqwest::Client, spec: &InboundSpec) -> Result<Fetched, FetchError> {
    let (doc, max_age) = match &spec.keys {
        KeySource::JwksFile(path) => {
            let doc = tokio::fs::read(path)
                .await
                .map_err(|source| FetchError::Read {
                    path: path.clone(),
                    source,
                })?;
            (doc, None)
        }
        KeySource::Hmac(secret) => {
            let alg = spec
                .algorithms
                .first()
                .copied()
                .ok_or(FetchError::NoHmacAlgorithm)?;
            let text = crate::secret::read(secret)?;
            return Ok((KeySet::hmac(text.as_bytes(), alg)?, Vec::new(), None));
        }
        KeySource::JwksUrl(url) => get(client, url.as_str()).await?,
        KeySource::Discovery(base) => {
            // The metadata must name the configured issuer exactly (RFC 8414 §3.3).
            let meta =
                crate::oauth::metadata::metadata(client, base.as_str(), &spec.issuer).await?;
            // Keys fetched in clear could be anyone's: an https:// issuer's
            // jwks_uri must be https:// too.
            let jwks_uri = crate::oauth::metadata::metadata_endpoint(&meta, "jwks_uri", base)?;
            get(client, jwks_uri.as_str()).await?
        }
    };
    let (set, skipped) = KeySet::parse(&doc, &spec.algorithms)?;
    Ok((set, skipped, max_age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::alg::Algorithm;

    #[test]
    fn ten_thousand_unusable_keys_make_one_line_once() {
        let keys: Vec<_> = (0..10_000)
            .map(|i| serde_json::json!({"kty": "oct", "kid": format!("k{i}"), "k": "c2VjcmV0"}))
            .collect();
        let doc = serde_json::json!({ "keys": keys }).to_string();
        let (_, skipped) = KeySet::parse(doc.as_bytes(), &[Algorithm::ES256]).unwrap();
        assert_eq!(skipped.len(), 10_000);
        let mut before = None;
        let line = skipped_news(&mut before, &skipped).expect("logged the first time");
        assert!(line.len() < 1_000, "{} bytes", line.len());
        assert!(line.ends_with("(and 9995 more)"), "{line}");
        // Refetched unchanged: nothing more, however often.
        for _ in 0..3 {
            assert_eq!(skipped_news(&mut before, &skipped), None);
        }
        // Changed: one line again; then all usable: nothing.
        assert!(skipped_news(&mut before, &skipped[1..]).is_some());
        assert_eq!(skipped_news(&mut before, &[]), None);
        assert!(skipped_news(&mut before, &skipped[..1]).is_some());
    }

    #[test]
    fn a_logged_list_is_bounded_in_items_and_length() {
        let long = "x".repeat(10_000);
        let items = [long.as_str(), "a", "b"];
        let line = bounded_list(items.iter().copied(), 2);
        assert_eq!(line, format!("{},a (and 1 more)", "x".repeat(120)));
        assert_eq!(bounded_list(["a", "b"].into_iter(), 5), "a,b");
    }
}
