//! The marketing service: partners and leads (M1, M2), and later campaigns and their return
//! (M3–M9). `run` starts it, in a binary or in-process for tests.

pub mod api;
pub mod config;
pub mod consumers;
pub mod convert;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;
pub mod uploads;

use std::future::Future;

use crm_platform::{
    blob::BlobStore,
    clock::Clock,
    files::UploadTokens,
    service::{self, ServiceDef, Wiring},
};
use crm_proto::{
    files::file_service_server::FileServiceServer,
    marketing::partner_service_server::PartnerServiceServer,
};
use tonic::codegen::InterceptedService;

/// The marketing service: its name and migrations.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "marketing",
    migrations: &MIGRATOR,
};

/// Serves marketing on `listener` until `shutdown` completes (see [`crm_platform::service`]).
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
    let blobs = BlobStore::local(&settings.base.blob.root)?;
    let max_upload = settings.base.server.max_upload_bytes;
    let collect_every = std::time::Duration::from_millis(settings.files.collect_interval_ms);
    service::run(SERVICE, &settings.base, listener, shutdown, clock, |ctx| {
        let events = events::Events::new(ctx.outbox(events::STREAM), ctx.relay.clone());
        let partners = api::PartnerApi::new(ctx.pool.clone(), events, ctx.clock.clone());
        let files = api::FileApi::new(
            ctx.pool.clone(),
            blobs.clone(),
            ctx.clock.clone(),
            UploadTokens::new(&ctx.settings().auth),
            max_upload,
        );
        let (pool, clock) = (ctx.pool.clone(), ctx.clock.clone());
        let mut wiring = Wiring::new()
            .serve(PartnerServiceServer::with_interceptor(partners, ctx.auth()))
            .serve(InterceptedService::new(
                // The platform's request limit refuses bigger uploads first, with
                // RESOURCE_EXHAUSTED; tonic's own must not be lower.
                FileServiceServer::new(files).max_decoding_message_size(max_upload + 4096),
                ctx.auth(),
            ))
            .background(move |stop| uploads::collect(pool, blobs, clock, collect_every, stop));
        for stream in consumers::STREAMS {
            wiring = wiring.consume(ctx.consumer(stream, consumers::SiblingEvents)?);
        }
        Ok(wiring)
    })
    .await
}

/// Marketing's own migrations (`services/marketing/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
