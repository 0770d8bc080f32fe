//! Metric families, registered into a registry the caller passes in (no globals).
//!
//! Per-request handles (one route's counters and histogram) are created once when a
//! listener starts, so the request path never hashes labels or takes a lock.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenRequestLabels {
    pub credential: String,
    pub outcome: Outcome,
}

/// How a token request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    success,
    /// The server answered with an RFC 6749 §5.2 error or another HTTP error.
    http_error,
    /// 429 or 503: the server asked us to slow down.
    throttled,
    timeout,
    connect_error,
    invalid_response,
    /// The client secret, key or assertion could not be read or used.
    secret_error,
    /// The token endpoint could not be found through discovery.
    discovery_error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatusLabels {
    pub route: String,
    pub class: StatusClass,
}

/// The class of an answer the sidecar gave on an outbound route.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StatusClass {
    C1xx,
    C2xx,
    C3xx,
    C4xx,
    C5xx,
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            StatusClass::C1xx => "1xx",
            StatusClass::C2xx => "2xx",
            StatusClass::C3xx => "3xx",
            StatusClass::C4xx => "4xx",
            StatusClass::C5xx => "5xx",
        })
    }
}

impl StatusClass {
    pub const ALL: [StatusClass; 5] = [
        StatusClass::C1xx,
        StatusClass::C2xx,
        StatusClass::C3xx,
        StatusClass::C4xx,
        StatusClass::C5xx,
    ];

    /// Index into [`StatusClass::ALL`] for a status code.
    pub fn index(status: u16) -> usize {
        usize::from(status / 100).clamp(1, 5) - 1
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Token manager metrics.
#[derive(Clone)]
pub struct TokenMetrics {
    pub requests: Family<TokenRequestLabels, Counter>,
    pub latency: Family<CredentialLabels, Histogram, fn() -> Histogram>,
    pub expires_in: Family<CredentialLabels, Gauge<f64, AtomicU64>>,
    pub unavailable: Family<CredentialLabels, Counter>,
    pub early_refresh: Family<CredentialLabels, Counter>,
    pub over_budget: Family<CredentialLabels, Counter>,
    pub disk_reuse: Family<CredentialLabels, Counter>,
}

impl TokenMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = TokenMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            expires_in: Family::default(),
            unavailable: Family::default(),
            early_refresh: Family::default(),
            over_budget: Family::default(),
            disk_reuse: Family::default(),
        };
        registry.register(
            "m2m_token_requests",
            "Token requests to the authorization server, by credential and outcome",
            m.requests.clone(),
        );
        registry.register(
            "m2m_token_request_duration_seconds",
            "Latency of token requests to the authorization server",
            m.latency.clone(),
        );
        registry.register(
            "m2m_token_expires_in_seconds",
            "Seconds until the cached token of each credential expires (negative: expired, absent: none yet)",
            m.expires_in.clone(),
        );
        registry.register(
            "m2m_token_unavailable",
            "Outbound requests answered 503 because the credential held no valid token",
            m.unavailable.clone(),
        );
        registry.register(
            "m2m_token_early_refreshes",
            "Early refreshes triggered by an upstream answering 401 to our token",
            m.early_refresh.clone(),
        );
        registry.register(
            "m2m_token_requests_over_budget",
            "Token requests not made because max_token_requests_per_hour was reached (the cached token is kept)",
            m.over_budget.clone(),
        );
        registry.register(
            "m2m_token_disk_reuses",
            "Tokens taken from token_cache_dir at start instead of a token request",
            m.disk_reuse.clone(),
        );
        m
    }
}

/// Outbound proxy metrics.
#[derive(Clone)]
pub struct OutboundMetrics {
    pub requests: Family<RouteStatusLabels, Counter>,
    pub upstream_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_desyncs: Family<RouteLabels, Counter>,
}

/// One route's handles, looked up once at start.
#[derive(Clone)]
pub struct RouteMetrics {
    pub by_class: [Counter; 5],
    pub upstream_latency: Histogram,
}

impl OutboundMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = OutboundMetrics {
            requests: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            upstream_desyncs: Family::default(),
        };
        registry.register(
            "m2m_outbound_requests",
            "Requests answered on outbound routes, by route and status class",
            m.requests.clone(),
        );
        registry.register(
            "m2m_outbound_upstream_duration_seconds",
            "Time from sending a request upstream until its response headers arrived",
            m.upstream_latency.clone(),
        );
        registry.register(
            "m2m_outbound_upstream_desyncs",
            "Upstream connections whose responses came out of step with their requests (a stray response, or bytes past a response's end); from the first, the route's upstream connections are no longer shared between client connections",
            m.upstream_desyncs.clone(),
        );
        m
    }

    /// The desync counter of a route with connection affinity (plain-HTTP upstream).
    pub fn desyncs(&self, route: &str) -> Counter {
        self.upstream_desyncs
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .clone()
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        let by_class = StatusClass::ALL.map(|class| {
            self.requests
                .get_or_create(&RouteStatusLabels {
                    route: route.to_owned(),
                    class,
                })
                .clone()
        });
        let upstream_latency = self
            .upstream_latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .clone();
        RouteMetrics {
            by_class,
            upstream_latency,
        }
    }
}

impl RouteMetrics {
    pub fn answered(&self, status: u16) {
        self.by_class[StatusClass::index(status)].inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

/// Listener connections and configuration reloads.
#[derive(Clone)]
pub struct ProcessMetrics {
    pub open_connections: Family<ListenerLabels, Gauge>,
    pub refused_connections: Family<ListenerLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub last_reload: Gauge,
}

impl ProcessMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ProcessMetrics {
            open_connections: Family::default(),
            refused_connections: Family::default(),
            reloads: Family::default(),
            last_reload: Gauge::default(),
        };
        registry.register(
            "m2m_listener_open_connections",
            "Open client connections, by listener",
            m.open_connections.clone(),
        );
        registry.register(
            "m2m_listener_refused_connections",
            "Client connections closed at once because the listener had limits.max_connections open",
            m.refused_connections.clone(),
        );
        registry.register(
            "m2m_config_reloads",
            "Configuration reloads (SIGHUP or a changed file), by outcome (success, error)",
            m.reloads.clone(),
        );
        registry.register(
            "m2m_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration applied (start or reload)",
            m.last_reload.clone(),
        );
        m
    }

    /// The connection counters of `listener`.
    pub fn listener(&self, listener: &str) -> crate::proxy::server::ConnectionMetrics {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        // One at a time: a family guard held across the next insertion deadlocks.
        let open = self.open_connections.get_or_create(&labels).clone();
        let refused = self.refused_connections.get_or_create(&labels).clone();
        crate::proxy::server::ConnectionMetrics { open, refused }
    }
}
