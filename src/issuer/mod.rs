//! The built-in authorization server: APIs, M2M apps and their grants, the
//! token endpoint, JWKS and discovery. It runs alone (`m2m-sidecar issuer`) or
//! inside the sidecar when the config has an `[issuer]` table.
//!
//! Also: client authentication by secret or `private_key_jwt` ([`assertion`]),
//! introspection and revocation ([`introspect`]), the management API
//! ([`management`]), runtime state ([`store`]) and key rotation ([`keyring`]).

pub mod assertion;
pub mod introspect;
pub mod keyring;
pub mod keys;
pub mod limit;
pub mod management;
pub mod registry;
pub mod store;
pub mod token;

use crate::config::IssuerSpec;
use crate::error::json_response;
use crate::proxy::ProxyBody;
use crate::proxy::server::Handler;
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

/// Token requests larger than this are refused.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    client_id: String,
    audience: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ManagementLabels {
    method: String,
    status: u16,
}

/// The running issuer.
pub struct Issuer {
    url: String,
    ttl: Duration,
    store: store::Store,
    auth: assertion::ClientAuth,
    max_body: usize,
    keys: keyring::KeyRing,
    metrics: Metrics,
    issued: Family<IssuedLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    throttled: Counter,
    management_calls: Family<ManagementLabels, Counter>,
}

impl Issuer {
    /// Load (or create) keys and build the registry from the config.
    /// `max_body`: the largest request body read (`limits.max_body_bytes`).
    pub fn new(spec: &IssuerSpec, max_body: usize) -> Result<Self, String> {
        let store = store::Store::open(spec)?;
        let url = spec.url.to_string();
        let auth = assertion::ClientAuth::new(&url);
        let keys = keyring::KeyRing::open(&spec.state, spec.signing_alg, &url, spec.token_ttl)?;
        let mut metrics = Metrics::default();
        let issued = Family::<IssuedLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        metrics.register(
            "m2m_issuer_tokens_issued",
            "Access tokens issued, by app and audience",
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
        let throttled = Counter::default();
        metrics.register(
            "m2m_issuer_auth_throttled",
            "Token requests refused with 429 after too many failed authentications of one client",
            throttled.clone(),
        );
        Ok(Issuer {
            url,
            auth,
            max_body,
            ttl: spec.token_ttl,
            store,
            keys,
            metrics,
            issued,
            errors,
            throttled,
            management_calls,
        })
    }

    /// Read a form or JSON request body (at most `limits.max_body_bytes`) with its headers.
    async fn read(&self, req: Request<Incoming>) -> Result<token::TokenRequest, token::TokenError> {
        let max = self.max_body;
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, max)
            .collect()
            .await
            .map_err(|_| token::TokenError {
                code: "invalid_request",
                description: format!("the body is larger than {max} bytes or unreadable"),
                basic: false,
                retry_after: None,
            })?
            .to_bytes();
        token::TokenRequest::parse(&parts.headers, &body)
    }

    async fn introspect(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let result = self.read(req).await.and_then(|r| {
            token::authenticate(&self.store.snapshot(), &self.auth, &r)?;
            r.get("token")
                .map(str::to_owned)
                .ok_or_else(|| token::TokenError::new("invalid_request", "token is required"))
        });
        match result {
            Ok(t) => no_store(json_response(
                StatusCode::OK,
                &introspect::answer(&self.keys.current().verifier, &self.store.snapshot(), &t),
            )),
            Err(e) => self.token_error(&e),
        }
    }

    async fn management(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let method = req.method().to_string();
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
        let max = self.max_body;
        let result = match Limited::new(body, max).collect().await {
            Ok(body) => {
                let body = body.to_bytes();
                let path = parts.uri.path();
                management::handle(
                    &self.store,
                    &self.keys,
                    &parts.method,
                    path,
                    &parts.headers,
                    &body,
                )
                .await
            }
            Err(_) => Err(management::MgmtError::BadRequest(format!(
                "the body is larger than {max} bytes"
            ))),
        };
        match result {
            Ok((StatusCode::NO_CONTENT, _)) => {
                let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
                *resp.status_mut() = StatusCode::NO_CONTENT;
                no_store(resp)
            }
            Ok((status, body)) => no_store(json_response(status, &body)),
            Err(e) => {
                let (code, challenge) = e.code_and_challenge();
                let mut resp = json_response(
                    e.status(),
                    &serde_json::json!({"error": code, "error_description": e.to_string()}),
                );
                if let Some(c) = challenge.and_then(|c| HeaderValue::try_from(c).ok()) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
                }
                no_store(resp)
            }
        }
    }

    /// `POST /oauth/revoke` (RFC 7009): an app revokes a token issued to it.
    /// Unknown or invalid tokens are answered 200, as the RFC asks.
    async fn revoke(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let parsed = self.read(req).await.and_then(|r| {
            let caller = token::authenticate(&self.store.snapshot(), &self.auth, &r)?
                .client_id
                .clone();
            let t = r.get("token").map(str::to_owned);
            t.map(|t| (caller, t))
                .ok_or_else(|| token::TokenError::new("invalid_request", "token is required"))
        });
        let (caller, token) = match parsed {
            Ok(p) => p,
            Err(e) => return self.token_error(&e),
        };
        let Some(claims) = self.keys.current().verifier.verify(&token) else {
            return no_store(json_response(StatusCode::OK, &serde_json::json!({})));
        };
        let owner = claims
            .get("client_id")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        if owner != caller {
            let e = token::TokenError::new(
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
        let stored = self
            .store
            .change(|reg, _| {
                reg.revoked.insert(jti, exp);
                Ok::<_, String>(())
            })
            .await;
        match stored {
            Ok(()) => no_store(json_response(StatusCode::OK, &serde_json::json!({}))),
            Err(e) => {
                tracing::error!(error = %e, "cannot record a revocation");
                let body = serde_json::json!({"error": "temporarily_unavailable"});
                no_store(json_response(StatusCode::SERVICE_UNAVAILABLE, &body))
            }
        }
    }

    async fn token(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let result = self
            .read(req)
            .await
            .and_then(|r| token::authorize(&self.store.snapshot(), &self.auth, &r));
        let grant = match result {
            Ok(g) => g,
            Err(e) => return self.token_error(&e),
        };
        let access_token =
            match token::mint(&self.keys.current().signing, &self.url, self.ttl, &grant) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a token");
                    return no_store(json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({"error": "server_error"}),
                    ));
                }
            };
        self.issued
            .get_or_create(&IssuedLabels {
                client_id: grant.client_id.clone(),
                audience: grant.audience.clone(),
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

    fn token_error(&self, e: &token::TokenError) -> Response<ProxyBody> {
        self.errors
            .get_or_create(&ErrorLabels {
                code: e.code.to_owned(),
            })
            .inc();
        let mut resp = json_response(
            e.status(),
            &serde_json::json!({"error": e.code, "error_description": e.description}),
        );
        if let Some(wait) = e.retry_after {
            self.throttled.inc();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        if e.status() == StatusCode::UNAUTHORIZED && e.basic {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"m2m-sidecar\""),
            );
        }
        no_store(resp)
    }

    /// RFC 8414 metadata; `scopes_supported` follows runtime changes to the APIs.
    fn discovery(&self) -> Response<ProxyBody> {
        let url = &self.url;
        let reg = self.store.snapshot();
        let mut scopes: Vec<&str> = reg
            .apis
            .iter()
            .flat_map(|a| a.scopes.iter().map(String::as_str))
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

    fn metrics_text(&self) -> Response<ProxyBody> {
        let mut out = String::new();
        match prometheus_client::encoding::text::encode(&mut out, &self.metrics) {
            Ok(()) => static_json(
                Bytes::from(out),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            Err(_) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": "metrics"}),
            ),
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
            (&Method::GET, "/metrics") => self.metrics_text(),
            (_, "/oauth/token") => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": "invalid_request", "error_description": "use POST"}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
            ),
        }
    }
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
