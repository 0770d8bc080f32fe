//! Bodies on both sides of the proxy core: request bodies streamed on as they
//! arrive, and answers that are either the upstream's streamed body or a small
//! one the sidecar wrote itself (with the JSON builder those use).

use super::idle::IdleTimeout;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Request bodies as they arrive, streamed on unchanged (failing if they stall).
pub type Body = IdleTimeout<Incoming>;
/// Answers: the upstream's streamed body, or a small one the sidecar wrote.
pub type ProxyBody = Either<IdleTimeout<Incoming>, Full<Bytes>>;

/// A body the sidecar wrote itself.
pub fn full(bytes: Bytes) -> ProxyBody {
    Either::Right(Full::new(bytes))
}

/// A small JSON answer, never cached (`Cache-Control: no-store`).
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
