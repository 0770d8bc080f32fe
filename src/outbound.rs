//! Outbound reverse listeners (`[[outbound]]`): every request gets the route's
//! credential token in `Authorization` and goes to the route's upstream. The
//! sidecar's own refusals (no token, upstream down or slow) are JSON, or a
//! `grpc-status` for gRPC clients ([`crate::respond`]).

use crate::config::OutboundSpec;
use crate::metrics::{OutboundMetrics, RouteMetrics};
use crate::proxy::client::{self, BuildError, ClientSettings};
use crate::proxy::h1pool::Affinity;
use crate::proxy::server::Handler;
use crate::proxy::server::conn::SideSlot;
use crate::proxy::{ProxyBody, ProxyError, Timeouts, Upstream};
use crate::respond::{Format, refuse};
use crate::token::{Credential, Unavailable};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One outbound route: listener → credential → upstream.
pub struct Route {
    credential: Arc<Credential>,
    upstream: Upstream,
    metrics: RouteMetrics,
    /// How long a request waits for a token fetch in flight.
    token_wait: Duration,
}

/// Why an outbound route cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("outbound {route}: {source}")]
    Client {
        route: String,
        #[source]
        source: BuildError,
    },
    #[error(transparent)]
    Upstream(#[from] BuildError),
}

impl Route {
    pub fn new(
        spec: &OutboundSpec,
        credential: Arc<Credential>,
        metrics: &OutboundMetrics,
    ) -> Result<Self, RouteError> {
        let client = client::build(&ClientSettings {
            ca_file: spec.ca_file.as_deref(),
            connect_timeout: spec.connect_timeout,
            idle_timeout: spec.idle_timeout,
        })
        .map_err(|source| RouteError::Client {
            route: spec.name.clone(),
            source,
        })?;
        let timeouts = Timeouts {
            connect: spec.connect_timeout,
            pool_idle: spec.idle_timeout,
            request: spec.request_timeout,
            body_idle: spec.body_idle_timeout,
        };
        let upstream = Upstream::new(&spec.name, &spec.upstream, client, timeouts)?;
        upstream.count_desyncs(|| metrics.desyncs(&spec.name));
        let token_wait = credential.spec.timeout + Duration::from_secs(1);
        Ok(Route {
            credential,
            upstream,
            metrics: metrics.route(&spec.name),
            token_wait,
        })
    }
}

impl Handler for Route {
    type Conn = Option<Affinity>;

    fn connection(&self) -> Self::Conn {
        self.upstream.affinity()
    }

    fn connection_on(&self, side: &mut SideSlot) -> Self::Conn {
        self.upstream.affinity_on(side)
    }

    /// An `async` block, not an `async fn`: the request stays where the
    /// caller put it until it moves into the boxed forward (an `async fn`
    /// would first copy it, and a nested one again).
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` copies the request once more"
    )]
    fn handle(
        self: Arc<Self>,
        conn: Arc<Self::Conn>,
        mut req: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        async move {
            // Read before the request moves on: how a refusal is written.
            let format = Format::of(&req);
            let resp = 'answer: {
                // A tunnel cannot carry a token, and `CONNECT` has no path to map.
                if req.method() == Method::CONNECT {
                    break 'answer refuse(
                        &ProxyError::MethodNotAllowed(
                            "CONNECT is not forwarded by an outbound listener (tunnels: [forward_proxy])",
                        ),
                        format,
                    );
                }
                // `x-m2m-*` speaks for the sidecar, never for the app.
                crate::proxy::headers::remove_m2m(req.headers_mut());
                // The cached token without a wait; the wait boxed (rare, and
                // this future stays small).
                let bearer = match self.credential.current() {
                    Some(b) => b,
                    None => match Box::pin(self.credential.bearer(self.token_wait)).await {
                        Ok(b) => b,
                        Err(u) => break 'answer refuse(&ProxyError::from(u), format),
                    },
                };
                let started = Instant::now();
                // Boxed: one allocation, instead of moving the exchange's state
                // through every future around it.
                let forwarded = Box::pin(self.upstream.forward(
                    req,
                    Some(bearer.header),
                    Option::as_ref(&conn),
                ))
                .await;
                match forwarded {
                    Ok(resp) => {
                        self.metrics
                            .upstream_latency
                            .observe(started.elapsed().as_secs_f64());
                        if resp.status() == StatusCode::UNAUTHORIZED {
                            self.credential.rejected(bearer.generation);
                        }
                        resp.map(Either::Left)
                    }
                    Err(e) => refuse(&e, format),
                }
            };
            self.metrics.answered(resp.status().as_u16());
            resp
        }
    }
}

/// A credential without a usable token, as the proxy core reports it (which
/// knows no credentials): 503 `token_unavailable`. The forward proxy uses it too.
impl From<Unavailable> for ProxyError {
    fn from(u: Unavailable) -> Self {
        ProxyError::TokenUnavailable {
            credential: u.credential,
            reason: u.reason,
            retry_after: u.retry_after,
        }
    }
}
