//! How inbound refusals look (RFC 6750 §3): 401 with `WWW-Authenticate: Bearer`
//! (no error code when no token came, `error="invalid_token"` otherwise), 403
//! with `error="insufficient_scope", scope="…"`, 403 `access_denied` for
//! default-deny, 400 `invalid_request` for two `Authorization` headers, 503
//! `keys_unavailable` or `introspection_unavailable`. gRPC callers get HTTP
//! 200 with `grpc-status` 16 (UNAUTHENTICATED), 7 (PERMISSION_DENIED), 3
//! (INVALID_ARGUMENT) or 14 (UNAVAILABLE) instead ([`crate::respond`]).
//! Bodies say what failed and never echo the token.

use crate::respond::Synthetic;
use http::StatusCode;

/// Why a request was not forwarded.
pub enum Refusal<'a> {
    /// The request is ambiguous about its credentials (two `Authorization`s).
    InvalidRequest(&'static str),
    NoToken,
    /// Why: the reason the body and the metrics label give.
    InvalidToken(crate::inbound::verify::Invalid),
    InsufficientScope(&'a [String]),
    AccessDenied,
    NoKeys,
    /// Introspection is configured with `on_error = "deny"` and failed.
    IntrospectionUnavailable,
}

impl<'a> From<&Refusal<'a>> for Synthetic<'static> {
    fn from(r: &Refusal<'a>) -> Self {
        match r {
            Refusal::InvalidRequest(reason) => {
                Synthetic::new(StatusCode::BAD_REQUEST, "invalid_request")
                    .described(*reason)
                    .challenge("Bearer error=\"invalid_request\"")
            }
            Refusal::NoToken => Synthetic::new(StatusCode::UNAUTHORIZED, "invalid_token")
                .described("no bearer token")
                .challenge("Bearer"),
            Refusal::InvalidToken(reason) => {
                Synthetic::new(StatusCode::UNAUTHORIZED, "invalid_token")
                    .described(reason.reason())
                    .challenge(format!(
                        "Bearer error=\"invalid_token\", error_description=\"{reason}\""
                    ))
            }
            Refusal::InsufficientScope(scopes) => {
                let s = scopes.join(" ");
                Synthetic::new(StatusCode::FORBIDDEN, "insufficient_scope")
                    .challenge(format!(
                        "Bearer error=\"insufficient_scope\", scope=\"{s}\""
                    ))
                    .described(format!("requires scope {s}"))
            }
            Refusal::AccessDenied => Synthetic::new(StatusCode::FORBIDDEN, "access_denied")
                .described("no rule allows this request"),
            Refusal::NoKeys => Synthetic::new(StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable")
                .described("no verification keys loaded yet"),
            Refusal::IntrospectionUnavailable => {
                Synthetic::new(StatusCode::SERVICE_UNAVAILABLE, "introspection_unavailable")
                    .described("the token could not be checked with the issuer")
            }
        }
    }
}
