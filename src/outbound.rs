//! Outbound reverse listeners (`[[outbound]]`): every request gets the route's
//! credential token in `Authorization` and goes to the route's upstream.

use crate::config::OutboundSpec;
use crate::error::ProxyError;
use crate::metrics::RouteMetrics;
use crate::proxy::client::{self, ClientSettings};
use crate::proxy::h1pool::Affinity;
use crate::proxy::server::Handler;
use crate::proxy::{ProxyBody, Timeouts, Upstream};
use crate::token::Credential;
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
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

impl Route {
    pub fn new(
        spec: &OutboundSpec,
        credential: Arc<Credential>,
        metrics: RouteMetrics,
    ) -> Result<Self, String> {
        let client = client::build(&ClientSettings {
            ca_file: spec.ca_file.as_deref(),
            connect_timeout: spec.connect_timeout,
            idle_timeout: spec.idle_timeout,
        })
        .map_err(|e| format!("outbound {}: {e}", spec.name))?;
        let timeouts = Timeouts {
            connect: spec.connect_timeout,
            pool_idle: spec.idle_timeout,
            request: spec.request_timeout,
            body_idle: spec.body_idle_timeout,
        };
        let upstream = Upstream::new(&spec.name, &spec.upstream, client, timeouts)?;
        let token_wait = credential.spec.timeout + Duration::from_secs(1);
        Ok(Route {
            credential,
            upstream,
            metrics,
            token_wait,
        })
    }

    async fn proxy(
        &self,
        conn: &Option<Affinity>,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let bearer = self
            .credential
            .bearer(self.token_wait)
            .await
            .map_err(ProxyError::TokenUnavailable)?;
        let started = Instant::now();
        let resp = self
            .upstream
            .forward(req, Some(bearer.header), conn.as_ref())
            .await?;
        self.metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.credential.rejected(bearer.generation);
        }
        Ok(resp.map(Either::Left))
    }
}

impl Handler for Route {
    type Conn = Option<Affinity>;

    fn connection(&self) -> Self::Conn {
        self.upstream.affinity()
    }

    async fn handle(
        self: Arc<Self>,
        conn: Arc<Self::Conn>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let resp = match self.proxy(&conn, req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        self.metrics.answered(resp.status().as_u16());
        resp
    }
}
