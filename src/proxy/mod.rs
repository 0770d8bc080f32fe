//! The proxy core shared by every listener: rewrite a request for its upstream
//! (URI, Host, hop-by-hop headers, `Authorization`), send it on a pooled
//! connection with bodies streamed both ways, and splice protocol upgrades.

pub mod body;
pub mod client;
pub mod deadline;
pub mod error;
pub mod h1pool;
pub mod headers;
pub mod idle;
pub mod server;

use crate::path::PathPolicy;
use client::{BuildError, UpstreamClient};
use h1pool::{Affinity, H1Upstream};
use headers::{HopByHop, remove_found, remove_hop_by_hop};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use idle::IdleTimeout;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use url::Url;

pub use body::{Body, ProxyBody};
pub use error::{ErrorSource, ProxyError};

/// Where a route's requests go.
pub struct Upstream {
    route: String,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without its trailing `/` ("" for the root).
    base_path: String,
    /// `Host` for a plain-HTTP upstream, built once. (For TLS upstreams the
    /// client derives it, or `:authority` when ALPN picks HTTP/2.)
    host: Option<HeaderValue>,
    client: UpstreamClient,
    /// Plain-HTTP upstreams: HTTP/1.1 with connection affinity.
    h1: Option<Arc<H1Upstream>>,
    timeouts: Timeouts,
    /// Keep the client's `Host` (inbound: the service sees the name it was called by).
    preserve_host: bool,
    /// The upgrade protocols spliced through (lower-case); `None`: any.
    upgrades: Option<Arc<[String]>>,
}

/// How long each step of an exchange with an upstream may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// How long an unused upstream connection is kept.
    pub pool_idle: Duration,
    /// Until the upstream's response headers arrive.
    pub request: Duration,
    /// Longest pause in a request or response body.
    pub body_idle: Duration,
}

impl Upstream {
    pub fn new(
        route: &str,
        url: &Url,
        client: UpstreamClient,
        timeouts: Timeouts,
    ) -> Result<Self, BuildError> {
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|source| BuildError::UpstreamUri {
                url: url.to_string(),
                source,
            })?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(BuildError::UpstreamIncomplete {
                url: url.to_string(),
            });
        };
        let host = (scheme == Scheme::HTTP)
            .then(|| HeaderValue::from_str(authority.as_str()))
            .transpose()
            .map_err(|source| BuildError::UpstreamHost {
                url: url.to_string(),
                source,
            })?;
        let h1 = match (
            scheme == Scheme::HTTP,
            url.host_str(),
            url.port_or_known_default(),
        ) {
            (true, Some(h), Some(port)) => Some(H1Upstream::new(
                h,
                port,
                timeouts.connect,
                timeouts.pool_idle,
            )),
            _ => None,
        };
        Ok(Upstream {
            route: route.to_owned(),
            host,
            h1,
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            client,
            timeouts,
            preserve_host: false,
            upgrades: None,
        })
    }

    /// An upstream named per request (forward-proxy mode): `scheme://authority`,
    /// no base path, no connection affinity (the pooled client routes by URI).
    pub fn to_authority(
        route: &str,
        scheme: Scheme,
        authority: Authority,
        client: UpstreamClient,
        timeouts: Timeouts,
    ) -> Result<Self, ProxyError> {
        let host = (scheme == Scheme::HTTP)
            .then(|| HeaderValue::from_str(authority.as_str()))
            .transpose()
            .map_err(|_| ProxyError::BadRequest("invalid host"))?;
        Ok(Upstream {
            route: route.to_owned(),
            host,
            h1: None,
            scheme,
            authority,
            base_path: String::new(),
            client,
            timeouts,
            preserve_host: false,
            upgrades: None,
        })
    }

    /// The upstream request target: origin-form (`/path?query`) when we write
    /// HTTP/1 ourselves, absolute for the pooled client, which routes by it.
    /// Below a base path, the incoming path is normalised first (strictly:
    /// encoded slashes and `;` refused), so no `..` in any encoding climbs
    /// above the base.
    fn uri_for(&self, incoming: &Uri, origin_form: bool) -> Result<Uri, ProxyError> {
        let bad = |_| ProxyError::BadRequest("invalid request target");
        // Without a base path the incoming path and query is reused as is (no copy).
        let pq = match (self.base_path.is_empty(), incoming.path_and_query()) {
            (true, Some(pq)) => pq.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, pq) => {
                let path = crate::path::normalize(incoming.path(), PathPolicy::default())?;
                let query = pq.and_then(PathAndQuery::query);
                let joined = match query {
                    Some(q) => format!("{}{path}?{q}", self.base_path),
                    None => format!("{}{path}", self.base_path),
                };
                PathAndQuery::try_from(joined).map_err(bad)?
            }
        };
        let mut parts = http::uri::Parts::default();
        if !origin_form {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
        }
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))
    }

    /// Keep the client's `Host` header instead of naming the upstream.
    pub fn preserving_host(mut self) -> Self {
        self.preserve_host = true;
        self
    }

    /// Splice only these upgrade protocols (lower-case); a request asking for
    /// any other is forwarded as a plain request, without its `Upgrade`.
    pub fn allowing_upgrades(mut self, protocols: &[String]) -> Self {
        self.upgrades = Some(protocols.into());
        self
    }

    /// For a request asking to upgrade: whether it may be spliced. If not, it
    /// goes on as a plain request, which the upstream cannot switch (its
    /// `Upgrade` and h2c's `HTTP2-Settings` removed). Out of line: rare.
    #[cold]
    #[inline(never)]
    fn keep_upgrade(&self, headers: &mut http::HeaderMap) -> bool {
        if self.upgrade_allowed(headers) {
            return true;
        }
        headers.remove(header::UPGRADE);
        headers.remove("http2-settings");
        false
    }

    /// A switch nobody asked for (or to another protocol): whatever follows
    /// on that connection would pass unchecked.
    #[cold]
    #[inline(never)]
    fn unasked_switch(&self) -> ProxyError {
        ProxyError::Upstream {
            route: self.route.clone(),
            reason: "the upstream switched protocols unasked".into(),
            cause: None,
        }
    }

    /// Whether every protocol the request's `Upgrade` names may be spliced.
    /// Without a list, any but `h2c`: after an h2c switch, every request on the
    /// connection would pass unchecked (no token swap, no rules).
    fn upgrade_allowed(&self, headers: &http::HeaderMap) -> bool {
        match &self.upgrades {
            None => headers::upgrade_protocols(headers).all(|p| p != "h2c"),
            Some(allowed) => {
                let mut any = false;
                let all = headers::upgrade_protocols(headers).all(|p| {
                    any = true;
                    allowed.contains(&p)
                });
                any && all
            }
        }
    }

    /// Count in `counter()` the upstream connections whose responses come out
    /// of step with their requests (plain-HTTP upstreams; see [`h1pool`]).
    pub fn count_desyncs(
        &self,
        counter: impl FnOnce() -> prometheus_client::metrics::counter::Counter,
    ) {
        if let Some(h1) = &self.h1 {
            h1.count_desyncs(counter());
        }
    }

    /// A connection-affinity slot for a new downstream connection (plain-HTTP upstreams).
    pub fn affinity(&self) -> Option<Affinity> {
        self.h1.as_ref().map(H1Upstream::affinity)
    }

    /// As [`Upstream::affinity`], with the upstream connection driven on the
    /// downstream connection's own task (attached to `side`) while the
    /// downstream connection is HTTP/1.
    pub fn affinity_on(&self, side: &mut server::conn::SideSlot) -> Option<Affinity> {
        self.h1.as_ref().map(|h1| h1.affinity_on(side))
    }

    /// Forward `req`, with `authorization` (if given) in place of whatever the client sent,
    /// on the downstream connection's `affinity` slot when it has one.
    ///
    /// An `async` block, not an `async fn`: the request is used where the
    /// caller put it (an `async fn` first copies its arguments), and the
    /// exchange is awaited inline rather than through another future that
    /// would copy the request again.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` copies the request once more"
    )]
    pub fn forward<'a>(
        &'a self,
        mut req: Request<Incoming>,
        authorization: Option<HeaderValue>,
        affinity: Option<&'a Affinity>,
    ) -> impl Future<Output = Result<Response<IdleTimeout<Incoming>>, ProxyError>> + Send + 'a {
        async move {
            // One pass over the names finds every hop-by-hop header (and `Upgrade`).
            let found = HopByHop::scan(req.headers());
            let upgrade =
                found.wants_upgrade(req.headers()) && self.keep_upgrade(req.headers_mut());
            // What the client offered: the only protocols a `101` may switch to.
            let offered: Option<Vec<String>> =
                upgrade.then(|| headers::upgrade_protocols(req.headers()).collect());
            let sequential = req.version() != Version::HTTP_2;
            let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
            // The spliced connection keeps counting toward the listener's cap.
            let held = upgrade
                .then(|| req.extensions_mut().remove::<server::HeldConnection>())
                .flatten();
            let affinity = affinity.filter(|_| !upgrade);
            self.rewrite(&mut req, found, upgrade, authorization, affinity.is_some())?;
            #[cfg(feature = "otel")]
            let span = {
                let method = req.method().clone();
                crate::otel::upstream_span(&self.route, &method, req.headers_mut())
            };
            let req = req.map(|b| IdleTimeout::from_client(b, self.timeouts.body_idle));
            // Pinned where it is built: never moved (with `otel`, pinned
            // again inside its span).
            #[cfg_attr(feature = "otel", allow(unused_mut))]
            let mut exchange = std::pin::pin!(async {
                match affinity {
                    Some(a) => a.send(req, sequential).await.map_err(|e| {
                        let reason = match &e {
                            h1pool::SendError::Http(e) => crate::cause::root_cause(e),
                            h1pool::SendError::Connect(_) | h1pool::SendError::OutOfStep => {
                                e.to_string()
                            }
                        };
                        (reason, Box::new(e) as Cause)
                    }),
                    _ => (self.client.request(req).await)
                        .map_err(|e| (describe(&e), Box::new(e) as Cause)),
                }
            });
            #[cfg(feature = "otel")]
            let mut exchange = std::pin::pin!(tracing::Instrument::instrument(exchange, span));
            // An HTTP/1 client's requests come one at a time: its
            // connection's one timer serves them all.
            let limit = self.timeouts.request;
            let answered = match affinity.filter(|_| sequential) {
                Some(a) => {
                    let mut timer = a.deadline().timer(limit);
                    std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
                        Poll::Ready(r) => Poll::Ready(Ok(r)),
                        Poll::Pending => timer.poll_elapsed(cx).map(Err),
                    })
                    .await
                }
                None => {
                    (tokio::time::timeout(limit, exchange).await).map_err(|_| deadline::Elapsed)
                }
            };
            let mut resp = match answered {
                Ok(Ok(resp)) => resp,
                Ok(Err((reason, cause))) => return Err(self.failed(reason, cause)),
                Err(_) => {
                    return Err(ProxyError::UpstreamTimeout {
                        route: self.route.clone(),
                    });
                }
            };
            let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            if switching
                && (!self.upgrade_allowed(resp.headers())
                    || !offered
                        .as_ref()
                        .is_some_and(|o| switched_to_offered(resp.headers(), o)))
            {
                return Err(self.unasked_switch());
            }
            remove_hop_by_hop(resp.headers_mut(), switching && upgrade);
            if let (true, Some(client_side)) = (switching, client_side) {
                self.splice_upgrade(client_side, &mut resp, held);
            }
            Ok(resp.map(|b| IdleTimeout::new(b, self.timeouts.body_idle)))
        }
    }

    /// The request as the upstream gets it, changed in place: hop-by-hop
    /// headers gone (`found` by the caller's scan), `Host` and `Authorization`
    /// set, the target for the upstream (origin-form when `origin_form`), HTTP/1.1.
    fn rewrite(
        &self,
        req: &mut Request<Incoming>,
        found: HopByHop,
        upgrade: bool,
        authorization: Option<HeaderValue>,
        origin_form: bool,
    ) -> Result<(), ProxyError> {
        remove_found(req.headers_mut(), found, upgrade);
        if self.preserve_host {
            // HTTP/2 clients name the host in the URI, not in a header.
            let from_uri = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            if let (false, Some(h)) = (req.headers().contains_key(header::HOST), from_uri) {
                req.headers_mut().insert(header::HOST, h);
            }
        } else {
            // RFC 9112 §3.2: an HTTP/1.1 request names its host exactly once.
            // Checked here, where `Host` is replaced anyway: no extra lookup.
            let http11 = req.version() == Version::HTTP_11;
            match req.headers_mut().entry(header::HOST) {
                header::Entry::Occupied(e) if e.iter().nth(1).is_some() => {
                    return Err(ProxyError::BadRequest("more than one Host header"));
                }
                header::Entry::Vacant(_) if http11 => {
                    return Err(ProxyError::BadRequest("HTTP/1.1 requires a Host header"));
                }
                header::Entry::Occupied(mut e) => match &self.host {
                    Some(host) => {
                        e.insert(host.clone());
                    }
                    None => {
                        e.remove();
                    }
                },
                header::Entry::Vacant(e) => {
                    if let Some(host) = &self.host {
                        e.insert(host.clone());
                    }
                }
            }
        }
        if let Some(authorization) = authorization {
            req.headers_mut()
                .insert(header::AUTHORIZATION, authorization);
        }
        // An HTTP/1 request's origin-form target goes on as it is (what
        // `uri_for` would build again).
        let uri = req.uri();
        let as_is = origin_form
            && self.base_path.is_empty()
            && uri.scheme().is_none()
            && uri.authority().is_none()
            && uri.path_and_query().is_some();
        if !as_is {
            *req.uri_mut() = self.uri_for(uri, origin_form)?;
        }
        *req.version_mut() = Version::HTTP_11;
        Ok(())
    }

    /// An exchange that failed: logged, and the client's answer. Out of line: rare.
    #[cold]
    #[inline(never)]
    fn failed(&self, reason: String, cause: Cause) -> ProxyError {
        if let Some(body) = idle::ClientBody::in_chain(cause.as_ref()) {
            // The client's own body broke the exchange, not the upstream.
            let reason = match body.stalled {
                true => body.to_string(),
                false => crate::cause::root_cause(body),
            };
            tracing::debug!(route = %self.route, error = %reason, "request body failed");
            return ProxyError::ClientBody {
                stalled: body.stalled,
                reason,
            };
        }
        tracing::warn!(route = %self.route, error = %reason, "upstream request failed");
        ProxyError::Upstream {
            route: self.route.clone(),
            reason,
            cause: Some(cause),
        }
    }

    /// Splice the two upgraded connections once both sides have switched.
    #[cold]
    #[inline(never)]
    fn splice_upgrade(
        &self,
        client_side: hyper::upgrade::OnUpgrade,
        resp: &mut Response<Incoming>,
        held: Option<server::HeldConnection>,
    ) {
        let upstream_side = hyper::upgrade::on(resp);
        let idle = self.timeouts.body_idle;
        let route = self.route.clone();
        tokio::spawn(async move {
            let _held = held;
            match tokio::try_join!(client_side, upstream_side) {
                Ok((c, u)) => splice(TokioIo::new(c), TokioIo::new(u), idle).await,
                Err(e) => tracing::debug!(route = %route, error = %e, "upgrade failed"),
            }
        });
    }
}

/// Whether a `101`'s `Upgrade` names protocols, all of them among `offered`.
fn switched_to_offered(headers: &http::HeaderMap, offered: &[String]) -> bool {
    let mut any = false;
    headers::upgrade_protocols(headers).all(|p| {
        any = true;
        offered.contains(&p)
    }) && any
}

/// Copy bytes both ways until both sides have closed, or nothing moved either
/// way for `idle` (an upgraded connection or a CONNECT tunnel must not outlive
/// its peers forever). A side that closes its write half is passed on as a
/// half-close.
pub async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = tokio::time::Instant::now();
    let last = std::sync::atomic::AtomicU64::new(0);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let quiet = Quiet {
        start,
        last: &last,
        idle,
    };
    tokio::join!(one_way(ar, bw, &quiet), one_way(br, aw, &quiet));
}

/// When a spliced connection last moved a byte, either way.
struct Quiet<'a> {
    start: tokio::time::Instant,
    last: &'a std::sync::atomic::AtomicU64,
    idle: Duration,
}

async fn one_way<R, W>(mut from: R, mut to: W, quiet: &Quiet<'_>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(quiet.idle, from.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let now = quiet.start.elapsed().as_millis() as u64;
                quiet.last.store(now, Ordering::Relaxed);
            }
            // Quiet this way: the end only if quiet the other way too.
            Err(_) => {
                let now = quiet.start.elapsed().as_millis() as u64;
                let since = now.saturating_sub(quiet.last.load(Ordering::Relaxed));
                if since >= quiet.idle.as_millis() as u64 {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// `host[:port]` of an authority, never its `user:password@` (which must not
/// travel on, in `Host` or in a target).
pub fn without_user_info(a: &Authority) -> &str {
    a.as_str()
        .rsplit_once('@')
        .map_or(a.as_str(), |(_, host)| host)
}

/// What broke an exchange with the upstream, kept as a [`ProxyError`]'s cause.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A client error's innermost cause ("Connection refused (os error 111)").
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let cause = crate::cause::root_cause(e);
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}
