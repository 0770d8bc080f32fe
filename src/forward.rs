//! Forward-proxy mode (`[forward_proxy]`): apps that honour `HTTP_PROXY` send
//! absolute-form requests (`GET http://orders.internal/x`); a request whose host
//! (and port, if the route names one) is mapped gets that route's token, over
//! https when `upstream_tls` is set. A token only ever goes to the host it is
//! bound to: unmatched hosts get the app's own headers unchanged (`pass`) or a
//! 403 with nothing forwarded (`deny`); a `Host` header that disagrees with the
//! URI is refused; redirects are returned, never followed. `CONNECT` tunnels to
//! unmatched hosts in pass mode; to a mapped host it is refused, since a token
//! cannot be added inside a TLS tunnel. `Proxy-Authorization` never travels on.

use crate::config::{ForwardProxySpec, ForwardRouteSpec};
use crate::error::{ProxyError, json_response};
use crate::metrics::{OutboundMetrics, RouteMetrics};
use crate::proxy::client::{self, ClientSettings, UpstreamClient};
use crate::proxy::server::Handler;
use crate::proxy::{ProxyBody, Timeouts, Upstream};
use crate::token::Credential;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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
    routes: Vec<Route>,
    deny_unmatched: bool,
    client: UpstreamClient,
    timeouts: Timeouts,
    pass_metrics: RouteMetrics,
    connect_metrics: RouteMetrics,
}

impl ForwardProxy {
    pub fn new(
        spec: &ForwardProxySpec,
        credentials: &[Arc<Credential>],
        metrics: &OutboundMetrics,
    ) -> Result<Self, String> {
        let client = client::build(&ClientSettings {
            ca_file: spec.ca_file.as_deref(),
            connect_timeout: spec.connect_timeout,
            idle_timeout: spec.idle_timeout,
        })
        .map_err(|e| format!("forward_proxy: {e}"))?;
        let routes = spec
            .routes
            .iter()
            .map(|r| route(r, credentials, metrics))
            .collect::<Result<_, _>>()?;
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
    fn find(&self, host: &str, port: u16) -> Option<&Route> {
        let same_host = |r: &&Route| r.host.eq_ignore_ascii_case(host);
        self.routes
            .iter()
            .filter(same_host)
            .find(|r| r.port == Some(port))
            .or_else(|| {
                self.routes
                    .iter()
                    .filter(same_host)
                    .find(|r| r.port.is_none())
            })
    }

    async fn proxy(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let (authority, port) = match target(&req) {
            Ok(t) => t,
            Err(e) => return e.into_response(),
        };
        let host = bare_host(&authority);
        let Some(route) = self.find(host, port) else {
            if self.deny_unmatched {
                let resp = host_not_allowed(host);
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
            let resp = resp.map_or_else(ProxyError::into_response, |r| r.map(Either::Left));
            self.pass_metrics.answered(resp.status().as_u16());
            return resp;
        };
        let resp = match self.to_route(route, authority, req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
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
            .map_err(ProxyError::TokenUnavailable)?;
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
        let authority = match req.uri().authority().map(without_user_info) {
            Some(Ok(a)) => a,
            Some(Err(e)) => return e.into_response(),
            None => return ProxyError::BadRequest("CONNECT needs host:port").into_response(),
        };
        let Some(port) = authority.port_u16() else {
            return ProxyError::BadRequest("CONNECT needs host:port").into_response();
        };
        let host = bare_host(&authority);
        if let Some(route) = self.find(host, port) {
            let scheme_hint = if route.tls {
                "; this route has upstream_tls, so the sidecar reaches it over https for you"
            } else {
                "; set upstream_tls = true on the route to have the sidecar reach it over https"
            };
            return json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({
                    "error": "tunnel_to_mapped_host",
                    "host": host,
                    "error_description": format!(
                        "{host} is mapped to a credential, and a token cannot be added inside a TLS tunnel: call http://{authority}/… through this proxy instead{scheme_hint}"
                    ),
                }),
            );
        }
        if self.deny_unmatched {
            return host_not_allowed(host);
        }
        let connect = tokio::net::TcpStream::connect(authority.as_str());
        let upstream = match tokio::time::timeout(self.timeouts.connect, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return ProxyError::Upstream {
                    route: "forward:connect".into(),
                    reason: format!("cannot connect to {authority}: {e}"),
                }
                .into_response();
            }
            Err(_) => {
                return ProxyError::UpstreamTimeout {
                    route: "forward:connect".into(),
                }
                .into_response();
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
) -> Result<Route, String> {
    let credential = credentials
        .iter()
        .find(|c| c.name() == r.credential)
        .ok_or_else(|| format!("forward_proxy: no credential {}", r.credential))?
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

fn host_not_allowed(host: &str) -> Response<ProxyBody> {
    json_response(
        StatusCode::FORBIDDEN,
        &serde_json::json!({
            "error": "host_not_allowed",
            "host": host,
            "error_description": "this proxy forwards only to mapped hosts (forward_proxy.unmatched = \"deny\")",
        }),
    )
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
