//! Sending a token request over HTTP (reqwest on rustls/aws-lc-rs) and turning
//! transport failures into [`FetchError`]s that name the credential.

use super::grant::{FetchError, Issued, MAX_BODY, build_request, parse_response, scrub};
use super::secret;
use crate::config::CredentialSpec;
use crate::config::redact_url;
use crate::metrics::Outcome;
use http::header;
use std::sync::Arc;

/// One credential's HTTP client for its token endpoint.
pub struct Fetcher {
    spec: Arc<CredentialSpec>,
    client: reqwest::Client,
}

impl Fetcher {
    /// Build the client: no redirects, no proxy from the environment (the sidecar
    /// may itself be the `HTTP_PROXY`), the credential's timeouts and extra roots.
    pub fn new(spec: Arc<CredentialSpec>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(spec.connect_timeout)
            .timeout(spec.timeout)
            .user_agent(concat!("m2m-sidecar/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &spec.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("bad PEM in ca_file {}: {e}", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("credential {}: cannot build HTTP client: {e}", spec.name))?;
        Ok(Fetcher { spec, client })
    }

    /// Ask the token endpoint for a token once.
    pub async fn fetch(&self) -> Result<Issued, FetchError> {
        let spec = &self.spec;
        let secret = secret::read(&spec.secret).map_err(|why| {
            FetchError::new(
                Outcome::secret_error,
                format!("credential {}: cannot read client secret: {why}", spec.name),
            )
        })?;
        let result = self.send(&secret).await;
        result.map_err(|mut e| {
            scrub(&mut e.message, &self.spec, &secret);
            e
        })
    }

    async fn send(&self, secret: &str) -> Result<Issued, FetchError> {
        let spec = &self.spec;
        let req = build_request(spec, secret);
        let mut rb = self
            .client
            .post(spec.token_url.clone())
            .header(header::CONTENT_TYPE, req.content_type)
            .header(header::ACCEPT, "application/json")
            .body(req.body);
        if let Some(auth) = req.authorization {
            rb = rb.header(header::AUTHORIZATION, auth);
        }
        let mut resp = rb.send().await.map_err(|e| self.transport_error(&e))?;
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
                Err(e) => return Err(self.transport_error(&e)),
            }
        }
        parse_response(spec, status, retry_after.as_ref(), &body)
    }

    fn transport_error(&self, e: &reqwest::Error) -> FetchError {
        let spec = &self.spec;
        let url = redact_url(&spec.token_url);
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
                format!("could not connect ({})", root_cause(e)),
            )
        } else {
            (
                Outcome::connect_error,
                format!("failed ({})", root_cause(e)),
            )
        };
        FetchError::new(
            outcome,
            format!("credential {}: token request to {url} {what}", spec.name),
        )
    }
}

/// The innermost error's text: "Connection refused (os error 111)" rather than
/// reqwest's wrapper, which repeats the URL.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
