//! The opportunities service: opportunities through their sales stages, the pipeline, lost
//! reasons, articles and the sales documents (offers, orders, contracts, invoices, payments),
//! with numbering, balances, contract coverage and rendering (SPEC O1–O9). `run` starts it, in
//! a binary or in-process for tests.

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod partners;
pub mod render;
pub mod store;

use std::future::Future;

use crm_platform::{
    blob::BlobStore,
    clock::Clock,
    files::UploadTokens,
    service::{self, ServiceDef, Wiring},
};
use crm_proto::opportunities::{
    article_service_server::ArticleServiceServer,
    attachment_service_server::AttachmentServiceServer,
    contract_service_server::ContractServiceServer,
    document_render_service_server::DocumentRenderServiceServer,
    invoice_service_server::InvoiceServiceServer,
    lost_reason_service_server::LostReasonServiceServer,
    number_series_service_server::NumberSeriesServiceServer,
    offer_service_server::OfferServiceServer, opportunity_service_server::OpportunityServiceServer,
    order_service_server::OrderServiceServer, payment_service_server::PaymentServiceServer,
};

use crate::api::{Inner, OpportunitiesApi};

/// The opportunities service: its name and migrations.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "opportunities",
    migrations: &MIGRATOR,
};

/// Serves opportunities on `listener` until `shutdown` completes (see
/// [`crm_platform::service`]).
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
        let api = OpportunitiesApi::new(Inner {
            pool: ctx.pool.clone(),
            events: events::Events::new(ctx.outbox(events::STREAM), ctx.relay.clone()),
            clock: ctx.clock.clone(),
            company: settings.company.clone(),
            partners: partners::Partners::new(
                ctx.pool.clone(),
                &settings.marketing,
                ctx.service_calls(),
            )?,
            blobs,
            uploads: UploadTokens::new(&ctx.settings().auth),
        });
        let auth = ctx.auth();
        // Every service of the package is the same handlers behind the token check.
        macro_rules! authed {
            ($server:ident) => {
                $server::with_interceptor(api.clone(), auth.clone())
            };
        }
        Ok(Wiring::new()
            .serve(authed!(OpportunityServiceServer))
            .serve(authed!(LostReasonServiceServer))
            .serve(authed!(ArticleServiceServer))
            .serve(authed!(NumberSeriesServiceServer))
            .serve(authed!(OfferServiceServer))
            .serve(authed!(OrderServiceServer))
            .serve(authed!(ContractServiceServer))
            .serve(authed!(InvoiceServiceServer))
            .serve(authed!(PaymentServiceServer))
            .serve(authed!(DocumentRenderServiceServer))
            .serve(authed!(AttachmentServiceServer))
            .consume(ctx.consumer(events::MARKETING_STREAM, events::MarketingEvents)?)
            .consume(ctx.consumer(events::TASKS_STREAM, events::TaskEvents)?)
            .consume(ctx.consumer(events::COMMANDS_STREAM, events::BillingCommands { api })?))
    })
    .await
}

/// Opportunities' own migrations (`services/opportunities/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
