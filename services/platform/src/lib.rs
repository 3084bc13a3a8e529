//! `crm-platform`: what every CRM service shares, and nothing that only one service needs.
//!
//! - [`settings`]: built-in defaults, an optional TOML file, then `CRM__SECTION__KEY` variables.
//! - [`telemetry`]: tracing logs, OpenTelemetry export, W3C trace context in gRPC and envelopes.
//! - [`db`]: the PostgreSQL pool bound to the service's schema, with its migrations.
//! - [`events`]: the outbox, the relay to Redis Streams and the idempotent stream consumer.
//! - [`auth`]: bearer token verification, the caller's identity, service tokens.
//! - [`error`]: turning failures into `tonic::Status` with field details.
//! - [`server`]: the gRPC bootstrap: health, reflection, request spans, request size limit,
//!   graceful shutdown.
//! - [`service`]: a service's whole start-up (pool, migrations, relay, health, consumers,
//!   shutdown) and its `main` (`serve` or `migrate`).
//! - [`clock`] and [`blob`]: a settable clock and the content-addressed file store.
//! - [`values`]: request values every service parses alike (text, ids, currencies, dates).
//! - [`files`]: upload tokens, content sniffing and download streams of attachments.

pub mod auth;
pub mod blob;
pub mod calendar;
pub mod clock;
pub mod db;
mod db_enum;
pub mod error;
pub mod events;
pub mod files;
pub mod input;
mod message_limit;
pub mod paging;
pub mod redis_conn;
pub mod server;
pub mod service;
pub mod settings;
pub mod telemetry;
pub mod testing;
pub mod values;
