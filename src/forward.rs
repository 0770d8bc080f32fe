//! Forward-proxy mode (`[forward_proxy]`): apps that honour `HTTP_PROXY` send
//! absolute-form requests (`GET http://orders.internal/x`); a request whose host
//! (and port, if the route names one) is mapped gets that route's token, over
//! https when `upstream_tls` is set. A token only ever goes to the host it is
//! bound to: unmatched hosts get the app's own headers unchanged (`pass`) or a
//! 403 with nothing forwarded (`deny`); a `Host` header that disagrees with the
//! URI is refused; redirects are returned, never followed. Refusals are JSON,
//! or a `grpc-status` for gRPC clients ([`crate::respond`]). `CONNECT` tunnels to
//! unmatched hosts in pass mode; to a mapped host it is refused, since a token
//! cannot be added inside a TLS tunnel. `Proxy-Authorization` never travels on.

use crate::config::{ForwardProxySpec, ForwardRouteSpec};
use crate::metrics::{OutboundMetrics, RouteMetrics};
use crate::proxy::client::{self, BuildError, ClientSettings, UpstreamClient};
use crate::proxy::server::Handler;
use crate::proxy::{ProxyBody, ProxyError, Timeouts, Upstream};
use crate::respond::{Format, Synthetic, refuse};
use crate::token::Credential;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

struct Route {
    host: String,
    port: Option<u16>,
    credential: Arc<Credential>,
    tls: bool,
    label: String,
    metrics: RouteMetrics,
    token_wait: Duration,
}

/// The forward-proxy listener's handler.
pub struct ForwardProxy {
    /// Routes by lower-case host (validation lower-cases them): one lookup
    /// however many hosts are mapped.
    routes: HashMap<String, Vec<Route>>,
    deny_unmatched: bool,
    client: UpstreamClient,
    timeouts: Timeouts,
    pass_metrics: RouteMetrics,
    connect_metrics: RouteMetrics,
}

/// Why the forward proxy cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("forward_proxy: {0}")]
    Client(#[source] BuildError),
    #[error("forward_proxy: no credential {0}")]
    NoCredential(String),
}

impl ForwardProxy {
    pub fn new(
        spec: &ForwardProxySpec,
        credentials: &[Arc<Credential>],
        metrics: &OutboundMetrics,
    ) -> Result<Self, SetupError> {
        let client = client::build(&ClientSettings {
            ca_file: spec.ca_file.as_deref(),
            connect_timeout: spec.connect_timeout,
            idle_timeout: spec.idle_timeout,
        })
        .map_err(SetupError::Client)?;
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        for r in &spec.routes {
            let route = route(r, credentials, metrics)?;
            routes.entry(route.host.clone()).or_default().push(route);
        }
        Ok(ForwardProxy {
            routes,
            deny_unmatched: spec.deny_unmatched,
            client,
            timeouts: Timeouts {
                connect: spec.connect_timeout,
                pool_idle: spec.idle_timeout,
                request: spec.request_timeout,
                body_idle: spec.body_idle_timeout,
            },
            pass_metrics: metrics.route("forward:unmatched"),
            connect_metrics: metrics.route("forward:connect"),
        })
    }

    /// The route for `host:port`: one naming that port wins over one for any port.
    /// Hosts compare in their canonical form: case folded, and any spelling
    /// of an IP address as that address ([`crate::host`]).
    fn find(&self, host: &str, port: u16) -> Option<&Route> {
        let host = crate::host::canonical(host);
        let same_host = self.routes.get(host.as_ref())?;
        same_host
            .iter()
            .find(|r| r.port == Some(port))
            .or_else(|| same_host.iter().find(|r| r.port.is_none()))
    }

    async fn proxy(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let format = Format::of(&req);
        let (authority, port) = match target(&req) {
            Ok(t) => t,
            Err(e) => return refuse(&e, format),
        };
        let host = bare_host(&authority);
        let Some(route) = self.find(host, port) else {
            if self.deny_unmatched {
                let resp = refuse(Denial::HostNotAllowed(host), format);
                self.pass_metrics.answered(resp.status().as_u16());
                return resp;
            }
            // The app's own request, headers and all, to the host it named.
            let resp = match Upstream::to_authority(
                "forward:unmatched",
                Scheme::HTTP,
                authority,
                self.client.clone(),
                self.timeouts,
            ) {
                Ok(up) => up.forward(req, None, None).await,
                Err(e) => Err(e),
            };
            let resp = match resp {
                Ok(r) => r.map(Either::Left),
                Err(e) => refuse(&e, format),
            };
            self.pass_metrics.answered(resp.status().as_u16());
            return resp;
        };
        let resp = match self.to_route(route, checked(authority, port), req).await {
            Ok(resp) => resp,
            Err(e) => refuse(&e, format),
        };
        route.metrics.answered(resp.status().as_u16());
        resp
    }

    async fn to_route(
        &self,
        route: &Route,
        authority: Authority,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let bearer = route
            .credential
            .bearer(route.token_wait)
            .await
            .map_err(ProxyError::from)?;
        // With upstream_tls the app spoke http:// and the upstream is reached
        // over https, on the port the app named, else 443.
        let scheme = if route.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let upstream = Upstream::to_authority(
            &route.label,
            scheme,
            authority,
            self.client.clone(),
            self.timeouts,
        )?;
        let started = tokio::time::Instant::now();
        let resp = upstream.forward(req, Some(bearer.header), None).await?;
        route
            .metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());
        if resp.status() == StatusCode::UNAUTHORIZED {
            route.credential.rejected(bearer.generation);
        }
        Ok(resp.map(Either::Left))
    }

    async fn connect(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let format = Format::of(&req);
        let fail = |e: ProxyError| refuse(&e, format);
        let authority = match req.uri().authority().map(without_user_info) {
            Some(Ok(a)) => a,
            Some(Err(e)) => return fail(e),
            None => return fail(ProxyError::BadRequest("CONNECT needs host:port")),
        };
        let Some(port) = authority.port_u16() else {
            return fail(ProxyError::BadRequest("CONNECT needs host:port"));
        };
        let host = bare_host(&authority);
        if let Some(route) = self.find(host, port) {
            let denial = Denial::TunnelToMappedHost {
                host,
                authority: &authority,
                tls: route.tls,
            };
            return refuse(denial, format);
        }
        if self.deny_unmatched {
            return refuse(Denial::HostNotAllowed(host), format);
        }
        let connect = tokio::net::TcpStream::connect(authority.as_str());
        let upstream = match tokio::time::timeout(self.timeouts.connect, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return fail(ProxyError::Upstream {
                    route: "forward:connect".into(),
                    reason: format!("cannot connect to {authority}: {e}"),
                    cause: Some(Box::new(e)),
                });
            }
            Err(_) => {
                return fail(ProxyError::UpstreamTimeout {
                    route: "forward:connect".into(),
                });
            }
        };
        let _ = upstream.set_nodelay(true);
        let upgraded = hyper::upgrade::on(&mut req);
        let idle = self.timeouts.body_idle;
        // The tunnel keeps counting toward the listener's connection cap.
        let held = req
            .extensions_mut()
            .remove::<crate::proxy::server::HeldConnection>();
        tokio::spawn(async move {
            let _held = held;
            match upgraded.await {
                Ok(client) => crate::proxy::splice(TokioIo::new(client), upstream, idle).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        Response::new(Either::Right(Full::new(Bytes::new())))
    }
}

fn route(
    r: &ForwardRouteSpec,
    credentials: &[Arc<Credential>],
    metrics: &OutboundMetrics,
) -> Result<Route, SetupError> {
    let credential = credentials
        .iter()
        .find(|c| c.name() == r.credential)
        .ok_or_else(|| SetupError::NoCredential(r.credential.clone()))?
        .clone();
    let label = match r.port {
        Some(p) => format!("forward:{}:{p}", r.host),
        None => format!("forward:{}", r.host),
    };
    Ok(Route {
        host: r.host.clone(),
        port: r.port,
        token_wait: credential.spec.timeout + Duration::from_secs(1),
        credential,
        tls: r.upstream_tls,
        metrics: metrics.route(&label),
        label,
    })
}

/// The authority a route matched, as it was checked: an IP address spelled
/// some other way (`127.1`, `[::ffff:127.0.0.1]`) becomes the address itself,
/// so the connection goes where the route says, whatever the resolver makes
/// of the spelling.
fn checked(authority: Authority, port: u16) -> Authority {
    // The usual case, without allocating: plain dotted decimal and a plain port.
    let plain_port = authority.port().is_none_or(|p| {
        let p = p.as_str();
        p.bytes().all(|b| b.is_ascii_digit()) && !(p.len() > 1 && p.starts_with('0'))
    });
    if plain_port && authority.host().parse::<std::net::Ipv4Addr>().is_ok() {
        return authority;
    }
    let Some(ip) = crate::host::ip_literal(bare_host(&authority)) else {
        return authority;
    };
    let canonical = std::net::SocketAddr::new(ip, port);
    let host = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    // Already in its one spelling (`127.0.0.1`, `127.0.0.1:8080`, `[::1]:80`).
    let port_as_is = authority
        .port()
        .is_none_or(|p| p.as_str() == port.to_string());
    if authority.host() == host && port_as_is {
        return authority;
    }
    Authority::try_from(canonical.to_string()).unwrap_or(authority)
}

/// The host without IPv6 brackets.
fn bare_host(a: &Authority) -> &str {
    a.host().trim_start_matches('[').trim_end_matches(']')
}

/// The absolute-form target's authority and port; a `Host` header, when sent,
/// must name the same host and port.
fn target(req: &Request<Incoming>) -> Result<(Authority, u16), ProxyError> {
    let uri = req.uri();
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => {
            return Err(ProxyError::BadRequest(
                "only http:// requests are proxied; use CONNECT for https://, or http:// with upstream_tls on the route",
            ));
        }
        None => {
            return Err(ProxyError::BadRequest(
                "a forward proxy needs absolute-form requests (GET http://host/path); set HTTP_PROXY to this listener",
            ));
        }
    }
    let authority = uri
        .authority()
        .ok_or(ProxyError::BadRequest("the request URI has no host"))
        .and_then(without_user_info)?;
    let port = authority.port_u16().unwrap_or(80);
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let (Some(_), Some(_)) = (hosts.next(), hosts.next()) {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    if let Some(h) = req.headers().get(header::HOST) {
        let same = h
            .to_str()
            .ok()
            .and_then(|h| h.parse::<Authority>().ok())
            .is_some_and(|h| {
                h.host().eq_ignore_ascii_case(authority.host())
                    && h.port_u16().unwrap_or(80) == port
            });
        if !same {
            return Err(ProxyError::BadRequest(
                "the Host header disagrees with the request URI",
            ));
        }
    }
    Ok((authority, port))
}

/// The authority without its user info ([`crate::proxy::without_user_info`]).
fn without_user_info(a: &Authority) -> Result<Authority, ProxyError> {
    match crate::proxy::without_user_info(a) {
        host if host.len() == a.as_str().len() => Ok(a.clone()),
        host => Authority::try_from(host).map_err(|_| ProxyError::BadRequest("invalid host")),
    }
}

/// What the forward proxy refuses to do whatever the request says (403).
enum Denial<'a> {
    /// `unmatched = "deny"` and the host is not mapped.
    HostNotAllowed(&'a str),
    /// A tunnel would carry the app's traffic to a mapped host without its token.
    TunnelToMappedHost {
        host: &'a str,
        authority: &'a Authority,
        tls: bool,
    },
}

impl<'a> From<Denial<'a>> for Synthetic<'a> {
    fn from(d: Denial<'a>) -> Self {
        let forbidden = |code| Synthetic::new(StatusCode::FORBIDDEN, code);
        match d {
            Denial::HostNotAllowed(host) => forbidden("host_not_allowed")
                .described(
                    "this proxy forwards only to mapped hosts (forward_proxy.unmatched = \"deny\")",
                )
                .with("host", host),
            Denial::TunnelToMappedHost {
                host,
                authority,
                tls,
            } => {
                let scheme_hint = if tls {
                    "; this route has upstream_tls, so the sidecar reaches it over https for you"
                } else {
                    "; set upstream_tls = true on the route to have the sidecar reach it over https"
                };
                forbidden("tunnel_to_mapped_host")
                    .described(format!(
                        "{host} is mapped to a credential, and a token cannot be added inside a TLS tunnel: call http://{authority}/… through this proxy instead{scheme_hint}"
                    ))
                    .with("host", host)
            }
        }
    }
}

impl Handler for ForwardProxy {
    type Conn = ();

    fn connection(&self) -> Self::Conn {}

    async fn handle(
        self: Arc<Self>,
        _conn: Arc<Self::Conn>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            let resp = self.connect(req).await;
            self.connect_metrics.answered(resp.status().as_u16());
            return resp;
        }
        self.proxy(req).await
    }
}
