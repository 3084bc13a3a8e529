//! The marketing service: partners and leads (M1, M2), and later campaigns and their return
//! (M3–M9). `run` starts it, in a binary or in-process for tests.

pub mod api;
pub mod config;
pub mod convert;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;

use std::future::Future;

use crm_platform::{
    auth::{AuthInterceptor, TokenVerifier},
    clock::Clock,
    db,
    events::Relay,
    redis_conn, server,
};
use crm_proto::marketing::partner_service_server::PartnerServiceServer;
use tonic::service::Routes;

/// The gRPC services marketing serves (for health and reflection).
pub const SERVICE_NAMES: &[&str] = &["crm.marketing.v1.PartnerService"];

/// Serves marketing on `listener` until `shutdown` completes: health reports NOT_SERVING until
/// the migrations ran and PostgreSQL and Redis answer; the outbox relay runs alongside.
pub async fn run(
    settings: config::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(settings, listener, shutdown, Clock::system()).await
}

/// [`run`] with a clock that tests can set.
pub async fn run_with_clock(
    settings: config::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> anyhow::Result<()> {
    let verifier = TokenVerifier::from_settings(&settings.auth)?;
    let health = server::Health::new(SERVICE_NAMES).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Serve health from the start, so orchestrators see NOT_SERVING while migrations run.
    let pool = db::connect(&settings.database).await?;
    let relay = Relay::new(pool.clone(), &settings.redis, settings.relay.clone())?;
    let events = events::Events::new(
        redis_conn::stream_name(&settings.redis, events::STREAM),
        relay.waker(),
    );
    let partners = api::PartnerApi::new(pool.clone(), events, clock);
    let routes = Routes::new(PartnerServiceServer::with_interceptor(
        partners,
        AuthInterceptor::new(verifier),
    ));
    let serving = tokio::spawn({
        let health = health.clone();
        let stop_tx = stop_tx.clone();
        async move {
            let result = server::serve(listener, routes, &health, shutdown).await;
            // However serving ended, stop the background tasks too.
            let _ = stop_tx.send(true);
            result
        }
    });

    let background = async {
        db::migrate(&pool, &MIGRATOR).await?;
        let redis = redis_conn::connect(&settings.redis).await?;
        let watcher = health.watch_dependencies(pool.clone(), redis, stop_rx.clone());
        anyhow::Ok((watcher, tokio::spawn(relay.run(stop_rx.clone()))))
    };
    let (watcher, relay) = match background.await {
        Ok(tasks) => tasks,
        Err(err) => {
            // Without its schema or Redis the service cannot work: stop serving and say why.
            serving.abort();
            return Err(err.context("marketing could not start"));
        }
    };

    let served = serving.await?;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(watcher, relay);
    pool.close().await;
    served?;
    Ok(())
}

/// Marketing's own migrations (`services/marketing/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
