//! Writing events into the outbox, in the transaction of the change they describe.

use chrono::{DateTime, Utc};
use crm_proto::events::Envelope;
use prost::Message as _;
use uuid::Uuid;

use super::EventError;
use crate::telemetry;

/// Writes events of one producer to one stream through the outbox table.
#[derive(Clone, Debug)]
pub struct Outbox {
    producer: String,
    stream: String,
}

impl Outbox {
    /// An outbox for events of `producer` (the service name, e.g. `marketing`) bound for `stream`,
    /// the full stream name with its prefix (see [`crate::redis_conn::stream_name`]).
    pub fn new(producer: &str, stream: String) -> Self {
        Self {
            producer: producer.to_owned(),
            stream,
        }
    }

    /// The full name of the stream the events go to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Adds the event `payload`, which `actor` (the token subject whose call caused it) made
    /// happen at `at`, to the outbox through `conn`, which should be the transaction that makes
    /// the change (`&mut *tx`): the event is published if and only if that transaction commits.
    /// Returns the event id (a UUIDv7).
    ///
    /// The envelope carries the trace context of the current span, so consumers continue the
    /// same trace. The relay is woken when the transaction commits.
    #[tracing::instrument(
        skip_all,
        fields(stream = %self.stream, event_type = M::full_name(), event_id)
    )]
    pub async fn publish<M: prost::Name>(
        &self,
        conn: &mut sqlx::PgConnection,
        partner_id: Option<Uuid>,
        actor: &str,
        payload: &M,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let id = Uuid::now_v7();
        tracing::Span::current().record("event_id", tracing::field::display(id));
        let event_type = M::full_name();
        let (traceparent, tracestate) = telemetry::trace_headers(&tracing::Span::current());
        let envelope = Envelope {
            id: id.to_string(),
            r#type: event_type.clone(),
            time: Some(std::time::SystemTime::from(at).into()),
            producer: self.producer.clone(),
            partner_id: partner_id.map(|p| p.to_string()).unwrap_or_default(),
            traceparent,
            tracestate,
            payload: Some(prost_types::Any::from_msg(payload)?),
            actor: actor.to_owned(),
        };
        // No NOTIFY here: PostgreSQL serialises the commits of every transaction that notifies
        // (measured: 13.6k → 4.0k single-row transactions/s), which would cap every write of
        // every service. The relay polls cheaply instead, and `RelayWaker` wakes it at once
        // when the commit happens in its own process.
        sqlx::query(
            "INSERT INTO outbox (event_id, stream, event_type, envelope) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&self.stream)
        .bind(&event_type)
        .bind(envelope.encode_to_vec())
        .execute(conn)
        .await?;
        Ok(id)
    }
}
