//! Telemetry: `tracing` logs (readable in development, JSON in production), OpenTelemetry spans
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the W3C trace context carried
//! in HTTP/gRPC headers and in event envelopes so one trace follows a request everywhere (X4).

use std::collections::HashMap;

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Log settings (`[telemetry]`).
#[derive(Clone, Debug, Deserialize)]
pub struct TelemetrySettings {
    /// `pretty` (readable, development) or `json` (one object per line, production).
    pub log_format: LogFormat,
    /// Default `tracing` filter, e.g. `info,sqlx=warn`; `RUST_LOG` overrides it.
    pub log_filter: String,
    /// OTLP/gRPC endpoint spans are exported to, e.g. `http://otel-collector:4317`. Unset: the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable, and when that is unset too, spans are not
    /// exported (trace context still propagates).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces that are sampled, 0.0..=1.0 (default 1.0). Parent-based: a call that
    /// arrives with a sampled `traceparent` is always traced, an unsampled one never, so a
    /// trace is whole or absent across services.
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
}

fn default_sampling_ratio() -> f64 {
    1.0
}

impl TelemetrySettings {
    /// Checks the sampling ratio.
    pub fn validate(&self) -> Result<(), crate::settings::SettingsError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(crate::settings::SettingsError::invalid(
                "telemetry.sampling_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        Ok(())
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// JSON lines.
    Json,
}

/// Keeps the span exporter alive; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "span exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber for `service`. Spans always get OpenTelemetry trace ids (so
/// trace context propagates even when nothing is exported); they are exported over OTLP/gRPC
/// only when `telemetry.otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Calling it twice
/// (tests) keeps the first subscriber.
pub fn init(service: &str, settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut builder = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        ))));
    let endpoint = settings
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|endpoint| !endpoint.is_empty());
    if let Some(endpoint) = endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()));
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&settings.log_filter))?;
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // A second init in the same process (several services in one test) keeps the first one.
    let _ = match settings.log_format {
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    Ok(TelemetryGuard { provider })
}

/// The W3C `traceparent` and `tracestate` of `span`, empty strings when it is not traced.
pub fn trace_headers(span: &tracing::Span) -> (String, String) {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut MapCarrier(&mut carrier));
    (
        carrier.remove("traceparent").unwrap_or_default(),
        carrier.remove("tracestate").unwrap_or_default(),
    )
}

/// The trace id (32 hex digits) of `span`, or `None` when it is not traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Makes `span` a child of the remote span named by `traceparent`/`tracestate` (from an event
/// envelope); keeps it a root when `traceparent` is empty or malformed. Either way the span's
/// `trace_id` field, if it declares one, is filled in (see [`set_parent_from_headers`]).
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if traceparent.is_empty() {
        record_trace_id(span);
        return;
    }
    let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    if !tracestate.is_empty() {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let parent = TraceContextPropagator::new().extract(&MapCarrier(&mut carrier));
    set_parent(span, parent);
}

/// Makes `span` a child of the trace context found in HTTP (gRPC) `headers`, if any, and fills
/// in its `trace_id` field when it declares one (`trace_id = tracing::field::Empty`): JSON logs
/// carry the fields of the current span, so every log line of a request names its trace.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    set_parent(span, parent);
}

/// Writes the trace context of `span` into HTTP (gRPC) `headers`, replacing what was there.
pub fn inject_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

fn set_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Fails only when the span was already started with another parent; keep that one.
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

fn record_trace_id(span: &tracing::Span) {
    if let Some(trace_id) = trace_id(span) {
        span.record("trace_id", trace_id);
    }
}

/// A tonic client interceptor that sends the current span's trace context with every call.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let (traceparent, tracestate) = trace_headers(&tracing::Span::current());
        if let Ok(value) = traceparent.parse() {
            request.metadata_mut().insert("traceparent", value);
        }
        if !tracestate.is_empty()
            && let Ok(value) = tracestate.parse()
        {
            request.metadata_mut().insert("tracestate", value);
        }
        Ok(request)
    }
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for MapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// Runs `f` under a subscriber that gives spans OpenTelemetry contexts, as `init` does.
    fn traced<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_call_continues_the_callers_trace_into_the_next_call_and_the_envelope() {
        traced(|| {
            let mut incoming = http::HeaderMap::new();
            incoming.insert(
                "traceparent",
                format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
                    .parse()
                    .unwrap(),
            );
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            set_parent_from_headers(&span, &incoming);
            assert_eq!(trace_id(&span).as_deref(), Some(TRACE_ID));

            // Client side: an outgoing call made inside the span carries the same trace.
            let outgoing = span.in_scope(|| {
                TraceContextInterceptor
                    .call(tonic::Request::new(()))
                    .unwrap()
            });
            let traceparent = outgoing
                .metadata()
                .get("traceparent")
                .unwrap()
                .to_str()
                .unwrap();
            assert!(
                traceparent.starts_with(&format!("00-{TRACE_ID}-")),
                "{traceparent}"
            );

            // Envelope side: the consumer's span joins the producer's trace.
            let (envelope_parent, _) = trace_headers(&span);
            let consumer = tracing::info_span!("consume");
            set_remote_parent(&consumer, &envelope_parent, "");
            assert_eq!(trace_id(&consumer).as_deref(), Some(TRACE_ID));
        });
    }

    #[test]
    fn without_incoming_context_a_new_trace_starts() {
        traced(|| {
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &http::HeaderMap::new());
            let id = trace_id(&span).expect("a root span has a trace id");
            assert_ne!(id, TRACE_ID);
            let mut headers = http::HeaderMap::new();
            inject_headers(&span, &mut headers);
            assert!(headers["traceparent"].to_str().unwrap().contains(&id));
        });
    }
}
