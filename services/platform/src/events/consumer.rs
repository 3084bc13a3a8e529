//! The stream consumer: reads a stream with a consumer group and applies each event once.

use std::{fmt, future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use crm_proto::events::Envelope;
use futures::FutureExt as _;
use prost::Message as _;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply},
};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::{sync::watch, time::Instant};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{ENVELOPE_FIELD, EventError, database_unavailable, is_shutdown};
use crate::{settings::RedisSettings, telemetry};

/// What is appended to a stream's name to name its dead-letter stream.
pub const DEAD_LETTER_SUFFIX: &str = ".dead";

/// How often old `processed_events` rows are deleted.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Longest wait of a blocking read, in ms, well within [`REDIS_TIMEOUT`].
const MAX_BLOCK_MS: u64 = 30_000;

/// How long a Redis command may take before the connection is considered broken: longer than
/// the longest blocking read.
const REDIS_TIMEOUT: Duration = Duration::from_secs(45);

/// Applies events of a stream to the consuming service's own tables.
///
/// Implement it with an `async fn`:
///
/// ```text
/// impl EventHandler for Partners {
///     async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
///         if let Some(created) = decode_payload::<PartnerCreated>(envelope)? {
///             store::upsert_partner(tx, &created).await?;
///         }
///         // Other types are not for this service: acknowledged and skipped.
///         Ok(())
///     }
/// }
/// ```
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `envelope` through `tx`, the transaction that also records the event as processed:
    /// both commit together, or neither does when this returns an error.
    ///
    /// Return `Ok(())` for event types the service does not care about: they are acknowledged
    /// and skipped. An error rolls the transaction back and leaves the event pending, to be
    /// retried until [`ConsumerSettings::max_deliveries`]; a [`HandlerError::permanent`] one goes
    /// to the dead-letter stream at once.
    fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<H: EventHandler> EventHandler for Arc<H> {
    fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).handle(tx, envelope)
    }
}

/// Why a handler could not apply an event. Any error converts into one with `?` (as a failure
/// worth retrying); [`HandlerError::permanent`] marks one that no retry can fix.
pub struct HandlerError {
    permanent: bool,
    source: anyhow::Error,
}

impl HandlerError {
    /// A failure that may pass (a sibling service was unavailable, a conflict): the event is
    /// retried later, up to [`ConsumerSettings::max_deliveries`] deliveries.
    pub fn retry(error: impl Into<anyhow::Error>) -> Self {
        Self {
            permanent: false,
            source: error.into(),
        }
    }

    /// A failure no retry can fix (a malformed payload): the event goes to the dead-letter stream
    /// at once.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self {
            permanent: true,
            source: error.into(),
        }
    }

    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// A database outage (not this event's fault) is retried without the attempt counting as a
    /// failed delivery; anything else is a failure of the event.
    fn into_failure(self) -> Failure {
        let unavailable = self
            .source
            .downcast_ref::<sqlx::Error>()
            .is_some_and(database_unavailable);
        if !unavailable {
            return Failure::Handler(self);
        }
        match self.source.downcast::<sqlx::Error>() {
            Ok(err) => Failure::Unavailable(err.into()),
            Err(source) => Failure::Handler(Self {
                permanent: self.permanent,
                source,
            }),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The whole chain: the text ends up in logs and in the dead-letter stream.
        write!(f, "{:#}", self.source)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("permanent", &self.permanent)
            .field("source", &self.source)
            .finish()
    }
}

/// The payload of `envelope` as an `M`, or `None` when the envelope holds another type. A
/// payload of the right type that does not decode is a permanent failure.
pub fn decode_payload<M: prost::Name + Default>(
    envelope: &Envelope,
) -> Result<Option<M>, HandlerError> {
    if envelope.r#type != M::full_name() {
        return Ok(None);
    }
    let any = envelope.payload.as_ref().ok_or_else(|| {
        HandlerError::permanent(anyhow::anyhow!("envelope {} has no payload", envelope.id))
    })?;
    any.to_msg::<M>().map(Some).map_err(HandlerError::permanent)
}

/// Tuning of a consumer (`[events.consumer]` in a service's settings). Every field has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ConsumerSettings {
    /// Most messages read (or reclaimed) at a time.
    pub batch_size: usize,
    /// How long a read waits for new messages, in ms (at most 30 000); also bounds how long
    /// shutdown waits.
    pub block_ms: u64,
    /// How long a message must have been pending before it is reclaimed, in ms: longer than the
    /// slowest handler, or a live consumer's message is taken from it. It is also the delay
    /// before a failed event is retried.
    pub min_idle_ms: u64,
    /// How often pending messages are looked for, in ms.
    pub reclaim_interval_ms: u64,
    /// Deliveries after which a failing event goes to the dead-letter stream.
    pub max_deliveries: usize,
    /// Pause after a failure of PostgreSQL or Redis, in ms.
    pub retry_backoff_ms: u64,
    /// How long the ids of applied events are kept in `processed_events`, in days: far longer
    /// than any redelivery can come late (a republished batch, a reclaimed message).
    pub processed_retention_days: u32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            batch_size: 32,
            block_ms: 2_000,
            min_idle_ms: 30_000,
            reclaim_interval_ms: 5_000,
            max_deliveries: 5,
            retry_backoff_ms: 1_000,
            processed_retention_days: 30,
        }
    }
}

/// Reads one stream as a member of a consumer group and applies every event once, through an
/// [`EventHandler`].
///
/// For each message: decode the envelope; in one transaction record its id in
/// `processed_events` (keyed by the group) and, if it was not there yet, call the handler;
/// commit; then `XACK`. Messages pending for longer than [`ConsumerSettings::min_idle_ms`]
/// (their consumer died, or the handler failed) are reclaimed with `XAUTOCLAIM` and tried
/// again; after [`ConsumerSettings::max_deliveries`] deliveries, or at once when the message is
/// not an envelope, it is copied to `<stream>.dead` and acknowledged.
///
/// Messages are applied one at a time in stream order; a failing one does not hold up the ones
/// after it.
pub struct Consumer<H> {
    pool: PgPool,
    redis: ConnectionManager,
    stream: String,
    dead_letter_stream: String,
    group: String,
    name: String,
    handler: H,
    settings: ConsumerSettings,
    /// Where the next `XAUTOCLAIM` scan of the pending list starts.
    reclaim_cursor: String,
}

/// Why a message could not be applied.
enum Failure {
    /// PostgreSQL or Redis is unavailable: retry later, not this message's fault.
    Unavailable(EventError),
    /// The event could not be applied.
    Handler(HandlerError),
}

impl<H: EventHandler> Consumer<H> {
    /// A consumer of `stream` (the full name, with prefix) in consumer group `group` (the
    /// consuming service's name, e.g. `email-import`; it also keys `processed_events`), applying
    /// events with `handler` through `pool`, with default settings and a unique consumer name.
    ///
    /// It opens its own Redis connection (lazily): blocking reads must not hold up other
    /// commands, and need a longer response timeout than the usual one. Call it inside a Tokio
    /// runtime.
    pub fn new(
        pool: PgPool,
        redis: &RedisSettings,
        stream: impl Into<String>,
        group: impl Into<String>,
        handler: H,
    ) -> Result<Self, EventError> {
        let client = redis::Client::open(redis.url.expose_secret())?;
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(REDIS_TIMEOUT));
        let stream = stream.into();
        Ok(Self {
            pool,
            redis: ConnectionManager::new_lazy_with_config(client, config)?,
            dead_letter_stream: format!("{stream}{DEAD_LETTER_SUFFIX}"),
            stream,
            group: group.into(),
            name: default_consumer_name(),
            handler,
            settings: ConsumerSettings::default(),
            reclaim_cursor: "0-0".to_owned(),
        })
    }

    /// Replaces the settings.
    pub fn with_settings(mut self, settings: ConsumerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Replaces the consumer name (unique within the group; by default the host name and a
    /// random suffix).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The consumer name within the group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs until `shutdown` turns `true`. Messages already read are applied first; a read in
    /// progress ends within [`ConsumerSettings::block_ms`]. Failures are logged and retried;
    /// they never end the consumer.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let backoff = Duration::from_millis(self.settings.retry_backoff_ms);
        let mut group_ready = false;
        // Reclaim first: a restarted service picks up what its previous run left pending.
        let mut next_reclaim = Instant::now();
        let mut next_cleanup = Instant::now();
        while !is_shutdown(&shutdown) {
            if Instant::now() >= next_cleanup {
                next_cleanup = Instant::now() + CLEANUP_INTERVAL;
                if let Err(err) = self.forget_old().await {
                    tracing::warn!(
                        group = %self.group,
                        error = %err,
                        "old processed events could not be deleted"
                    );
                }
            }
            if let Err(err) = self.step(&mut group_ready, &mut next_reclaim).await {
                tracing::warn!(
                    stream = %self.stream,
                    group = %self.group,
                    consumer = %self.name,
                    error = %err,
                    "event consumer failed; retrying"
                );
                if let EventError::Redis(redis_err) = &err
                    && redis_err.code() == Some("NOGROUP")
                {
                    // The stream or group was deleted (e.g. Redis lost its data): recreate.
                    group_ready = false;
                }
                tokio::select! {
                    () = super::shutdown_requested(&mut shutdown) => break,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
        tracing::info!(
            stream = %self.stream,
            group = %self.group,
            consumer = %self.name,
            "event consumer stopped"
        );
    }

    async fn step(
        &mut self,
        group_ready: &mut bool,
        next_reclaim: &mut Instant,
    ) -> Result<(), EventError> {
        if !*group_ready {
            self.create_group().await?;
            *group_ready = true;
        }
        if Instant::now() >= *next_reclaim {
            self.reclaim().await?;
            *next_reclaim =
                Instant::now() + Duration::from_millis(self.settings.reclaim_interval_ms);
        }
        for message in self.read_new().await? {
            // Read with `>`: this is the first delivery.
            self.process(message, 1).await?;
        }
        Ok(())
    }

    /// Deletes the group's `processed_events` rows older than the retention.
    async fn forget_old(&self) -> Result<(), EventError> {
        let deleted = sqlx::query(
            "DELETE FROM processed_events \
             WHERE consumer = $1 AND processed_at < now() - make_interval(days => $2)",
        )
        .bind(&self.group)
        .bind(i32::try_from(self.settings.processed_retention_days).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if deleted > 0 {
            tracing::debug!(group = %self.group, deleted, "old processed events deleted");
        }
        Ok(())
    }

    /// Creates the group at the start of the stream (and the stream), unless it exists.
    async fn create_group(&mut self) -> Result<(), EventError> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.redis)
            .await;
        match created {
            Err(err) if err.code() != Some("BUSYGROUP") => Err(err.into()),
            _ => Ok(()),
        }
    }

    /// New messages for this consumer, waiting up to `block_ms` for some.
    async fn read_new(&mut self) -> Result<Vec<StreamId>, EventError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.settings.batch_size)
            .arg("BLOCK")
            .arg(self.settings.block_ms.min(MAX_BLOCK_MS))
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut self.redis)
            .await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Takes over messages of the group pending for longer than `min_idle_ms` (of a dead
    /// consumer, or failed here) and processes them, one page of the pending list per call.
    async fn reclaim(&mut self) -> Result<(), EventError> {
        // Claiming raises each message's delivery count. While the database is down nothing can
        // be applied, and claiming would push events toward the dead-letter stream for no fault
        // of theirs.
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(self.settings.min_idle_ms)
            .arg(&self.reclaim_cursor)
            .arg("COUNT")
            .arg(self.settings.batch_size)
            .query_async(&mut self.redis)
            .await?;
        self.reclaim_cursor = reply.next_stream_id;
        if reply.claimed.is_empty() {
            return Ok(());
        }
        // XAUTOCLAIM does not say how often each message was delivered; XPENDING does.
        let mut pipe = redis::pipe();
        for message in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&message.id)
                .arg(&message.id)
                .arg(1);
        }
        let pending: Vec<StreamPendingCountReply> = pipe.query_async(&mut self.redis).await?;
        for (message, pending) in reply.claimed.into_iter().zip(pending) {
            let deliveries = pending.ids.first().map_or(1, |p| p.times_delivered);
            tracing::info!(
                stream = %self.stream,
                group = %self.group,
                message_id = %message.id,
                deliveries,
                "pending event reclaimed"
            );
            self.process(message, deliveries).await?;
        }
        Ok(())
    }

    /// Applies one message and acknowledges it, dead-letters it, or leaves it pending for a
    /// retry. Returns an error only when PostgreSQL or Redis is unavailable.
    async fn process(&mut self, message: StreamId, deliveries: usize) -> Result<(), EventError> {
        let raw: Vec<u8> = message.get(ENVELOPE_FIELD).unwrap_or_default();
        let envelope = match Envelope::decode(raw.as_slice()) {
            Ok(envelope) if !envelope.id.is_empty() => envelope,
            Ok(_) => {
                let error = "the message has no envelope (or one without an id)";
                return self.dead_letter(&message.id, &raw, deliveries, error).await;
            }
            Err(err) => {
                let error = format!("undecodable envelope: {err}");
                return self
                    .dead_letter(&message.id, &raw, deliveries, &error)
                    .await;
            }
        };
        if deliveries > self.settings.max_deliveries {
            // Delivered that often without an answer: it probably crashes its consumer.
            let error = format!("delivered {deliveries} times without being applied");
            return self
                .dead_letter(&message.id, &raw, deliveries, &error)
                .await;
        }

        let span = tracing::info_span!(
            "event.consume",
            otel.kind = "consumer",
            stream = %self.stream,
            group = %self.group,
            consumer = %self.name,
            message_id = %message.id,
            deliveries,
            event_id = %envelope.id,
            event_type = %envelope.r#type,
            producer = %envelope.producer,
            trace_id = tracing::field::Empty,
        );
        telemetry::set_remote_parent(&span, &envelope.traceparent, &envelope.tracestate);
        self.settle(&message.id, &raw, &envelope, deliveries)
            .instrument(span)
            .await
    }

    /// Applies a decoded event, then acknowledges it, dead-letters it, or leaves it pending.
    async fn settle(
        &mut self,
        message_id: &str,
        raw: &[u8],
        envelope: &Envelope,
        deliveries: usize,
    ) -> Result<(), EventError> {
        match self.apply(envelope).await {
            Ok(applied) => {
                self.ack(message_id).await?;
                if applied {
                    tracing::debug!("event applied");
                } else {
                    tracing::debug!("event already applied; skipped");
                }
                Ok(())
            }
            Err(Failure::Unavailable(err)) => Err(err),
            Err(Failure::Handler(err))
                if err.is_permanent() || deliveries >= self.settings.max_deliveries =>
            {
                self.dead_letter(message_id, raw, deliveries, &err.to_string())
                    .await
            }
            Err(Failure::Handler(err)) => {
                tracing::warn!(
                    error = %err,
                    retry_in_ms = self.settings.min_idle_ms,
                    "event handler failed; the event will be retried"
                );
                Ok(())
            }
        }
    }

    /// Records the event and applies it in one transaction; `Ok(false)` when it was already
    /// applied.
    async fn apply(&self, envelope: &Envelope) -> Result<bool, Failure> {
        let event_id = Uuid::parse_str(&envelope.id).map_err(|err| {
            Failure::Handler(HandlerError::permanent(anyhow::anyhow!(
                "invalid event id {:?}: {err}",
                envelope.id
            )))
        })?;
        let mut tx = self.pool.begin().await.map_err(sql_failure)?;
        // A concurrent delivery of the same event (reclaimed from a slow consumer) waits here
        // for the other transaction, then finds the row.
        let inserted = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(event_id)
        .execute(&mut *tx)
        .await
        .map_err(sql_failure)?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(false);
        }
        // A panicking handler fails this event only, not the consumer.
        let handled = AssertUnwindSafe(self.handler.handle(&mut tx, envelope))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(HandlerError::retry(anyhow::anyhow!(
                    "handler panicked: {text}"
                )))
            });
        match handled {
            Ok(()) => {}
            // Dropping the transaction rolls it back.
            Err(err) => return Err(err.into_failure()),
        }
        tx.commit().await.map_err(sql_failure)?;
        Ok(true)
    }

    async fn ack(&mut self, message_id: &str) -> Result<(), EventError> {
        redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(message_id)
            .query_async::<()>(&mut self.redis)
            .await?;
        Ok(())
    }

    /// Copies the message to the dead-letter stream with what went wrong, and acknowledges it.
    async fn dead_letter(
        &mut self,
        message_id: &str,
        raw: &[u8],
        deliveries: usize,
        error: &str,
    ) -> Result<(), EventError> {
        let mut pipe = redis::pipe();
        // Both or neither: a message is never acknowledged without its dead-letter copy.
        pipe.atomic()
            .cmd("XADD")
            .arg(&self.dead_letter_stream)
            .arg("*")
            .arg(ENVELOPE_FIELD)
            .arg(raw)
            .arg("stream")
            .arg(&self.stream)
            .arg("message_id")
            .arg(message_id)
            .arg("group")
            .arg(&self.group)
            .arg("consumer")
            .arg(&self.name)
            .arg("error")
            .arg(error)
            .arg("deliveries")
            .arg(deliveries)
            .ignore()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(message_id)
            .ignore();
        pipe.query_async::<()>(&mut self.redis).await?;
        tracing::error!(
            stream = %self.stream,
            group = %self.group,
            message_id,
            deliveries,
            error,
            dead_letter_stream = %self.dead_letter_stream,
            "event moved to the dead-letter stream"
        );
        Ok(())
    }
}

/// A database failure while applying: an outage is retried without counting against the
/// event; anything else (a constraint, a serialization failure) counts as a failed delivery.
fn sql_failure(err: sqlx::Error) -> Failure {
    if database_unavailable(&err) {
        Failure::Unavailable(err.into())
    } else {
        Failure::Handler(HandlerError::retry(err))
    }
}

/// The host name (the pod name in Kubernetes) and a random suffix, so consumers of one group
/// never share a name even in one process.
fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "consumer".to_owned());
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
