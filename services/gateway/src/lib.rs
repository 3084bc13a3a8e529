//! `crm-gateway`: the CRM's one public gRPC endpoint.
//!
//! Every call passes CORS (browsers), then gRPC-Web translation (HTTP/1.1 or HTTP/2, binary or
//! text, into plain gRPC and back), then a router by gRPC service name:
//! - `grpc.health.v1.Health`: the gateway's own health, SERVING while it accepts calls;
//! - `grpc.reflection.v1[alpha].ServerReflection`: every public `crm.*` service;
//! - `crm.<package>.v1.*`: [`proxy`] — trace, token, rate limit, identity stripping, deadline,
//!   then forwarded over HTTP/2 to the upstream configured for the package, spread over its
//!   replicas by [`balance`];
//! - anything else: UNIMPLEMENTED (gRPC) or 404.
//!
//! Plain HTTP/1.1 and h2c HTTP/2 are served on the same port.

pub mod balance;
pub mod config;
pub mod deadline;
pub mod proxy;
pub mod rate_limit;
pub mod routing;

use std::{convert::Infallible, future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use crm_platform::{auth::TokenVerifier, server};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tonic::{Status, body::Body};
use tonic_health::ServingStatus;
use tower::{Service, ServiceBuilder, ServiceExt as _, util::BoxCloneSyncService};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    balance::{DnsResolver, Resolve},
    config::{CorsSettings, Settings},
    proxy::Proxy,
    rate_limit::RateLimit,
    routing::{GrpcPath, Routes},
};

/// How long in-flight calls may still run after shutdown was asked for; Kubernetes kills the
/// pod 30 s after SIGTERM by default, so finish (or give up) before that.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// HTTP/2 pings to clients, so connections of vanished clients are closed.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Serves the gateway on `listener` until `shutdown` completes, then stops accepting, reports
/// NOT_SERVING and lets in-flight calls finish (for at most 25 s). Upstream host names are
/// resolved with the system resolver (DNS in a cluster).
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with_resolver(settings, listener, shutdown, Arc::new(DnsResolver)).await
}

/// [`run`], with upstream host names resolved by `resolver` (tests make replicas come and go).
pub async fn run_with_resolver(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    resolver: Arc<dyn Resolve>,
) -> anyhow::Result<()> {
    let verifier =
        TokenVerifier::from_settings(&settings.auth).context("cannot read the token keys")?;
    let routes = Routes::from_settings(&settings.routes).map_err(anyhow::Error::msg)?;
    let rate_limit = RateLimit::new(&settings.rate_limit);
    let (stop_housekeeping, housekeeping_stopped) = tokio::sync::watch::channel(false);
    let housekeeping = rate_limit.spawn_housekeeping(housekeeping_stopped);
    let proxy = Proxy::new(
        routes,
        verifier,
        rate_limit,
        settings.deadlines.clone(),
        resolver,
        settings.balancing.resolve_interval(),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    // Reaching this point means the listener is bound; upstream health is each service's own.
    health.set_service_status("", ServingStatus::Serving).await;
    let service_names = crm_proto::service_names();
    let router = Router {
        inner: Arc::new(RouterInner {
            proxy,
            health: BoxCloneSyncService::new(health_service),
            reflection_v1: BoxCloneSyncService::new(server::reflection_v1(&service_names)),
            reflection_v1alpha: BoxCloneSyncService::new(server::reflection_v1alpha(
                &service_names,
            )),
        }),
    };
    let service = ServiceBuilder::new()
        .layer(cors_layer(&settings.cors)?)
        .layer(tonic_web::GrpcWebLayer::new())
        .service(router);

    let result = serve(listener, service, async {
        shutdown.await;
        // Load balancers stop sending before connections close.
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
    })
    .await;
    let _ = stop_housekeeping.send(true);
    let _ = housekeeping.await;
    result
}

/// CORS for the configured origins: preflights answered here; gRPC status headers exposed to
/// the page's script (grpc-web reads them).
fn cors_layer(settings: &CorsSettings) -> anyhow::Result<CorsLayer> {
    let origins = if settings.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let origins = settings
            .allowed_origins
            .iter()
            .map(|o| HeaderValue::from_str(o).with_context(|| format!("bad origin {o:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(origins)
    };
    let names = |names: &[&'static str]| -> Vec<HeaderName> {
        names.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(names(&[
            "authorization",
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "traceparent",
            "tracestate",
        ]))
        .expose_headers(names(&[
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
        ]))
        // Browsers cache the preflight so each call is one request, not two.
        .max_age(Duration::from_secs(24 * 3600)))
}

type GrpcService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Dispatches a (plain gRPC) request by service name.
#[derive(Clone)]
struct Router {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    proxy: Proxy,
    health: GrpcService,
    reflection_v1: GrpcService,
    reflection_v1alpha: GrpcService,
}

impl Service<Request<Body>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { Ok(inner.route(request).await) })
    }
}

impl RouterInner {
    async fn route(&self, request: Request<Body>) -> Response<Body> {
        let service = GrpcPath::parse(request.uri().path()).map(|p| p.service);
        let local = match service {
            Some("grpc.health.v1.Health") => &self.health,
            Some("grpc.reflection.v1.ServerReflection") => &self.reflection_v1,
            Some("grpc.reflection.v1alpha.ServerReflection") => &self.reflection_v1alpha,
            Some(name) if name.starts_with("crm.") => return self.proxy.handle(request).await,
            _ => return not_found(&request),
        };
        match local.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// UNIMPLEMENTED for a gRPC call to a service that is not here; 404 for anything else.
fn not_found(request: &Request<Body>) -> Response<Body> {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if is_grpc {
        Status::unimplemented(format!("no service at {}", request.uri().path())).into_http()
    } else {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    }
}

/// Accepts HTTP/1.1 and h2c HTTP/2 connections until `shutdown`, then stops accepting and waits
/// (at most [`SHUTDOWN_GRACE`]) for the open connections to finish their calls.
async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(CLIENT_KEEP_ALIVE);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Running out of file descriptors must not stop the gateway: wait, retry.
                        tracing::warn!(error = %err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(stream);
                let connection = builder
                    .serve_connection(io, TowerToHyperService::new(service.clone()))
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "gateway stopped accepting; finishing in-flight calls"
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("calls still running after the shutdown grace period were cut");
    }
    Ok(())
}
