//! An upstream that answers with what it received (method, URI, headers, body
//! size) as JSON and records every request; plus a few special paths:
//! `/stream-in` reports body progress as it arrives, `/stream-out/N` sends N bytes
//! but holds back all but the first chunk until released, `/ws` accepts an
//! upgrade and echoes bytes, `/redirect` answers 302.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

type Body = BoxBody<Bytes, Infallible>;

/// A request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    /// The proxy's end of the connection the request came on.
    pub peer: SocketAddr,
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// Answer 401 to requests carrying this `Authorization`.
    reject: Mutex<Option<String>>,
    /// Bytes of `/stream-in` bodies received so far.
    received: AtomicU64,
    release: Notify,
}

#[derive(Clone)]
pub struct Echo {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Echo {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// An HTTPS echo offering h2 and http/1.1 by ALPN.
    pub async fn start_tls(tls: rustls::ServerConfig) -> Self {
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let (st, tls) = (st.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(st.clone(), peer, req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let io = TokioIo::new(stream);
                            let _ = builder.serve_connection_with_upgrades(io, svc).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let io = TokioIo::new(stream);
                            let _ = builder.serve_connection_with_upgrades(io, svc).await;
                        }
                    }
                });
            }
        });
        Echo { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn reject(&self, authorization: Option<&str>) {
        *self.state.reject.lock().unwrap() = authorization.map(str::to_owned);
    }

    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::SeqCst)
    }

    /// Let `/stream-out` send the rest of its body.
    pub fn release(&self) {
        self.state.release.notify_one();
    }
}

async fn answer(
    state: Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let seen = Seen {
        at: Instant::now(),
        peer,
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let rejected = state.reject.lock().unwrap().clone();
    if rejected.is_some() && seen.authorization() == rejected.as_deref() {
        return Ok(full(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_token"}"#.into(),
        ));
    }
    let path = req.uri().path().to_owned();
    if let Some(resp) = special(&state, &path, &mut req) {
        return Ok(resp);
    }
    Ok(echo(&state, &path, &seen, req.into_body()).await)
}

/// The special paths: `/ws` (an upgrade echoing bytes), `/redirect` (302),
/// `/stream-out/N`.
fn special(state: &Arc<State>, path: &str, req: &mut Request<Incoming>) -> Option<Response<Body>> {
    if path == "/ws" {
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(empty())
            .unwrap();
        return Some(resp);
    }
    if path == "/redirect" {
        let mut resp = full(StatusCode::FOUND, String::new());
        resp.headers_mut()
            .insert("location", "/elsewhere".parse().unwrap());
        return Some(resp);
    }
    if let Some(n) = path.strip_prefix("/stream-out/") {
        return Some(stream_out(state.clone(), n.parse().unwrap_or(0)));
    }
    None
}

/// What the request was, as JSON, with hop-by-hop headers the proxy must
/// strip on the way back (`/stream-in` reports its progress as it arrives).
async fn echo(state: &State, path: &str, seen: &Seen, mut body: Incoming) -> Response<Body> {
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            if path == "/stream-in" {
                state
                    .received
                    .fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = seen
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let echo = serde_json::json!({
        "method": seen.method,
        "uri": seen.uri,
        "headers": headers,
        "body_len": len,
    });
    let mut resp = full(StatusCode::OK, echo.to_string());
    // Hop-by-hop headers the proxy must strip on the way back; `/close` also
    // closes the connection after answering.
    let connection = if path == "/close" {
        "close, x-upstream-hop"
    } else {
        "x-upstream-hop"
    };
    resp.headers_mut()
        .insert("connection", connection.parse().unwrap());
    resp.headers_mut()
        .insert("x-upstream-hop", "1".parse().unwrap());
    resp.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    resp
}

/// The first 64 KiB at once, the rest only after [`Echo::release`].
fn stream_out(state: Arc<State>, total: usize) -> Response<Body> {
    const CHUNK: usize = 64 * 1024;
    let stream = futures_util::stream::unfold((0usize, false), move |(sent, released)| {
        let state = state.clone();
        async move {
            if sent >= total {
                return None;
            }
            // The first chunk goes at once; the next waits for a release.
            if sent > 0 && !released {
                state.release.notified().await;
            }
            let released = sent > 0;
            let n = CHUNK.min(total - sent);
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; n]))),
                (sent + n, released),
            ))
        }
    });
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

fn full(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

fn empty() -> Body {
    BodyExt::boxed(Full::new(Bytes::new()))
}
