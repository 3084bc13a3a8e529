//! Events between services: the transactional outbox, the relay that copies it to Redis Streams
//! and the idempotent stream consumer.
//!
//! - [`Outbox`] writes an event into the `outbox` table inside the caller's transaction, so the
//!   event exists if and only if the change it describes was committed.
//! - [`Relay`] copies outbox rows to Redis (`XADD`) in outbox order. One relay per service leads
//!   at a time (a PostgreSQL advisory lock elects it), so replicas can come and go.
//! - [`Consumer`] reads a stream with a consumer group, applies each event and records its id in
//!   `processed_events` in one transaction, then acknowledges it. Messages left pending by a dead
//!   consumer are reclaimed; one that keeps failing goes to the dead-letter stream
//!   `<stream>.dead`.
//!
//! Delivery is at least once: a relay that crashes between `XADD` and marking the rows published
//! sends them again, and a consumer that crashes between commit and `XACK` receives the event
//! again. Consumers recognise a repeated event id and skip it, so every effect happens once.
//!
//! Both long-running parts stop when the shutdown channel they are given turns `true` (or its
//! sender is dropped): `let (stop, shutdown) = tokio::sync::watch::channel(false);`.

mod consumer;
pub mod fanout;
mod outbox;
mod relay;

use tokio::sync::watch;

pub use consumer::{
    Consumer, ConsumerSettings, DEAD_LETTER_SUFFIX, EventHandler, HandlerError, decode_payload,
};
pub use outbox::Outbox;
pub use relay::{Relay, RelaySettings, RelayWaker};

/// The name of the field of a stream message that holds the encoded [`Envelope`].
///
/// [`Envelope`]: crm_proto::events::Envelope
pub const ENVELOPE_FIELD: &str = "envelope";

/// The name of the field of a stream message that holds the event type (the payload's full
/// protobuf name), so a stream can be inspected with `redis-cli` without decoding envelopes.
pub const TYPE_FIELD: &str = "type";

/// Failures of the outbox, the relay and the consumer.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// PostgreSQL refused a statement or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Redis refused a command or could not be reached.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The payload could not be encoded into the envelope.
    #[error("could not encode the event payload: {0}")]
    Encode(#[from] prost::EncodeError),
}

/// Whether `err` means the database cannot be used right now (connection lost, pool exhausted,
/// server shutting down) rather than that a statement was refused.
pub(crate) fn database_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P0x: the server is shutting down or starting.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// Whether shutdown was requested: the value is `true` or every sender is gone.
pub(crate) fn is_shutdown(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once shutdown is requested (see [`is_shutdown`]).
pub(crate) async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // An error means every sender was dropped: nobody can ever ask to stop, so stop now.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
