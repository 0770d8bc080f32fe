//! How the issuer's refusals look: RFC 6749 §5.2 JSON (`error`,
//! `error_description`) for the token, introspection and revocation
//! endpoints, with `Cache-Control: no-store` and `Pragma: no-cache`; 401 with
//! `WWW-Authenticate: Basic` when the client authenticated with Basic, 429 with
//! `Retry-After` when failures are throttled. (The management API's answers
//! are beside `MgmtError`.) The issuer speaks JSON only: its callers are OAuth
//! clients, never gRPC ones.

use super::token_request::TokenError;
use crate::respond::Synthetic;
use http::StatusCode;
use std::time::Duration;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes or unreadable")]
    TooLarge(usize),
    #[error("the body was not received within {0:?}")]
    Timeout(Duration),
}

/// 400 (as before) for a body over the cap; 408 and the connection closed
/// for one that did not arrive in time (nginx's `client_body_timeout`).
impl From<&BodyError> for Synthetic<'static> {
    fn from(e: &BodyError) -> Self {
        let s = match e {
            BodyError::TooLarge(_) => Synthetic::new(StatusCode::BAD_REQUEST, "invalid_request"),
            BodyError::Timeout(_) => {
                Synthetic::new(StatusCode::REQUEST_TIMEOUT, "invalid_request").close()
            }
        };
        s.described(e.to_string()).pragma_no_cache()
    }
}

impl<'a> From<&'a TokenError> for Synthetic<'a> {
    fn from(e: &'a TokenError) -> Self {
        let status = e.status();
        let mut s = Synthetic::new(status, e.code)
            .described(e.description.as_str())
            .pragma_no_cache();
        s.retry_after = e.retry_after;
        if status == StatusCode::UNAUTHORIZED && e.basic {
            s = s.challenge("Basic realm=\"m2m-sidecar\"");
        }
        s
    }
}

/// An authenticated app without `tokens:introspect` on the management audience.
pub fn introspection_forbidden(audience: &str) -> Synthetic<'static> {
    Synthetic::new(StatusCode::FORBIDDEN, "insufficient_scope")
        .described(format!(
            "introspection needs the scope tokens:introspect granted on {audience}"
        ))
        .pragma_no_cache()
}

/// A failure of ours (the cause is logged, never sent): 500 `server_error`.
pub fn server_error() -> Synthetic<'static> {
    Synthetic::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error").pragma_no_cache()
}

/// A revocation that could not be recorded: 503 `temporarily_unavailable`.
pub fn not_recorded() -> Synthetic<'static> {
    Synthetic::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable").pragma_no_cache()
}

/// `/metrics` could not be encoded.
pub fn metrics_failed() -> Synthetic<'static> {
    Synthetic::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics")
}

/// The token endpoint with a method other than POST.
pub fn use_post() -> Synthetic<'static> {
    Synthetic::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request").described("use POST")
}

pub fn not_found() -> Synthetic<'static> {
    Synthetic::new(StatusCode::NOT_FOUND, "not_found")
}
