//! The built-in authorization server: APIs, M2M apps and their grants, the
//! token endpoint, JWKS and discovery. It runs alone (`m2m-sidecar issuer`) or
//! inside the sidecar when the config has an `[issuer]` table.
//!
//! The token endpoint: the request and its §5.2 errors ([`token_request`]),
//! the grant decision ([`grant`]), the signed access token ([`mint`]).
//! Also: client authentication by secret or `private_key_jwt` ([`client_auth`]),
//! introspection and revocation ([`introspect`]), the management API
//! ([`management`]), runtime state ([`store`]) and key rotation ([`keyring`]).

pub mod answer;
pub mod client_auth;
pub mod grant;
pub mod introspect;
pub mod keyring;
pub mod keys;
pub mod limit;
pub mod management;
pub mod mint;
pub mod registry;
pub mod store;
pub mod token_request;

use crate::config::{IssuerSpec, Limits};
use crate::oauth::ids::Scope;
use crate::proxy::ProxyBody;
use crate::proxy::body::json_response;
use crate::proxy::server::Handler;
use crate::respond::{Format, refuse};
use answer::BodyError;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as Metrics;
use std::sync::Arc;
use std::time::Duration;

/// Labels of `m2m_issuer_tokens_issued_total`: the audience only, which is
/// always a registered API. Never the client id: `/metrics` is not
/// authenticated, and would otherwise list every app that got a token (and,
/// by the management audience, which ones are admin apps), against "known and
/// unknown client ids answer alike".
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    audience: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ManagementLabels {
    /// One of the standard methods, else `other`: never the request's own
    /// text, so invented methods cannot grow `/metrics`.
    method: &'static str,
    status: u16,
}

/// The metric label for `method`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The address a request came from, if the listener recorded it.
fn peer(req: &Request<Incoming>) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<crate::proxy::server::PeerAddr>()
        .map(|p| p.0.ip())
}

/// Why the issuer cannot start: its state or its keys. The texts name files
/// and client ids, never secrets or key material.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error(transparent)]
    Store(#[from] store::OpenError),
    /// The signing key, the retired keys, or the verifier built from them.
    #[error(transparent)]
    Keys(#[from] keyring::KeyringError),
}

/// The running issuer.
pub struct Issuer {
    url: String,
    ttl: Duration,
    store: Arc<store::Store>,
    auth: client_auth::ClientAuthenticator,
    revokes: limit::RevokeLimiter,
    max_body: usize,
    body_timeout: Duration,
    keys: Arc<keyring::KeyRing>,
    metrics: Metrics,
    issued: Family<IssuedLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    throttled: Counter,
    management_calls: Family<ManagementLabels, Counter>,
    store_up: prometheus_client::metrics::gauge::Gauge,
}

impl Issuer {
    /// Open the store (migrated, a JSON state of earlier versions imported
    /// once), load (or create) the keys and build the registry.
    /// `limits`: the largest request body read (`max_body_bytes`) and how long
    /// it may take to arrive (`body_read_timeout`).
    pub async fn open(spec: &IssuerSpec, limits: &Limits) -> Result<Self, IssuerError> {
        let store = store::Store::open(spec).await?;
        let url = spec.url.to_string();
        let auth = client_auth::ClientAuthenticator::new(&url);
        let keys =
            keyring::KeyRing::open(store.clone(), spec.signing_alg, &url, spec.token_ttl).await?;
        let mut metrics = Metrics::default();
        let issued = Family::<IssuedLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        metrics.register(
            "m2m_issuer_tokens_issued",
            "Access tokens issued, by audience",
            issued.clone(),
        );
        metrics.register(
            "m2m_issuer_token_errors",
            "Token requests refused, by RFC 6749 error code",
            errors.clone(),
        );
        let management_calls = Family::<ManagementLabels, Counter>::default();
        metrics.register(
            "m2m_issuer_management_calls",
            "Management API calls, by method and answer status",
            management_calls.clone(),
        );
        let store_up = prometheus_client::metrics::gauge::Gauge::default();
        metrics.register(
            "m2m_issuer_store_up",
            "1 when the issuer's store (SQLite or PostgreSQL) answers, 0 during an outage",
            store_up.clone(),
        );
        let throttled = Counter::default();
        metrics.register(
            "m2m_issuer_auth_throttled",
            "Failed client authentications answered 429 (too many failures for the client id or source address)",
            throttled.clone(),
        );
        Ok(Issuer {
            url,
            auth,
            revokes: limit::RevokeLimiter::default(),
            max_body: limits.max_body_bytes,
            body_timeout: limits.body_read_timeout,
            ttl: spec.token_ttl,
            store,
            keys,
            metrics,
            issued,
            errors,
            throttled,
            management_calls,
            store_up,
        })
    }

    /// Read a request body: at most `limits.max_body_bytes`, in full within
    /// `limits.body_read_timeout`.
    async fn body(&self, body: Incoming) -> Result<Bytes, BodyError> {
        let max = self.max_body;
        match tokio::time::timeout(self.body_timeout, Limited::new(body, max).collect()).await {
            Err(_) => Err(BodyError::Timeout(self.body_timeout)),
            Ok(Err(_)) => Err(BodyError::TooLarge(max)),
            Ok(Ok(b)) => Ok(b.to_bytes()),
        }
    }

    /// Read a form or JSON request body with its headers and source address.
    async fn read(
        &self,
        req: Request<Incoming>,
    ) -> Result<Result<token_request::TokenRequest, token_request::TokenError>, BodyError> {
        let peer = peer(&req);
        let (parts, body) = req.into_parts();
        let body = self.body(body).await?;
        Ok(
            token_request::TokenRequest::parse(&parts.headers, &body).map(|mut r| {
                r.peer = peer;
                r
            }),
        )
    }

    /// `POST /oauth/introspect` (RFC 7662): the caller authenticates as an app
    /// granted `tokens:introspect` on the management audience (RFC 7662 §2.1
    /// asks for authorization); an authenticated app without it gets 403.
    async fn introspect(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let r = match self.read(req).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(e).await,
            Err(e) => return refuse(&e, Format::Json),
        };
        let reg = self.store.snapshot();
        let app = match grant::authenticate(&reg, &self.auth, &r) {
            Ok(app) => app,
            Err(e) => return self.fail(e).await,
        };
        let audience = self.store.management_audience();
        if app.blocked
            || !app
                .granted(audience)
                .iter()
                .any(|s| s == "tokens:introspect")
        {
            return refuse(answer::introspection_forbidden(audience), Format::Json);
        }
        let Some(t) = r.get("token") else {
            return self
                .fail(token_request::TokenError::new(
                    "invalid_request",
                    "token is required",
                ))
                .await;
        };
        no_store(json_response(
            StatusCode::OK,
            &introspect::answer(&self.keys.current().verifier, &reg, t),
        ))
    }

    async fn management(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let method = method_label(req.method());
        let resp = self.management_call(req).await;
        let labels = ManagementLabels {
            method,
            status: resp.status().as_u16(),
        };
        self.management_calls.get_or_create(&labels).inc();
        resp
    }

    async fn management_call(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let body = match self.body(body).await {
            Ok(b) => b,
            Err(e) => return refuse(&e, Format::Json),
        };
        let result = management::handle(
            &self.store,
            &self.keys,
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
            &body,
        )
        .await;
        match result {
            Ok((StatusCode::NO_CONTENT, _)) => {
                let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
                *resp.status_mut() = StatusCode::NO_CONTENT;
                no_store(resp)
            }
            Ok((status, body)) => no_store(json_response(status, &body)),
            Err(e) => refuse(&e, Format::Json),
        }
    }

    /// `POST /oauth/revoke` (RFC 7009): an app revokes a token issued to it.
    /// Unknown or invalid tokens are answered 200, as the RFC asks.
    /// Revocations are rate-limited per app ([`limit::RevokeLimiter`]): 429.
    async fn revoke(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let r = match self.read(req).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(e).await,
            Err(e) => return refuse(&e, Format::Json),
        };
        let parsed = grant::authenticate(&self.store.snapshot(), &self.auth, &r).and_then(|app| {
            let t = r.get("token").map(str::to_owned);
            t.map(|t| (app.client_id.clone(), t)).ok_or_else(|| {
                token_request::TokenError::new("invalid_request", "token is required")
            })
        });
        let (caller, token) = match parsed {
            Ok(p) => p,
            Err(e) => return self.fail(e).await,
        };
        let Some(claims) = self.keys.current().verifier.verify(&token) else {
            return no_store(json_response(StatusCode::OK, &serde_json::json!({})));
        };
        let owner = claims
            .get("client_id")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        if owner != caller {
            let e = token_request::TokenError::new(
                "unauthorized_client",
                "the token was not issued to this client",
            );
            return self.token_error(&e);
        }
        let jti = claims
            .get("jti")
            .and_then(|j| j.as_str())
            .unwrap_or_default()
            .to_owned();
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_default();
        if self.store.snapshot().token_app(&claims).is_err() {
            // Revoked already (or its app is gone): nothing to record.
            return no_store(json_response(StatusCode::OK, &serde_json::json!({})));
        }
        if let Err(wait) = self.revokes.take(caller.as_str()) {
            let mut e = token_request::TokenError::new(
                "slow_down",
                "too many revocations by this client; retry later",
            );
            e.retry_after = Some(wait);
            return self.token_error(&e);
        }
        let stored = self
            .store
            .change(None, |reg, _| {
                reg.revoked.insert(jti, exp);
                Ok::<_, store::StoreError>(())
            })
            .await;
        match stored {
            Ok(()) => no_store(json_response(StatusCode::OK, &serde_json::json!({}))),
            Err(e) => {
                tracing::error!(error = %e, "cannot record a revocation");
                refuse(answer::not_recorded(), Format::Json)
            }
        }
    }

    async fn token(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let r = match self.read(req).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(e).await,
            Err(e) => return refuse(&e, Format::Json),
        };
        // `iat` is read before the snapshot, and must be after the app's last
        // block or deletion: within that same second, wait for the next one.
        let mut tries = 0;
        let (grant, now) = loop {
            let now = crate::clock::unix_now();
            let reg = self.store.snapshot();
            let grant = match grant::authorize(&reg, &self.auth, &r) {
                Ok(g) => g,
                Err(e) => return self.fail(e).await,
            };
            match reg.not_before.get(grant.client_id.as_str()) {
                Some(nb) if now <= *nb && tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(until_next_second()).await;
                }
                Some(nb) if now <= *nb => {
                    let e = token_request::TokenError::new(
                        "temporarily_unavailable",
                        "retry in a second",
                    );
                    return self.token_error(&e);
                }
                _ => break (grant, now),
            }
        };
        let access_token = match mint::mint(
            &self.keys.current().signing,
            &self.url,
            self.ttl,
            &grant,
            now,
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a token");
                return refuse(answer::server_error(), Format::Json);
            }
        };
        self.issued
            .get_or_create(&IssuedLabels {
                audience: grant.audience.as_str().to_owned(),
            })
            .inc();
        let mut body = serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.ttl.as_secs(),
        });
        if !grant.scopes.is_empty() {
            body["scope"] = grant.scopes.join(" ").into();
        }
        no_store(json_response(StatusCode::OK, &body))
    }

    /// [`Self::token_error`], after [`limit::THROTTLED_DELAY`] when the
    /// failure is throttled.
    async fn fail(&self, e: token_request::TokenError) -> Response<ProxyBody> {
        if e.retry_after.is_some() {
            tokio::time::sleep(limit::THROTTLED_DELAY).await;
        }
        self.token_error(&e)
    }

    fn token_error(&self, e: &token_request::TokenError) -> Response<ProxyBody> {
        self.errors
            .get_or_create(&ErrorLabels {
                code: e.code.to_owned(),
            })
            .inc();
        if e.retry_after.is_some() && e.code == "invalid_client" {
            self.throttled.inc();
        }
        refuse(e, Format::Json)
    }

    /// RFC 8414 metadata; `scopes_supported` follows runtime changes to the APIs.
    fn discovery(&self) -> Response<ProxyBody> {
        let url = &self.url;
        let reg = self.store.snapshot();
        let mut scopes: Vec<&str> = reg
            .apis
            .iter()
            .flat_map(|a| a.scopes.iter().map(Scope::as_str))
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        let doc = serde_json::json!({
            "issuer": url,
            "token_endpoint": format!("{url}oauth/token"),
            "jwks_uri": format!("{url}.well-known/jwks.json"),
            "introspection_endpoint": format!("{url}oauth/introspect"),
            "revocation_endpoint": format!("{url}oauth/revoke"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": scopes,
            "response_types_supported": [],
        });
        static_json(Bytes::from(doc.to_string()), "application/json")
    }

    /// `/readyz`: `ok` when the store answers. When it does not, the answer
    /// says why and stays 200 (`degraded`): this replica still issues tokens
    /// to the apps it knows, from memory, and taking every replica out of
    /// service during a database outage would stop that; alert on
    /// `m2m_issuer_store_up` instead.
    fn readyz(&self) -> Response<ProxyBody> {
        let body = match self.store.trouble() {
            None => serde_json::json!({"status": "ok", "store": "ok"}),
            Some(why) => serde_json::json!({
                "status": "degraded",
                "store": "unavailable",
                "reason": why,
                "serving": "tokens, JWKS, introspection and the revocation feed from memory; management writes answer 503",
            }),
        };
        no_store(json_response(StatusCode::OK, &body))
    }

    fn metrics_text(&self) -> Response<ProxyBody> {
        self.store_up.set(i64::from(self.store.trouble().is_none()));
        let mut out = String::new();
        match prometheus_client::encoding::text::encode(&mut out, &self.metrics) {
            Ok(()) => static_json(
                Bytes::from(out),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            Err(_) => refuse(answer::metrics_failed(), Format::Json),
        }
    }
}

impl Handler for Issuer {
    type Conn = ();

    fn connection(&self) -> Self::Conn {}

    async fn handle(self: Arc<Self>, _: Arc<()>, req: Request<Incoming>) -> Response<ProxyBody> {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::POST, "/oauth/token") => self.token(req).await,
            (&Method::POST, "/oauth/introspect") => self.introspect(req).await,
            (&Method::POST, "/oauth/revoke") => self.revoke(req).await,
            (_, p) if p.starts_with("/api/v1/") => self.management(req).await,
            (&Method::GET, "/.well-known/jwks.json") => {
                static_json(self.keys.current().jwks.clone(), "application/json")
            }
            (
                &Method::GET,
                "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration",
            ) => self.discovery(),
            (&Method::GET, "/healthz") => {
                static_json(Bytes::from_static(b"ok\n"), "text/plain; charset=utf-8")
            }
            (&Method::GET, "/readyz") => self.readyz(),
            (&Method::GET, "/metrics") => self.metrics_text(),
            (_, "/oauth/token") => refuse(answer::use_post(), Format::Json),
            _ => refuse(answer::not_found(), Format::Json),
        }
    }
}

/// Time until the next whole Unix second.
fn until_next_second() -> Duration {
    let nanos = crate::clock::since_epoch().subsec_nanos();
    Duration::from_nanos(u64::from(1_000_000_000u32.saturating_sub(nanos)))
        + Duration::from_millis(1)
}

fn no_store(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn static_json(body: Bytes, content_type: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(body)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
