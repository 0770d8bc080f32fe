//! Token introspection (RFC 7662) for issuers that offer no revocation feed:
//! after a token passes the local checks, the issuer is asked whether it is still
//! active. Answers (active or not) are kept for `cache_ttl`, never past the
//! token's `exp`, keyed by the token's SHA-256; concurrent requests with the same
//! token share one introspection call. When the issuer cannot be asked,
//! `on_error` decides: `deny` (503) or `allow` (the local checks alone).

use super::cache::Digest;
use super::verify::Verified;
use crate::config::{IntrospectionSpec, SecretSource};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// What the issuer said of a token (`None`: it could not be asked), and until
/// when that holds here.
#[derive(Clone, Copy)]
struct Answer {
    active: Option<bool>,
    until: Instant,
}

/// How long a failed call is shared by the requests that carry the same token,
/// so an issuer outage costs one timeout per token, not one per request.
const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// One token's introspection, shared by every request that carries it.
#[derive(Default)]
struct Slot {
    answer: OnceCell<Answer>,
}

/// The result of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Inactive,
    /// The issuer could not be asked (or answered nonsense).
    Unavailable,
}

pub struct Introspection {
    client: reqwest::Client,
    /// Configured, or found once in the issuer's metadata.
    url: OnceCell<String>,
    issuer: String,
    client_id: String,
    secret: SecretSource,
    basic: bool,
    cache_ttl: Duration,
    capacity: usize,
    slots: RwLock<HashMap<Digest, Arc<Slot>>>,
}

impl Introspection {
    pub fn new(spec: &IntrospectionSpec) -> Result<Self, super::ClientBuildError> {
        Ok(Introspection {
            client: super::metadata_client(spec.timeout)?,
            url: OnceCell::new_with(spec.url.as_ref().map(ToString::to_string)),
            issuer: spec.issuer.clone(),
            client_id: spec.client_id.clone(),
            secret: spec.secret.clone(),
            basic: spec.basic,
            cache_ttl: spec.cache_ttl,
            capacity: spec.cache_size,
            slots: RwLock::new(HashMap::new()),
        })
    }

    /// Whether `token` (already verified locally as `v`) is still active, and
    /// whether the answer came from the cache.
    pub async fn check(&self, token: &str, key: Digest, v: &Verified) -> (Status, bool) {
        let slot = self.slot(key);
        // Only the request that makes the call counts it as uncached; those
        // that waited for it share its answer.
        let mut asked = false;
        let answer = slot
            .answer
            .get_or_init(|| async {
                asked = true;
                match self.ask(token).await {
                    Ok(active) => Answer {
                        active: Some(active),
                        until: Instant::now() + self.cache_ttl.min(until_exp(v.exp)),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "token introspection failed");
                        Answer {
                            active: None,
                            until: Instant::now() + FAILURE_HOLD.min(self.cache_ttl),
                        }
                    }
                }
            })
            .await;
        let status = match answer.active {
            Some(true) => Status::Active,
            Some(false) => Status::Inactive,
            None => Status::Unavailable,
        };
        (status, !asked)
    }

    /// The live slot for `key`: the cached one if its answer still holds (or is
    /// being fetched), else a new one.
    fn slot(&self, key: Digest) -> Arc<Slot> {
        let now = Instant::now();
        let live = |s: &Arc<Slot>| s.answer.get().is_none_or(|a| a.until > now);
        // Cache hits share a read lock.
        if let Some(s) = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|s| live(s))
        {
            return s.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get(&key)
            && s.answer.get().is_none_or(|a| a.until > now)
        {
            return s.clone();
        }
        if slots.len() >= self.capacity {
            slots.retain(|_, s| s.answer.get().is_some_and(|a| a.until > now));
            if slots.len() >= self.capacity {
                slots.clear();
            }
        }
        let s = Arc::new(Slot::default());
        slots.insert(key, s.clone());
        s
    }

    /// POST the token to the introspection endpoint; `Ok(active)`.
    async fn ask(&self, token: &str) -> Result<bool, AskError> {
        let secret = crate::secret::read(&self.secret)?;
        let (body, authorization) = self.form(token, &secret);
        let url = self
            .url
            .get_or_try_init(|| async {
                let meta =
                    crate::oauth::metadata::metadata(&self.client, &self.issuer, &self.issuer)
                        .await?;
                // The token and this client's credentials are sent there: an
                // https:// issuer's endpoint must be https:// too (RFC 7662 §4).
                let issuer = url::Url::parse(&self.issuer).map_err(|source| {
                    crate::oauth::metadata::MetadataError::BadIssuer {
                        base: self.issuer.clone(),
                        source,
                    }
                })?;
                crate::oauth::metadata::metadata_endpoint(&meta, "introspection_endpoint", &issuer)
                    .map(String::from)
                    .map_err(AskError::from)
            })
            .await?;
        let mut req = self
            .client
            .post(url)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some(a) = authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        // reqwest's errors name the URL, never the body we sent.
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|source| AskError::Send {
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(AskError::Status {
                url: url.clone(),
                status,
            });
        }
        let body = crate::oauth::metadata::read_capped(resp, 64 * 1024)
            .await
            .map_err(|source| AskError::Read {
                url: url.clone(),
                source,
            })?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| AskError::Answer(url.clone(), "the answer is not JSON"))?;
        match v.get("active") {
            Some(serde_json::Value::Bool(active)) => Ok(*active),
            _ => Err(AskError::Answer(
                url.clone(),
                "the answer has no boolean `active`",
            )),
        }
    }
}

/// Why the introspection endpoint gave no answer. Names the URL, never the
/// token or the client secret.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error(transparent)]
    Metadata(#[from] crate::oauth::metadata::MetadataError),
    #[error(transparent)]
    Endpoint(#[from] crate::oauth::metadata::EndpointError),
    #[error("POST {url}: {source}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("POST {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("POST {url}: {source}")]
    Read {
        url: String,
        #[source]
        source: crate::oauth::metadata::ReadError,
    },
    #[error("POST {0}: {1}")]
    Answer(String, &'static str),
}

impl Introspection {
    /// The form body and `Authorization` value for an introspection request.
    fn form(&self, token: &str, secret: &str) -> (String, Option<String>) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair("token_type_hint", "access_token");
        let authorization = if self.basic {
            Some(crate::oauth::authorization::basic(&self.client_id, secret))
        } else {
            form.append_pair("client_id", &self.client_id);
            form.append_pair("client_secret", secret);
            None
        };
        (form.finish(), authorization)
    }
}

/// Time left until the Unix time `exp`.
fn until_exp(exp: u64) -> Duration {
    Duration::from_secs(exp.saturating_sub(crate::clock::unix_now()))
}
