//! The accept loop every listener runs: HTTP/1.1 and h2c on one port (hyper-util's
//! auto builder), upgrades allowed, the `[limits]` (connection cap, request head
//! size, head read timeout, idle timeout: see [`conn`]), an `access` log line per
//! request, and graceful drain when the listener stops (shutdown, or a reload
//! that removes it): requests received whole before the stop finish; a request
//! whose head completes after it is answered `503` and never reaches the
//! handler. [`Swap`] lets a reload replace a listener's handler while its
//! connections stay open.

pub mod conn;

use super::ProxyBody;
use crate::config::Limits;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// Something that answers requests; every error is already a response.
pub trait Handler: Send + Sync + 'static {
    /// What one downstream connection keeps between its requests.
    type Conn: Send + Sync + 'static;

    /// State for a newly accepted connection.
    fn connection(&self) -> Self::Conn;

    /// State for a newly accepted connection, which may attach work to run on
    /// the connection's own task (see [`conn::Side`]); by default none.
    fn connection_on(&self, side: &mut conn::SideSlot) -> Self::Conn {
        let _ = side;
        self.connection()
    }

    fn handle(
        self: Arc<Self>,
        conn: Arc<Self::Conn>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// The client address of a request's connection, in its extensions.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// What the access log says of a request beyond what the listener knows, put
/// in the response's extensions by the handler (inbound: the verified caller).
#[derive(Clone, Debug)]
pub struct AccessNote {
    pub client_id: Option<String>,
}

/// A listener's connection counters.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub refused: Counter,
}

/// How [`serve`] runs a listener.
#[derive(Clone)]
pub struct ServeOptions {
    /// The listener's name in logs (`orders`, `inbound`, `forward_proxy`…).
    pub name: Arc<str>,
    /// Where it forwards to, for the access log (forward proxy: the request's host).
    pub upstream: Option<Arc<str>>,
    /// Read at each accepted connection, so a reload applies to new connections.
    pub limits: Arc<ArcSwap<Limits>>,
    /// Log each request (proxy listeners; not the admin or issuer).
    pub access_log: bool,
    pub metrics: ConnectionMetrics,
    /// Set when the listener stops (by [`serve`] at the latest; a reload sets
    /// it at once): requests whose head completes later are answered `503`.
    pub stopped: Arc<AtomicBool>,
    /// Put the client's address in each request's extensions ([`PeerAddr`]):
    /// the issuer throttles failures per source address.
    pub peer_addr: bool,
}

impl ServeOptions {
    /// Default limits with `drain` as the drain timeout, no access log.
    pub fn plain(name: &str, drain: Duration) -> Self {
        ServeOptions {
            name: Arc::from(name),
            upstream: None,
            limits: Arc::new(ArcSwap::from_pointee(Limits {
                drain_timeout: drain,
                ..Limits::default()
            })),
            access_log: false,
            metrics: ConnectionMetrics::default(),
            stopped: Arc::default(),
            peer_addr: false,
        }
    }
}

/// Decrements a listener's open-connection count when the connection ends.
struct Open(Gauge);

/// A connection's place in its listener's count, carried by a `CONNECT` or
/// `Upgrade` request so the tunnel that outlives the HTTP connection keeps
/// counting toward `limits.max_connections` until it ends (and keeps an HTTP/2
/// connection whose stream it is from being closed as idle).
#[derive(Clone)]
pub struct HeldConnection(
    #[allow(dead_code)] Arc<Open>,
    #[allow(dead_code)] Arc<conn::InFlight>,
);

/// Whether `req` may turn its connection into a tunnel.
fn may_tunnel<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::CONNECT || req.headers().contains_key(http::header::UPGRADE)
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serve `listener` until `shutdown` turns true, then stop accepting and let
/// in-flight requests finish for up to the limits' `drain_timeout`.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
    opts: ServeOptions,
) {
    // Each connection holds a receiver: `send` asks them to shut down
    // gracefully, `closed` tells when the last one has ended.
    let (graceful, _) = watch::channel(());
    let stopped = opts.stopped.clone();
    let opts = Arc::new(opts);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::shutdown::until_shutdown(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %opts.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let limits = opts.limits.load_full();
        if opts.metrics.open.get() >= limits.max_connections as i64 {
            // Over the cap: closed at once (the client sees the connection end).
            opts.metrics.refused.inc();
            drop(stream);
            continue;
        }
        opts.metrics.open.inc();
        let open = Arc::new(Open(opts.metrics.open.clone()));
        let held = open.clone();
        let _ = stream.set_nodelay(true);
        let activity = conn::Activity::new();
        let head_timer = conn::HeadTimer::new(activity.clone());
        let h = handler.clone();
        let mut side = None;
        let state = Arc::new(handler.connection_on(&mut side));
        let log = opts.access_log && limits.access_log;
        let o = opts.clone();
        let timeouts = conn::Timeouts {
            first_request: limits.header_read_timeout,
            idle: limits.idle_timeout,
        };
        let act = activity.clone();
        let stop_flag = stopped.clone();
        let svc = service_fn(move |mut req: Request<Incoming>| {
            let (h, state, o) = (h.clone(), state.clone(), o.clone());
            // Only listeners that ask for it (the issuer's throttle): an
            // extension costs an allocation per request.
            if o.peer_addr {
                req.extensions_mut().insert(PeerAddr(peer));
            }
            let in_flight = act.begin();
            if may_tunnel(&req) {
                hold_connection(&mut req, &held, &act);
            }
            let stopped = stop_flag.load(Ordering::Relaxed);
            async move {
                let track = |resp: Response<ProxyBody>| {
                    Ok::<_, Infallible>(resp.map(|b| conn::Tracked::new(b, in_flight)))
                };
                if stopped {
                    // The listener stopped before this request's head was
                    // received whole: not in flight, so not forwarded.
                    return track(listener_stopped(&req));
                }
                if !log {
                    return track(h.handle(state, req).await);
                }
                let started = Instant::now();
                let method = req.method().clone();
                let path = req.uri().path().to_owned();
                // Forward proxy: the host the request named (never its user info).
                let host = o
                    .upstream
                    .is_none()
                    .then(|| req.uri().authority())
                    .flatten()
                    .map(|a| match a.port() {
                        Some(p) => format!("{}:{p}", a.host()),
                        None => a.host().to_owned(),
                    });
                let resp = h.handle(state, req).await;
                access_log(&o, &method, &path, host.as_deref(), &resp, started);
                track(resp)
            }
        });
        let mut stop = graceful.subscribe();
        tokio::spawn(async move {
            let _open = open;
            let first_request = activity.accepted() + timeouts.first_request;
            let ended = match sniff(&stream, first_request, &mut stop).await {
                // HTTP/1: hyper's own connection, which reads from the start.
                Some(Sniffed::Http1) => {
                    let mut h1 = hyper::server::conn::http1::Builder::new();
                    http1_limits!(h1, head_timer, limits);
                    let connection = h1
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    conn::drive(connection, activity, timeouts, stop, side)
                        .await
                        .map_err(BoxError::from)
                }
                // HTTP/2, or not known yet: hyper-util's auto builder tells them apart.
                Some(Sniffed::Http2 | Sniffed::Unsure) => {
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    http1_limits!(builder.http1(), head_timer, limits);
                    builder
                        .http2()
                        .timer(TokioTimer::new())
                        .max_header_list_size(
                            u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX),
                        );
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .into_owned();
                    conn::drive(connection, activity, timeouts, stop, side).await
                }
                // Closed, silent until the first-request deadline, or the listener stopped.
                None => Ok(()),
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopped.store(true, Ordering::Relaxed);
    let drain = opts.limits.load().drain_timeout;
    let _ = graceful.send(());
    if tokio::time::timeout(drain, graceful.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = %opts.name,
            drain_s = drain.as_secs_f64(),
            "drain timeout: closing remaining connections"
        );
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP/1 settings every listener connection gets, on hyper's own builder
/// or on hyper-util's auto builder (two types with the same methods): one
/// list, so the two cannot drift apart.
macro_rules! http1_limits {
    ($builder:expr, $timer:expr, $limits:expr) => {
        $builder
            .timer($timer)
            .header_read_timeout($limits.header_read_timeout)
            .max_buf_size($limits.max_header_bytes)
            .writev(false)
            .keep_alive(true)
    };
}
use http1_limits;

/// The HTTP/2 connection preface a client starts an h2c connection with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say it speaks.
enum Sniffed {
    Http1,
    Http2,
    /// The start of the HTTP/2 preface, not all of it yet.
    Unsure,
}

/// Look at a new connection's first bytes without taking them, so hyper
/// reads its first request into its own buffer from the start. (hyper-util's
/// auto builder takes up to 24 bytes to tell the protocols apart and hands
/// them to hyper first: hyper then finds a partial head in its 8 KB buffer and
/// grows it to 16 KB, for the connection's life.) None: the connection ended,
/// sent nothing by `deadline`, or the listener stopped.
async fn sniff(
    stream: &tokio::net::TcpStream,
    deadline: Instant,
    stop: &mut watch::Receiver<()>,
) -> Option<Sniffed> {
    let mut buf = [0u8; 24];
    let peeked = tokio::select! {
        p = tokio::time::timeout_at(deadline, stream.peek(&mut buf)) => p,
        _ = stop.changed() => return None,
    };
    match peeked {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => None,
        Ok(Ok(n)) if buf[..n] != H2_PREFACE[..n] => Some(Sniffed::Http1),
        Ok(Ok(n)) if n == H2_PREFACE.len() => Some(Sniffed::Http2),
        Ok(Ok(_)) => Some(Sniffed::Unsure),
    }
}

/// Let a request that may become a tunnel keep its connection counted and in
/// use for as long as the tunnel lives.
#[cold]
#[inline(never)]
fn hold_connection<B>(req: &mut Request<B>, open: &Arc<Open>, activity: &Arc<conn::Activity>) {
    req.extensions_mut()
        .insert(HeldConnection(open.clone(), Arc::new(activity.begin())));
}

/// The answer to a request that arrived after its listener stopped: `503`, and
/// on HTTP/1.1 the connection closes after it.
#[cold]
#[inline(never)]
fn listener_stopped<B>(req: &Request<B>) -> Response<ProxyBody> {
    let mut resp = super::body::json_response(
        http::StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({"error": "listener_stopped"}),
    );
    if req.version() < http::Version::HTTP_2 {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

fn access_log(
    o: &ServeOptions,
    method: &http::Method,
    path: &str,
    host: Option<&str>,
    resp: &Response<ProxyBody>,
    started: Instant,
) {
    let note = resp.extensions().get::<AccessNote>();
    let upstream = host.or(o.upstream.as_deref()).unwrap_or("-");
    tracing::info!(
        target: "access",
        listener = %o.name,
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        upstream = %upstream,
        client_id = note.and_then(|n| n.client_id.as_deref()).unwrap_or("-"),
    );
}

/// A handler a reload can replace: requests on open connections go to the new
/// one from their next request on (with fresh per-connection state, since the
/// old state may belong to the old upstream).
pub struct Swap<H> {
    current: ArcSwap<Versioned<H>>,
    generation: AtomicU64,
}

struct Versioned<H> {
    generation: u64,
    handler: Arc<H>,
}

impl<H: Handler> Swap<H> {
    pub fn new(handler: H) -> Self {
        Swap {
            current: ArcSwap::from_pointee(Versioned {
                generation: 0,
                handler: Arc::new(handler),
            }),
            generation: AtomicU64::new(0),
        }
    }

    /// Serve new requests with `handler`; in-flight ones finish with the old.
    pub fn replace(&self, handler: H) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.store(Arc::new(Versioned {
            generation,
            handler: Arc::new(handler),
        }));
    }

    pub fn current(&self) -> Arc<H> {
        self.current.load().handler.clone()
    }
}

impl<H: Handler> Handler for Swap<H> {
    type Conn = (u64, Arc<H::Conn>);

    fn connection(&self) -> Self::Conn {
        let v = self.current.load();
        (v.generation, Arc::new(v.handler.connection()))
    }

    fn connection_on(&self, side: &mut conn::SideSlot) -> Self::Conn {
        let v = self.current.load();
        (v.generation, Arc::new(v.handler.connection_on(side)))
    }

    fn handle(
        self: Arc<Self>,
        conn: Arc<Self::Conn>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        let v = self.current.load_full();
        let state = if v.generation == conn.0 {
            conn.1.clone()
        } else {
            Arc::new(v.handler.connection())
        };
        v.handler.clone().handle(state, req)
    }
}
