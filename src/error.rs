//! The one place where request errors become responses. Each error knows its
//! source (pingora's habit): the identity provider (503), the upstream (502/504)
//! or the client (400); that decides the status and what is logged.

use crate::proxy::ProxyBody;
use crate::token::Unavailable;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

/// Why the sidecar answered a request itself instead of forwarding the upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No usable token: the identity provider failed or has not answered yet.
    #[error("credential {}: no valid token: {}", .0.credential, .0.reason)]
    TokenUnavailable(Unavailable),
    /// The upstream could not be reached or broke the exchange.
    #[error("upstream {route}: {reason}")]
    Upstream { route: String, reason: String },
    /// The upstream did not answer within `request_timeout`.
    #[error("upstream {route}: no response within the request timeout")]
    UpstreamTimeout { route: String },
    /// The client sent something we cannot forward.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request path has no unambiguous normal form.
    #[error("bad request: {0}")]
    BadPath(#[from] crate::path::BadPath),
    /// A method this listener never forwards (`CONNECT` on inbound).
    #[error("method not allowed: {0}")]
    MethodNotAllowed(&'static str),
}

impl ProxyError {
    /// The answer for this error: JSON with an `error` code, never a secret.
    pub fn into_response(self) -> Response<ProxyBody> {
        let (status, body, retry_after) = match &self {
            ProxyError::TokenUnavailable(u) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "error": "token_unavailable",
                    "credential": &*u.credential,
                    "reason": &*u.reason,
                }),
                Some(u.retry_after.as_secs().max(1)),
            ),
            ProxyError::Upstream { route, reason } => (
                StatusCode::BAD_GATEWAY,
                serde_json::json!({"error": "upstream_unavailable", "route": route, "reason": reason}),
                None,
            ),
            ProxyError::UpstreamTimeout { route } => (
                StatusCode::GATEWAY_TIMEOUT,
                serde_json::json!({"error": "upstream_timeout", "route": route}),
                None,
            ),
            ProxyError::BadRequest(reason) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "bad_request", "reason": reason}),
                None,
            ),
            ProxyError::BadPath(why) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "bad_request", "reason": why.to_string()}),
                None,
            ),
            ProxyError::MethodNotAllowed(reason) => (
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "method_not_allowed", "reason": reason}),
                None,
            ),
        };
        let mut resp = json_response(status, &body);
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A small JSON answer.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
