//! Why the proxy core answered a request itself instead of passing on the
//! upstream's answer. Each error knows its source (pingora's habit): the
//! client (4xx), the upstream (502/504) or the identity provider (503); that
//! decides the status, and the upstream's own error is kept as the cause.
//! How an error looks on the wire is `respond`'s business, not this module's.

use crate::path::BadPath;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// Who caused a [`ProxyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something we cannot forward.
    Downstream,
    /// The upstream could not be reached, broke the exchange or was too slow.
    Upstream,
    /// The identity provider gave no usable token for the route.
    IdentityProvider,
}

/// Why the sidecar answered a request itself instead of forwarding the upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No usable token: the identity provider failed or has not answered yet.
    /// (The fields of `token::Unavailable`: the proxy core knows no credentials.)
    #[error("credential {credential}: no valid token: {reason}")]
    TokenUnavailable {
        credential: Arc<str>,
        reason: Arc<str>,
        retry_after: Duration,
    },
    /// The upstream could not be reached or broke the exchange.
    #[error("upstream {route}: {reason}")]
    Upstream {
        route: String,
        /// What the client is told: the innermost cause, in words.
        reason: String,
        #[source]
        cause: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// The upstream did not answer within `request_timeout`.
    #[error("upstream {route}: no response within the request timeout")]
    UpstreamTimeout { route: String },
    /// The client sent something we cannot forward.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request path has no unambiguous normal form.
    #[error("bad request: {0}")]
    BadPath(#[from] BadPath),
    /// The client's request body ended early while it was being forwarded:
    /// bad framing (400), or it stalled past `body_idle_timeout` (408).
    #[error("request body: {reason}")]
    ClientBody { stalled: bool, reason: String },
    /// A method this listener never forwards (`CONNECT` on inbound).
    #[error("method not allowed: {0}")]
    MethodNotAllowed(&'static str),
}

impl ProxyError {
    /// Who caused it.
    pub fn esource(&self) -> ErrorSource {
        match self {
            ProxyError::TokenUnavailable { .. } => ErrorSource::IdentityProvider,
            ProxyError::Upstream { .. } | ProxyError::UpstreamTimeout { .. } => {
                ErrorSource::Upstream
            }
            ProxyError::BadRequest(_)
            | ProxyError::ClientBody { .. }
            | ProxyError::BadPath(_)
            | ProxyError::MethodNotAllowed(_) => ErrorSource::Downstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_knows_its_source_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ProxyError::Upstream {
            route: "orders".into(),
            reason: "cannot connect: refused".into(),
            cause: Some(Box::new(io)),
        };
        assert_eq!(e.esource(), ErrorSource::Upstream);
        assert_eq!(e.to_string(), "upstream orders: cannot connect: refused");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("refused")
        );
        let e = ProxyError::TokenUnavailable {
            credential: "orders".into(),
            reason: "idp down".into(),
            retry_after: Duration::from_secs(1),
        };
        assert_eq!(e.esource(), ErrorSource::IdentityProvider);
        assert_eq!(
            ProxyError::BadRequest("x").esource(),
            ErrorSource::Downstream
        );
    }
}
