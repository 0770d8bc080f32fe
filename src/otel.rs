//! OpenTelemetry traces (cargo feature `otel`, off by default). With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set,
//! spans go to that collector over OTLP/HTTP (protobuf): `token_fetch`,
//! `jwks_fetch` and `upstream` (one per proxied request). The W3C `traceparent`
//! of an incoming request is the upstream span's parent, and the upstream
//! receives a `traceparent` naming that span. The standard `OTEL_*` variables
//! apply (`OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`, …).

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The exporter, when the environment names a collector; keep it until exit
/// and call [`shutdown`] to flush.
pub fn provider() -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !configured {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OpenTelemetry exporter not started: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "m2m-sidecar".into());
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build(),
    )
}

/// The `tracing` layer that turns spans into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("m2m-sidecar"))
}

/// Flush and stop the exporter.
pub fn shutdown(provider: &SdkTracerProvider) {
    let _ = provider.shutdown();
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The span of one upstream call: a child of the caller's `traceparent` (if
/// any), written into `headers` as the upstream's `traceparent`.
pub fn upstream_span(route: &str, method: &http::Method, headers: &mut HeaderMap) -> tracing::Span {
    let propagator = TraceContextPropagator::new();
    let parent = propagator.extract(&Extract(headers));
    let span = tracing::info_span!("upstream", route = %route, http.method = %method);
    let _ = span.set_parent(parent);
    propagator.inject_context(&span.context(), &mut Inject(headers));
    span
}
