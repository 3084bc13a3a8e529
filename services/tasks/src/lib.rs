//! The tasks service: staff and categories, tasks with availability, post-sale services with
//! their coverage, replies, broadcasts, reminders, resolution and billing, the live feed of new
//! tasks and tracking (SPEC T1–T11), and the tasks other services ask for (O4 follow-ups, E3
//! imported email). `run` starts it, in a binary or in-process for tests.

pub mod api;
pub mod config;
pub mod consumers;
pub mod domain;
pub mod error;
pub mod events;
pub mod opportunities;
pub mod scheduler;
pub mod store;

use std::future::Future;

use crm_platform::{
    blob::BlobStore,
    clock::Clock,
    events::fanout::FanOut,
    files::UploadTokens,
    service::{self, ServiceDef, Wiring},
};
use crm_proto::tasks::{
    attachment_service_server::AttachmentServiceServer,
    service_catalog_service_server::ServiceCatalogServiceServer,
    staff_service_server::StaffServiceServer, task_service_server::TaskServiceServer,
    task_settings_service_server::TaskSettingsServiceServer,
};

use crate::api::{Inner, TasksApi};

/// The tasks service: its name and migrations.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "tasks",
    migrations: &MIGRATOR,
};

/// Live events buffered per watching call before a slow one falls behind and catches up.
const FEED_BUFFER: usize = 1024;

/// Serves tasks on `listener` until `shutdown` completes (see [`crm_platform::service`]).
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
    service::run(SERVICE, &settings.base, listener, shutdown, clock, |ctx| {
        let events = events::Events::new(
            ctx.outbox(events::STREAM),
            ctx.outbox(events::NOTIFICATIONS_STREAM),
            ctx.outbox(events::BILLING_STREAM),
            ctx.relay.clone(),
        );
        let feed = FanOut::new(
            &ctx.settings().redis,
            ctx.stream(events::STREAM),
            FEED_BUFFER,
        );
        let api = TasksApi::new(Inner {
            pool: ctx.pool.clone(),
            events: events.clone(),
            clock: ctx.clock.clone(),
            zone: settings.company.time_zone,
            opportunities: opportunities::Opportunities::new(
                &settings.opportunities,
                ctx.service_calls(),
                settings.coverage.timeout(),
            )?,
            blobs,
            uploads: UploadTokens::new(&ctx.settings().auth),
            feed: feed.clone(),
            settings: settings.clone(),
        });
        let scheduler = scheduler::Scheduler {
            pool: ctx.pool.clone(),
            events,
            clock: ctx.clock.clone(),
            zone: settings.company.time_zone,
            settings: settings.reminders.clone(),
        };
        let auth = ctx.auth();
        // Every service of the package is the same handlers behind the token check.
        macro_rules! authed {
            ($server:ident) => {
                $server::with_interceptor(api.clone(), auth.clone())
            };
        }
        Ok(Wiring::new()
            .serve(authed!(StaffServiceServer))
            .serve(authed!(TaskServiceServer))
            .serve(authed!(ServiceCatalogServiceServer))
            .serve(authed!(TaskSettingsServiceServer))
            .serve(authed!(AttachmentServiceServer))
            .consume(ctx.consumer(
                events::OPPORTUNITIES_STREAM,
                consumers::OpportunityEvents { api: api.clone() },
            )?)
            .consume(ctx.consumer(
                events::EMAIL_IMPORT_STREAM,
                consumers::EmailImportEvents { api },
            )?)
            .background(move |stop| feed.run(stop))
            .background(move |stop| scheduler.run(stop)))
    })
    .await
}

/// Tasks' own migrations (`services/tasks/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
