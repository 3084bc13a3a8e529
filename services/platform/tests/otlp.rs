//! Spans leave the process over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (X4): a
//! real OTLP trace receiver in the test collects what `telemetry::init` exports.
//!
//! This file holds one test on purpose: `init` installs the process-wide subscriber.

use std::sync::{Arc, Mutex};

use crm_platform::telemetry::{self, LogFormat, TelemetrySettings};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_to_the_configured_otlp_endpoint() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let guard = telemetry::init(
        "otlp-test",
        &TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            otlp_endpoint: Some(format!("http://{addr}")),
            sampling_ratio: 1.0,
        },
    )
    .unwrap();
    tracing::info_span!("checkout partner").in_scope(|| tracing::info!("inside the span"));
    // Dropping the guard flushes what the batch exporter still holds.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let spans = collector.spans.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .any(|(service, name)| name == "checkout partner" && service.contains("otlp-test")),
        "{spans:?}"
    );
}
