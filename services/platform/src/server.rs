//! The gRPC server every service runs: its own services behind the auth interceptor, plus
//! `grpc.health.v1` (NOT_SERVING until migrations ran and PostgreSQL and Redis answer), server
//! reflection v1 and v1alpha (grpcurl 1.8 speaks only v1alpha), a span per request continuing the
//! caller's trace, and graceful shutdown (stop accepting, finish in-flight calls).

use std::{future::Future, time::Duration};

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tonic::{body::Body, service::Routes, transport::server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::util::MapRequestLayer;
use tower_http::trace::TraceLayer;

use crate::{message_limit::MessageLimit, settings::ServerSettings};

/// The methods that take files: `server.max_upload_bytes` applies to them.
const UPLOAD_PATH: &str = "/crm.files.v1.FileService/";
/// Room for the other fields of an upload message (the file name).
const UPLOAD_OVERHEAD: usize = 4096;

/// How often readiness is checked again once serving.
const READINESS_INTERVAL: Duration = Duration::from_secs(5);

/// The health status of a service's public gRPC services and of the server as a whole (`""`).
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service_names: Vec<String>,
}

impl Health {
    /// Health for `service_names` (e.g. `crm.marketing.v1.PartnerService`), all NOT_SERVING.
    pub async fn new(service_names: &[&str]) -> Self {
        let health = Self {
            reporter: HealthReporter::new(),
            service_names: service_names.iter().map(|s| (*s).to_owned()).collect(),
        };
        health.set(ServingStatus::NotServing).await;
        health
    }

    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in &self.service_names {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// Checks PostgreSQL and Redis now and every few seconds until `shutdown`, reporting SERVING
    /// only while both answer. Call it once the migrations have run.
    pub fn watch_dependencies(
        &self,
        pool: PgPool,
        mut redis: ConnectionManager,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            let mut shutdown = shutdown;
            let mut last = None;
            loop {
                let ready =
                    crate::db::ping(&pool).await && crate::redis_conn::ping(&mut redis).await;
                if last != Some(ready) {
                    if ready {
                        tracing::info!("dependencies answer: serving");
                    } else {
                        tracing::warn!("database or redis does not answer: not serving");
                    }
                    health
                        .set(if ready {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        })
                        .await;
                    last = Some(ready);
                }
                tokio::select! {
                    () = tokio::time::sleep(READINESS_INTERVAL) => {}
                    _ = shutdown.changed() => break,
                }
            }
            health.set(ServingStatus::NotServing).await;
        })
    }
}

/// Serves `routes` (the service's own gRPC services, already wrapped in their interceptors) on
/// `listener`, with health and reflection, until `shutdown` completes; then stops accepting and
/// lets in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    health: &Health,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (limit, upload_limit) = (settings.max_message_bytes, settings.max_upload_bytes);
    let routes = routes
        .add_service(tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.reporter.clone()),
        ))
        .add_service(reflection_v1(&health.service_names))
        .add_service(reflection_v1alpha(&health.service_names));
    tonic::transport::Server::builder()
        // Failed calls are not logged here: bad input is the caller's business, and internal
        // causes are logged with their chain where they are mapped to a status.
        .layer(
            TraceLayer::new_for_grpc()
                .make_span_with(request_span)
                .on_failure(()),
        )
        // Oversized requests are RESOURCE_EXHAUSTED before they are buffered (see
        // message_limit.rs).
        .layer(MapRequestLayer::new(move |request: http::Request<Body>| {
            // Uploads carry whole files (up to 32 MiB by default); everything else keeps the
            // smaller limit. The gRPC framing overhead of an upload message is a few bytes.
            let limit = if request.uri().path().starts_with(UPLOAD_PATH) {
                upload_limit.saturating_add(UPLOAD_OVERHEAD)
            } else {
                limit
            };
            request.map(|body| Body::new(MessageLimit::new(body, limit)))
        }))
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// Server reflection v1 listing `service_names` (and health), with the descriptors of every CRM
/// proto file so clients can describe any message.
pub fn reflection_v1(
    service_names: &[String],
) -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    reflection(service_names)
        .build_v1()
        .expect("the embedded descriptor sets are valid")
}

/// Server reflection v1alpha, the same content as [`reflection_v1`].
pub fn reflection_v1alpha(
    service_names: &[String],
) -> tonic_reflection::server::v1alpha::ServerReflectionServer<
    impl tonic_reflection::server::v1alpha::ServerReflection,
> {
    reflection(service_names)
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid")
}

fn reflection(service_names: &[String]) -> tonic_reflection::server::Builder<'static> {
    service_names.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health"),
        |builder, name| builder.with_service_name(name.clone()),
    )
}

/// The span of one gRPC request, a child of the caller's trace when it sent `traceparent`.
fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        enduser.id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::set_parent_from_headers(&span, request.headers());
    span
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received: finishing in-flight calls");
}
