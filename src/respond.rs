//! The one place where refusals become responses. Every listener turns its
//! own errors into a [`Synthetic`] (what went wrong: status, code, words,
//! challenge), and [`refuse`] alone writes it: a small JSON body with an
//! `error` code, or, for a gRPC client (`content-type: application/grpc*`),
//! HTTP 200 with `grpc-status` and `grpc-message` (a Trailers-Only answer).
//!
//! Layering: this module knows the proxy core ([`ProxyError`], the bodies) and
//! nothing above it. Inbound, the issuer and the forward proxy each convert
//! their own errors (`From<&TheirError> for Synthetic`, beside the error), so
//! the listeners depend on `respond`, never the other way round.

use crate::proxy::ProxyError;
use crate::proxy::body::{ProxyBody, full, json_response};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use std::borrow::Cow;
use std::time::Duration;

/// How a refusal is written, chosen from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// HTTP 200 with `grpc-status` and `grpc-message`, an empty body.
    Grpc,
}

impl Format {
    /// gRPC for `content-type: application/grpc…`, else JSON. One header
    /// lookup, no allocation: listeners call it on every request. A refused
    /// `CONNECT` is never answered the gRPC way: any 2xx to `CONNECT` means
    /// "tunnel established" (RFC 9110 §9.3.6).
    pub fn of<B>(req: &Request<B>) -> Format {
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if grpc && req.method() != Method::CONNECT {
            Format::Grpc
        } else {
            Format::Json
        }
    }
}

/// An answer the sidecar writes itself. Text may borrow from the error it
/// describes; nothing here may hold a secret (it goes to the client as is).
#[derive(Debug, Clone)]
pub struct Synthetic<'a> {
    pub status: StatusCode,
    /// The gRPC status code (`grpc-status`) for gRPC clients.
    pub grpc_status: u8,
    /// The `error` field: a short machine-readable code.
    pub code: &'static str,
    /// What failed, in words (and the `grpc-message` after the code).
    pub description: Option<Cow<'a, str>>,
    /// The JSON field the description goes in: `error_description` (RFC 6749
    /// §5.2, RFC 6750), or `reason` in the proxy core's older answers.
    pub description_key: &'static str,
    /// One more JSON field (`route`, `credential`, `host`).
    pub detail: Option<(&'static str, Cow<'a, str>)>,
    /// `WWW-Authenticate` (JSON answers only).
    pub challenge: Option<Cow<'a, str>>,
    /// `Retry-After`, in whole seconds, at least 1 (JSON answers only).
    pub retry_after: Option<Duration>,
    /// Also `Pragma: no-cache` (RFC 6749 §5.1, the issuer's answers).
    pub pragma_no_cache: bool,
    /// `Connection: close`: the connection is not worth keeping.
    pub close: bool,
}

impl<'a> Synthetic<'a> {
    /// A refusal with `status` and `code`; the gRPC status follows the HTTP one.
    pub fn new(status: StatusCode, code: &'static str) -> Self {
        Synthetic {
            status,
            grpc_status: grpc_status(status),
            code,
            description: None,
            description_key: "error_description",
            detail: None,
            challenge: None,
            retry_after: None,
            pragma_no_cache: false,
            close: false,
        }
    }

    /// With `error_description`.
    pub fn described(mut self, text: impl Into<Cow<'a, str>>) -> Self {
        self.description = Some(text.into());
        self.description_key = "error_description";
        self
    }

    /// With `reason` (the proxy core's name for the description).
    pub fn because(mut self, text: impl Into<Cow<'a, str>>) -> Self {
        self.description = Some(text.into());
        self.description_key = "reason";
        self
    }

    /// With one more JSON field.
    pub fn with(mut self, key: &'static str, value: impl Into<Cow<'a, str>>) -> Self {
        self.detail = Some((key, value.into()));
        self
    }

    /// With a `WWW-Authenticate` challenge.
    pub fn challenge(mut self, value: impl Into<Cow<'a, str>>) -> Self {
        self.challenge = Some(value.into());
        self
    }

    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Also `Pragma: no-cache`.
    pub fn pragma_no_cache(mut self) -> Self {
        self.pragma_no_cache = true;
        self
    }

    /// With `Connection: close`.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }
}

/// The gRPC code for an HTTP refusal status (inbound's table from the start):
/// 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, anything
/// else UNAVAILABLE (502, 503 and 504 as Envoy maps them: worth a retry).
fn grpc_status(status: StatusCode) -> u8 {
    match status {
        StatusCode::BAD_REQUEST => 3,
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        _ => 14,
    }
}

/// The response for `why`, in `format`. The only function that writes a
/// refusal.
pub fn refuse<'a>(why: impl Into<Synthetic<'a>>, format: Format) -> Response<ProxyBody> {
    let s = why.into();
    match format {
        Format::Json => json(s),
        Format::Grpc => grpc(&s),
    }
}

#[cold]
fn json(s: Synthetic<'_>) -> Response<ProxyBody> {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), s.code.into());
    if let Some(text) = s.description {
        body.insert(s.description_key.into(), text.into_owned().into());
    }
    if let Some((key, value)) = s.detail {
        body.insert(key.into(), value.into_owned().into());
    }
    let mut resp = json_response(s.status, &serde_json::Value::Object(body));
    let h = resp.headers_mut();
    if let Some(wait) = s.retry_after {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
    }
    if let Some(c) = s
        .challenge
        .and_then(|c| HeaderValue::try_from(c.as_ref()).ok())
    {
        h.insert(header::WWW_AUTHENTICATE, c);
    }
    if s.close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if s.pragma_no_cache {
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    resp
}

#[cold]
fn grpc(s: &Synthetic<'_>) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::new()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(u16::from(s.grpc_status)));
    // The gRPC spec's Percent-Encoded: bytes outside 0x20..=0x7E, and `%`.
    let message = match &s.description {
        Some(text) => HeaderValue::try_from(grpc_percent_encode(&format!("{}: {text}", s.code))),
        None => HeaderValue::try_from(grpc_percent_encode(s.code)),
    };
    if let Ok(v) = message {
        h.insert("grpc-message", v);
    }
    if s.close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// `grpc-message` encoding (gRPC over HTTP/2, "Percent-Encoded").
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The proxy core's errors: 503 `token_unavailable` (with `Retry-After`),
/// 502 `upstream_unavailable`, 504 `upstream_timeout`, 400 `bad_request`,
/// 408 `request_timeout` (a stalled request body), 405 `method_not_allowed`.
impl<'a> From<&'a ProxyError> for Synthetic<'a> {
    fn from(e: &'a ProxyError) -> Self {
        match e {
            ProxyError::TokenUnavailable {
                credential,
                reason,
                retry_after,
            } => Synthetic::new(StatusCode::SERVICE_UNAVAILABLE, "token_unavailable")
                .because(&**reason)
                .with("credential", &**credential)
                .retry_after(*retry_after),
            ProxyError::Upstream { route, reason, .. } => {
                Synthetic::new(StatusCode::BAD_GATEWAY, "upstream_unavailable")
                    .because(reason.as_str())
                    .with("route", route.as_str())
            }
            ProxyError::UpstreamTimeout { route } => {
                Synthetic::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                    .with("route", route.as_str())
            }
            ProxyError::BadRequest(reason) => {
                Synthetic::new(StatusCode::BAD_REQUEST, "bad_request").because(*reason)
            }
            ProxyError::ClientBody {
                stalled: true,
                reason,
            } => Synthetic::new(StatusCode::REQUEST_TIMEOUT, "request_timeout")
                .because(reason.as_str()),
            ProxyError::ClientBody { reason, .. } => {
                Synthetic::new(StatusCode::BAD_REQUEST, "bad_request").because(reason.as_str())
            }
            ProxyError::BadPath(why) => {
                Synthetic::new(StatusCode::BAD_REQUEST, "bad_request").because(why.to_string())
            }
            ProxyError::MethodNotAllowed(reason) => {
                Synthetic::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
                    .because(*reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body(resp: Response<ProxyBody>) -> String {
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes());
        String::from_utf8(bytes.unwrap_or_default().to_vec()).unwrap_or_default()
    }

    fn grpc_request(method: Method) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = method;
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        req
    }

    #[test]
    fn connect_is_never_answered_the_grpc_way() {
        assert_eq!(Format::of(&grpc_request(Method::POST)), Format::Grpc);
        assert_eq!(Format::of(&grpc_request(Method::CONNECT)), Format::Json);
        assert_eq!(Format::of(&Request::new(())), Format::Json);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        let s = Synthetic::new(StatusCode::FORBIDDEN, "host_not_allowed")
            .described("call http://h:1/ … 100% \u{1}");
        let resp = refuse(s, Format::Grpc);
        assert_eq!(
            resp.headers()["grpc-message"],
            "host_not_allowed: call http://h:1/ %E2%80%A6 100%25 %01"
        );
    }

    #[tokio::test]
    async fn json_answers_keep_their_shape() {
        let e = ProxyError::TokenUnavailable {
            credential: "orders".into(),
            reason: "idp down".into(),
            retry_after: Duration::from_millis(200),
        };
        let resp = refuse(&e, Format::of(&Request::new(())));
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            body(resp).await,
            r#"{"credential":"orders","error":"token_unavailable","reason":"idp down"}"#
        );
        let s = Synthetic::new(StatusCode::UNAUTHORIZED, "invalid_token")
            .described("no bearer token")
            .challenge("Bearer")
            .pragma_no_cache();
        let resp = refuse(s, Format::Json);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(resp.headers()[header::PRAGMA], "no-cache");
        assert_eq!(
            body(resp).await,
            r#"{"error":"invalid_token","error_description":"no bearer token"}"#
        );
    }

    #[tokio::test]
    async fn grpc_clients_get_a_status_not_a_body() {
        let e = ProxyError::UpstreamTimeout {
            route: "orders".into(),
        };
        let resp = refuse(&e, Format::of(&grpc_request(Method::GET)));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert_eq!(resp.headers()["grpc-message"], "upstream_timeout");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/grpc");
        assert!(body(resp).await.is_empty());
        let s = Synthetic::new(StatusCode::FORBIDDEN, "access_denied").described("no rule");
        let resp = refuse(s, Format::Grpc);
        assert_eq!(resp.headers()["grpc-status"], "7");
        assert_eq!(resp.headers()["grpc-message"], "access_denied: no rule");
    }
}
