//! How inbound refusals look (RFC 6750 §3): 401 with `WWW-Authenticate: Bearer`
//! (no error code when no token came, `error="invalid_token"` otherwise), 403
//! with `error="insufficient_scope", scope="…"`, 403 `access_denied` for
//! default-deny, 400 `invalid_request` for two `Authorization` headers, 503
//! `keys_unavailable` or `introspection_unavailable`. gRPC callers get HTTP
//! 200 with `grpc-status` 16 (UNAUTHENTICATED), 7 (PERMISSION_DENIED) or 3
//! (INVALID_ARGUMENT) instead.
//! Bodies say what failed and never echo the token.

use crate::error::json_response;
use crate::proxy::ProxyBody;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

/// Why a request was not forwarded.
pub enum Refusal<'a> {
    /// The request is ambiguous about its credentials (two `Authorization`s).
    InvalidRequest(&'static str),
    NoToken,
    InvalidToken(&'static str),
    InsufficientScope(&'a [String]),
    AccessDenied,
    NoKeys,
    /// Introspection is configured with `on_error = "deny"` and failed.
    IntrospectionUnavailable,
}

pub fn refuse(r: &Refusal<'_>, grpc: bool) -> Response<ProxyBody> {
    let (status, code, message, challenge) = match r {
        Refusal::InvalidRequest(reason) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            (*reason).to_owned(),
            Some("Bearer error=\"invalid_request\"".to_owned()),
        ),
        Refusal::NoToken => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "no bearer token".to_owned(),
            Some("Bearer".to_owned()),
        ),
        Refusal::InvalidToken(reason) => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            (*reason).to_owned(),
            Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{reason}\""
            )),
        ),
        Refusal::InsufficientScope(scopes) => {
            let s = scopes.join(" ");
            (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("requires scope {s}"),
                Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{s}\""
                )),
            )
        }
        Refusal::AccessDenied => (
            StatusCode::FORBIDDEN,
            "access_denied",
            "no rule allows this request".to_owned(),
            None,
        ),
        Refusal::NoKeys => (
            StatusCode::SERVICE_UNAVAILABLE,
            "keys_unavailable",
            "no verification keys loaded yet".to_owned(),
            None,
        ),
        Refusal::IntrospectionUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "introspection_unavailable",
            "the token could not be checked with the issuer".to_owned(),
            None,
        ),
    };
    if grpc {
        let grpc_status = match status {
            StatusCode::BAD_REQUEST => "3",
            StatusCode::UNAUTHORIZED => "16",
            StatusCode::FORBIDDEN => "7",
            _ => "14",
        };
        let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from_static(grpc_status));
        if let Ok(v) = HeaderValue::try_from(format!("{code}: {message}")) {
            h.insert("grpc-message", v);
        }
        return resp;
    }
    let mut resp = json_response(
        status,
        &serde_json::json!({"error": code, "error_description": message}),
    );
    if let Some(c) = challenge.and_then(|c| HeaderValue::try_from(c).ok()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
    }
    resp
}
