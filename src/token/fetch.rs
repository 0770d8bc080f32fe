//! Sending a token request over HTTP (reqwest on rustls/aws-lc-rs) and turning
//! transport failures into [`FetchError`]s that name the credential.

use super::assertion::AssertionKey;
use super::grant::{FetchError, Issued, MAX_BODY, Proof, build_request, parse_response, scrub};
use super::pace::{self, Pacer};
use super::schedule::{MIN_REFRESH, refresh_window};
use crate::config::redact_url;
use crate::config::{ClientAuth, CredentialSpec, Endpoint};
use crate::metrics::Outcome;
use crate::secret;
use http::header;
use rand::Rng as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a credential's HTTP client cannot be built. Names files, never their content.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read ca_file {}: {source}", .path.display())]
    CaUnreadable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad PEM in ca_file {}: {source}", .path.display())]
    CaPem {
        path: std::path::PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("credential {name}: bad client_cert/client_key: {}", crate::cause::root_cause(.source))]
    Identity {
        name: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("credential {name}: cannot build HTTP client: {source}")]
    Build {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Clients without a client certificate, shared by every credential with the
/// same timeouts and extra roots: each client holds its own TLS configuration
/// (the parsed root store is most of it), which a thousand credentials would
/// otherwise each hold (about 75 KB apiece). Bounded by the distinct settings
/// configs name.
type SharedKey = (Duration, Duration, Option<[u8; 32]>);
static SHARED: std::sync::LazyLock<Mutex<std::collections::HashMap<SharedKey, reqwest::Client>>> =
    std::sync::LazyLock::new(Default::default);

/// The shared client for `spec`'s settings (its CA file read now: a changed
/// file is a new key), built on first use.
fn shared_client(spec: &CredentialSpec) -> Result<reqwest::Client, ClientError> {
    let ca = match &spec.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| ClientError::CaUnreadable {
                path: path.clone(),
                source,
            })?;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pem);
            let mut id = [0u8; 32];
            id.copy_from_slice(digest.as_ref());
            Some(id)
        }
        None => None,
    };
    let key = (spec.connect_timeout, spec.timeout, ca);
    if let Some(c) = lock(&SHARED).get(&key) {
        return Ok(c.clone());
    }
    let client = build_client(spec, None)?;
    Ok(lock(&SHARED).entry(key).or_insert(client).clone())
}

/// Idle connections kept per token endpoint, and for how long.
const IDLE_CONNECTIONS: usize = 2;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A reqwest client for `spec`'s token endpoint, presenting `identity` (client
/// certificate and key, PEM) when given.
fn build_client(
    spec: &CredentialSpec,
    identity: Option<&[u8]>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(spec.connect_timeout)
        .timeout(spec.timeout)
        // Token requests are rare and paced ([`super::pace`]): a couple of
        // kept connections serve them; more would only hold buffers.
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .user_agent(concat!("m2m-sidecar/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &spec.ca_file {
        let pem = std::fs::read(path).map_err(|source| ClientError::CaUnreadable {
            path: path.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::CaPem {
                path: path.clone(),
                source,
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(pem) = identity {
        let id = reqwest::Identity::from_pem(pem).map_err(|source| ClientError::Identity {
            name: spec.name.clone(),
            source,
        })?;
        builder = builder.identity(id);
    }
    builder.build().map_err(|source| ClientError::Build {
        name: spec.name.clone(),
        source,
    })
}

/// How long a discovered token endpoint is trusted before it is looked up again
/// (a failed token request looks it up again sooner).
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// One credential's HTTP client for its token endpoint.
pub struct Fetcher {
    spec: Arc<CredentialSpec>,
    client: Mutex<Built>,
    discovered: Mutex<Option<Discovered>>,
    /// Shared with every credential that names the same endpoint.
    pacer: Arc<Pacer>,
}

/// The client and the client certificate it was built with (a digest of the
/// PEM files, so a rotated certificate rebuilds it).
struct Built {
    client: reqwest::Client,
    identity: Option<[u8; 32]>,
}

#[derive(Clone)]
struct Discovered {
    token_url: Url,
    issuer: String,
    at: Instant,
}

impl Fetcher {
    /// Build the client: no redirects, no proxy from the environment (the sidecar
    /// may itself be the `HTTP_PROXY`), the credential's timeouts and extra roots,
    /// and its client certificate when it has one (read again before each request).
    pub fn new(spec: Arc<CredentialSpec>) -> Result<Self, ClientError> {
        let client = shared_client(&spec)?;
        let pacer = pace::for_endpoint(spec.endpoint.url().as_str(), spec.endpoint_rate);
        Ok(Fetcher {
            spec,
            client: Mutex::new(Built {
                client,
                identity: None,
            }),
            discovered: Mutex::new(None),
            pacer,
        })
    }

    /// A place in the line for the endpoint's next turn ([`pace::Ticket`]).
    pub fn queue(&self) -> pace::Ticket {
        self.pacer.queue()
    }

    /// When to refresh a token of `lifetime` just fetched: in the `refresh_at`
    /// ±5% window, at the endpoint's least-booked second. The `first` token
    /// of a credential started with more than [`pace::BURST`] others may be
    /// refreshed from the moment the start-up requests have gone, so that
    /// their refreshes spread over one whole period.
    pub fn plan_refresh(&self, lifetime: Duration, first: bool) -> Duration {
        let now = Instant::now();
        let (lo, hi) = refresh_window(lifetime, self.spec.refresh_at);
        let lo = if first && pace::sharers(&self.pacer) > pace::BURST as usize {
            self.pacer.backlog(now).max(MIN_REFRESH).min(lo)
        } else {
            lo
        };
        let mut rng = rand::rng();
        self.pacer.plan(now, (lo, hi), || rng.random::<f64>())
    }

    /// Ask the token endpoint for a token once.
    pub async fn fetch(&self) -> Result<Issued, FetchError> {
        let spec = &self.spec;
        let client = self.client()?;
        let (token_url, issuer) = self.endpoint(&client).await?;
        let unreadable = |what: &str, why: &dyn std::fmt::Display| {
            FetchError::new(
                Outcome::secret_error,
                format!("credential {}: cannot read {what}: {why}", spec.name),
            )
        };
        let proof_text = match &spec.auth {
            ClientAuth::Secret(source) => {
                secret::read(source).map_err(|why| unreadable("client secret", &why))?
            }
            ClientAuth::PrivateKey {
                key,
                kid,
                alg,
                audience,
            } => {
                let pem = secret::read(key).map_err(|why| unreadable("private_key", &why))?;
                let key = AssertionKey::from_pem(&pem, *alg)
                    .map_err(|why| unreadable("private_key", &why))?;
                // RFC 7523 §3: the issuer identifier where known, else the endpoint.
                let aud = audience
                    .clone()
                    .or(issuer)
                    .unwrap_or_else(|| token_url.to_string());
                key.sign(&spec.client_id, &aud, kid.as_deref())
                    .map_err(|why| unreadable("private_key", &why))?
            }
            ClientAuth::AssertionFile(path) => {
                // Kubelet rotates projected tokens: read it for every request.
                secret::read(&crate::config::SecretSource::File(path.clone()))
                    .map_err(|why| unreadable("assertion_file", &why))?
            }
            ClientAuth::Certificate => String::new(),
        };
        let proof = match &spec.auth {
            ClientAuth::Secret(_) => Proof::Secret(&proof_text),
            ClientAuth::PrivateKey { .. } | ClientAuth::AssertionFile(_) => {
                Proof::Assertion(&proof_text)
            }
            ClientAuth::Certificate => Proof::Certificate,
        };
        let result = self.send(&client, &token_url, &proof).await;
        if result.is_err() {
            // The endpoint may have moved: look it up again next time.
            *lock(&self.discovered) = None;
        }
        result.map_err(|mut e| {
            scrub(&mut e.message, &self.spec, &proof_text);
            e
        })
    }

    /// The client to use now, rebuilt if the client certificate changed on disk.
    fn client(&self) -> Result<reqwest::Client, FetchError> {
        let spec = &self.spec;
        let Some(cc) = &spec.client_cert else {
            return Ok(lock(&self.client).client.clone());
        };
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                FetchError::new(
                    Outcome::secret_error,
                    format!(
                        "credential {}: cannot read {}: {}",
                        spec.name,
                        p.display(),
                        e.kind()
                    ),
                )
            })
        };
        let mut pem = read(&cc.cert)?;
        pem.push(b'\n');
        pem.extend_from_slice(&read(&cc.key)?);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pem);
        let mut id = [0u8; 32];
        id.copy_from_slice(digest.as_ref());
        let mut built = lock(&self.client);
        if built.identity != Some(id) {
            let client = build_client(spec, Some(&pem))
                .map_err(|why| FetchError::new(Outcome::secret_error, why.to_string()))?;
            *built = Built {
                client,
                identity: Some(id),
            };
        }
        Ok(built.client.clone())
    }

    /// The token endpoint, and the issuer identifier when it was discovered.
    async fn endpoint(
        &self,
        client: &reqwest::Client,
    ) -> Result<(Url, Option<String>), FetchError> {
        let spec = &self.spec;
        let issuer = match &spec.endpoint {
            Endpoint::TokenUrl(u) => return Ok((u.clone(), None)),
            Endpoint::Discovery(issuer) => issuer,
        };
        if let Some(d) = lock(&self.discovered).clone()
            && d.at.elapsed() < DISCOVERY_TTL
        {
            return Ok((d.token_url, Some(d.issuer)));
        }
        let failed = |why: &dyn std::fmt::Display| {
            FetchError::new(
                Outcome::discovery_error,
                format!(
                    "credential {}: discovery from {} failed: {why}",
                    spec.name,
                    redact_url(issuer)
                ),
            )
        };
        let meta = crate::oauth::metadata::metadata(client, issuer.as_str(), issuer.as_str())
            .await
            .map_err(|e| failed(&e))?;
        // An https:// issuer's token endpoint must be https:// too (RFC 6749
        // §3.2): the client's credentials are sent there.
        let token_url = crate::oauth::metadata::metadata_endpoint(&meta, "token_endpoint", issuer)
            .map_err(|e| failed(&e))?;
        let d = Discovered {
            token_url,
            // The identifier as the server states it: the assertion's `aud`.
            issuer: meta
                .get("issuer")
                .and_then(|i| i.as_str())
                .unwrap_or(issuer.as_str())
                .to_owned(),
            at: Instant::now(),
        };
        tracing::info!(credential = %spec.name, token_endpoint = %redact_url(&d.token_url), "token endpoint discovered");
        *lock(&self.discovered) = Some(d.clone());
        Ok((d.token_url, Some(d.issuer)))
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        token_url: &Url,
        proof: &Proof<'_>,
    ) -> Result<Issued, FetchError> {
        let spec = &self.spec;
        let req = build_request(spec, proof);
        let mut rb = client
            .post(token_url.clone())
            .header(header::CONTENT_TYPE, req.content_type)
            .header(header::ACCEPT, "application/json")
            .body(req.body);
        if let Some(auth) = req.authorization {
            rb = rb.header(header::AUTHORIZATION, auth);
        }
        let mut resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(token_url, &e))?;
        let status = resp.status();
        let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(FetchError::new(
                            Outcome::invalid_response,
                            format!(
                                "credential {}: token response larger than 64 KiB",
                                spec.name
                            ),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(token_url, &e)),
            }
        }
        parse_response(spec, status, retry_after.as_ref(), &body)
    }

    fn transport_error(&self, token_url: &Url, e: &reqwest::Error) -> FetchError {
        let spec = &self.spec;
        let url = redact_url(token_url);
        let (outcome, what) = if e.is_timeout() {
            (
                Outcome::timeout,
                format!(
                    "timed out after {}",
                    humantime::format_duration(spec.timeout)
                ),
            )
        } else if e.is_connect() {
            (
                Outcome::connect_error,
                format!("could not connect ({})", crate::cause::root_cause(e)),
            )
        } else {
            (
                Outcome::connect_error,
                format!("failed ({})", crate::cause::root_cause(e)),
            )
        };
        FetchError::new(
            outcome,
            format!("credential {}: token request to {url} {what}", spec.name),
        )
    }
}
