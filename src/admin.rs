//! The admin listener: `/healthz` (alive), `/readyz` (every credential holds a
//! usable token; JSON per credential, never a token) and `/metrics` (Prometheus).

use crate::metrics::{CredentialLabels, TokenMetrics};
use crate::proxy::ProxyBody;
use crate::proxy::body::json_response;
use crate::proxy::server::Handler;
use crate::readiness::Readiness;
use crate::token::CredentialState;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::SystemTime;

/// Serves the admin endpoints.
pub struct Admin {
    /// The credentials and inbound keys now (a reload replaces them), and
    /// whether shutdown began (`/readyz` answers 503 from then on).
    pub ready: Arc<Readiness>,
    pub registry: Registry,
    pub token_metrics: TokenMetrics,
}

impl Handler for Admin {
    type Conn = ();

    fn connection(&self) -> Self::Conn {}

    async fn handle(self: Arc<Self>, _: Arc<()>, req: Request<Incoming>) -> Response<ProxyBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": "method_not_allowed"}),
            );
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
            "/readyz" => self.readyz(),
            "/metrics" => self.metrics(),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
            ),
        }
    }
}

impl Admin {
    fn readyz(&self) -> Response<ProxyBody> {
        let report = self.ready.report();
        let ready = report.ready;
        let now = SystemTime::now();
        let creds: serde_json::Map<String, serde_json::Value> = report
            .credentials
            .iter()
            .map(|s| (s.name.to_string(), state_json(s, now)))
            .collect();
        let mut body = serde_json::json!({
            "ready": ready,
            "draining": report.draining,
            "credentials": creds,
        });
        if let Some((count, error)) = report.keys {
            body["inbound"] = serde_json::json!({"keys": count, "last_error": error});
        }
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(status, &body)
    }

    fn metrics(&self) -> Response<ProxyBody> {
        let now = SystemTime::now();
        for c in self.ready.credentials().iter() {
            if let Some(exp) = c.snapshot().expires_at {
                let secs = seconds_between(now, exp);
                self.token_metrics
                    .expires_in
                    .get_or_create(&CredentialLabels {
                        credential: c.name().to_owned(),
                    })
                    .set(secs);
            }
        }
        let mut out = String::new();
        match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            Ok(()) => text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                out,
            ),
            Err(_) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": "metrics_encoding"}),
            ),
        }
    }
}

fn state_json(s: &CredentialState, now: SystemTime) -> serde_json::Value {
    let state = match (s.valid, s.expires_at, &s.last_error) {
        (true, _, _) => "valid",
        (false, Some(_), _) => "expired",
        (false, None, Some(_)) => "failing",
        (false, None, None) => "pending",
    };
    serde_json::json!({
        "state": state,
        "valid_until": s.expires_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "expires_in_seconds": s.expires_at.map(|t| seconds_between(now, t).round()),
        "last_error": s.last_error.as_deref(),
    })
}

/// `to - from` in seconds, negative when `to` is past.
fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
