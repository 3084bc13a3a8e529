//! The relay: copies committed outbox rows to Redis Streams, in outbox order, one leader at a
//! time.

use std::{sync::Arc, time::Duration};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::{ENVELOPE_FIELD, EventError, TYPE_FIELD, is_shutdown};
use crate::settings::RedisSettings;

/// Tuning of the relay (`[events.relay]` in a service's settings). Every field has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RelaySettings {
    /// Most outbox rows sent to Redis in one round trip.
    pub batch_size: u32,
    /// How often the leader looks for unpublished rows when no `RelayWaker` woke it, in ms:
    /// the delay of events committed by another replica.
    pub poll_interval_ms: u64,
    /// How often a relay that is not the leader tries to become it, in ms.
    pub leader_retry_ms: u64,
    /// How long the leader waits for the outbox table lock before trying again later, in ms; it
    /// bounds how long a slow writing transaction can hold up other writers queued behind the
    /// relay's lock request.
    pub lock_timeout_ms: u64,
    /// How long published rows are kept (for inspection and replay) before deletion, in seconds.
    pub retention_secs: u64,
    /// How often published rows older than the retention are deleted, in ms.
    pub cleanup_interval_ms: u64,
    /// When set, each stream is trimmed to about this many entries (`XADD … MAXLEN ~ n`). Unset
    /// keeps everything, so a consumer that was down for long still finds every event.
    pub max_stream_len: Option<u64>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval_ms: 100,
            leader_retry_ms: 2_000,
            lock_timeout_ms: 2_000,
            retention_secs: 24 * 60 * 60,
            cleanup_interval_ms: 10 * 60 * 1_000,
            max_stream_len: None,
        }
    }
}

/// Takes the session advisory lock that elects the relay of this outbox. The key is the oid of
/// the `outbox` table in the connection's schema: unique within the database, so services that
/// share a database (one schema each) elect their relays independently and never collide.
/// The first key is a constant namespace ("CRMr") apart from other users of advisory locks.
const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_lock(1129467250, \
     ('outbox'::regclass::oid::bigint - 2147483648)::int4)";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(1129467250, \
     ('outbox'::regclass::oid::bigint - 2147483648)::int4)";

/// Copies committed outbox rows to Redis Streams in `position` order. Run one per service
/// replica: the replicas elect one leader with a PostgreSQL advisory lock, and another takes
/// over within [`RelaySettings::leader_retry_ms`] when it goes away.
pub struct Relay {
    pool: PgPool,
    redis: ConnectionManager,
    settings: RelaySettings,
    waker: RelayWaker,
}

/// Wakes the relay of this process right after a transaction that wrote events committed, so
/// they go out at once rather than at the next poll. Cheap to clone. A wake while the relay is
/// busy is kept for its next wait, so none is lost; when another replica leads, its poll
/// ([`RelaySettings::poll_interval_ms`]) finds the rows.
#[derive(Clone, Debug, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    /// Tells the relay that events were committed.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// One unpublished outbox row.
struct Row {
    position: i64,
    stream: String,
    event_type: String,
    envelope: Vec<u8>,
}

impl Relay {
    /// A relay for the outbox in the schema of `pool`, publishing to the Redis of `redis`. It
    /// opens its own Redis connection (lazily: a Redis outage at start only delays events). Call
    /// it inside a Tokio runtime.
    pub fn new(
        pool: PgPool,
        redis: &RedisSettings,
        settings: RelaySettings,
    ) -> Result<Self, EventError> {
        let client = redis::Client::open(redis.url.expose_secret())?;
        let redis = ConnectionManager::new_lazy_with_config(
            client,
            ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(10))),
        )?;
        Ok(Self {
            pool,
            redis,
            settings,
            waker: RelayWaker::default(),
        })
    }

    /// The waker that services call after committing events (see [`RelayWaker`]).
    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    /// Runs until `shutdown` turns `true`: tries to become the leader, and while leading
    /// publishes what is committed to the outbox. Failures are logged and retried; they never
    /// end the relay.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let retry = Duration::from_millis(self.settings.leader_retry_ms);
        // A dedicated connection, outside the pool: the session lock lives as long as it does,
        // and a pooled connection returned with the lock held would keep it forever.
        let mut lock_conn: Option<PgConnection> = None;
        loop {
            if is_shutdown(&shutdown) {
                break;
            }
            if lock_conn.is_none() {
                match PgConnection::connect_with(&self.pool.connect_options()).await {
                    Ok(conn) => lock_conn = Some(conn),
                    Err(err) => tracing::warn!(error = %err, "outbox relay cannot connect"),
                }
            }
            if let Some(conn) = lock_conn.as_mut() {
                match sqlx::query_scalar::<_, bool>(TRY_LOCK_SQL)
                    .fetch_one(&mut *conn)
                    .await
                {
                    Ok(true) => {
                        tracing::info!("outbox relay is the leader");
                        let result = self.lead(conn, &mut shutdown).await;
                        match result {
                            Ok(()) => {
                                // Shutting down: hand over at once rather than when the
                                // connection closes.
                                let _ = sqlx::query(UNLOCK_SQL).execute(&mut *conn).await;
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "outbox relay stopped leading");
                                // Close the session, so the lock is surely released and the
                                // next attempt starts from a clean connection.
                                if let Some(conn) = lock_conn.take() {
                                    let _ = conn.close().await;
                                }
                            }
                        }
                    }
                    Ok(false) => tracing::debug!("another outbox relay is the leader"),
                    Err(err) => {
                        tracing::warn!(error = %err, "outbox relay cannot try to lead");
                        lock_conn = None;
                    }
                }
            }
            tokio::select! {
                () = super::shutdown_requested(&mut shutdown) => break,
                () = tokio::time::sleep(retry) => {}
            }
        }
        if let Some(conn) = lock_conn {
            let _ = conn.close().await;
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes while holding the lock on `conn`, until shutdown (`Ok`) or a failure (`Err`).
    /// Every statement runs on `conn`: if its session was lost (and with it the lock, so another
    /// relay may lead now) the next statement fails and this relay steps down.
    async fn lead(
        &mut self,
        conn: &mut PgConnection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), EventError> {
        sqlx::query("SELECT set_config('lock_timeout', $1, false)")
            .bind(format!("{}ms", self.settings.lock_timeout_ms))
            .execute(&mut *conn)
            .await?;
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let cleanup_every = Duration::from_millis(self.settings.cleanup_interval_ms);
        let mut next_cleanup = Instant::now();
        loop {
            // Publish until a batch comes back short: a backlog goes out at full speed.
            loop {
                let published = self.publish_batch(conn).await?;
                if published < self.settings.batch_size as usize || is_shutdown(shutdown) {
                    break;
                }
            }
            if Instant::now() >= next_cleanup {
                self.delete_old(conn).await?;
                next_cleanup = Instant::now() + cleanup_every;
            }
            tokio::select! {
                biased;
                () = super::shutdown_requested(shutdown) => return Ok(()),
                () = self.waker.0.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Publishes the next batch of unpublished rows; returns how many.
    async fn publish_batch(&mut self, conn: &mut PgConnection) -> Result<usize, EventError> {
        // A cheap look first, without the table lock: polling an empty outbox must not block
        // writers. Rows committed after this look are found by the next wake or poll.
        let pending: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)")
                .fetch_one(&mut *conn)
                .await?;
        if !pending {
            return Ok(0);
        }
        let rows = match self.next_batch(conn).await {
            Ok(rows) => rows,
            Err(err) if is_lock_timeout(&err) => {
                tracing::warn!("outbox relay waited too long for the outbox lock; trying later");
                return Ok(0);
            }
            Err(err) => return Err(err.into()),
        };
        if rows.is_empty() {
            return Ok(0);
        }
        self.send(conn, &rows).await?;
        Ok(rows.len())
    }

    /// The oldest unpublished rows, in `position` order, such that no row with a smaller position
    /// can still appear.
    ///
    /// Positions are assigned at insert time but transactions commit in any order, so position 7
    /// can be visible while position 5 is still in flight. Locking the table in EXCLUSIVE mode
    /// (which conflicts with the ROW EXCLUSIVE lock of every inserting transaction) waits for the
    /// in-flight inserts to finish; rows inserted after the lock is released get higher positions
    /// than everything read here. The transaction is kept short: only the read happens inside it.
    async fn next_batch(&self, conn: &mut PgConnection) -> Result<Vec<Row>, sqlx::Error> {
        // READ COMMITTED whatever the server default: the read below must see everything
        // committed before the lock was granted, which a snapshot taken earlier would not.
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        sqlx::query("LOCK TABLE outbox IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT position, stream, event_type, envelope FROM outbox \
             WHERE published_at IS NULL ORDER BY position LIMIT $1",
        )
        .bind(i64::from(self.settings.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(position, stream, event_type, envelope)| Row {
                position,
                stream,
                event_type,
                envelope,
            })
            .collect())
    }

    /// Appends `rows` to their streams in one atomic round trip, then marks them published. A
    /// crash in between publishes them again: at least once.
    #[tracing::instrument(
        name = "outbox.relay",
        skip_all,
        fields(
            otel.kind = "producer",
            events = rows.len(),
            first_position = rows.first().map(|r| r.position),
            last_position = rows.last().map(|r| r.position),
        )
    )]
    async fn send(&mut self, conn: &mut PgConnection, rows: &[Row]) -> Result<(), EventError> {
        let mut pipe = redis::pipe();
        // MULTI/EXEC: the batch is appended whole or not at all, so a failure midway does not
        // leave half of it to be duplicated by the retry.
        pipe.atomic();
        for row in rows {
            pipe.cmd("XADD").arg(&row.stream);
            if let Some(max_len) = self.settings.max_stream_len {
                pipe.arg("MAXLEN").arg("~").arg(max_len);
            }
            pipe.arg("*")
                .arg(ENVELOPE_FIELD)
                .arg(row.envelope.as_slice())
                .arg(TYPE_FIELD)
                .arg(&row.event_type)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.redis).await?;
        let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
        sqlx::query("UPDATE outbox SET published_at = now() WHERE position = ANY($1)")
            .bind(&positions)
            .execute(&mut *conn)
            .await?;
        tracing::debug!(events = rows.len(), "events published");
        Ok(())
    }

    /// Deletes published rows older than the retention.
    async fn delete_old(&self, conn: &mut PgConnection) -> Result<(), EventError> {
        let retention = self.settings.retention_secs as f64;
        let deleted = sqlx::query(
            "DELETE FROM outbox \
             WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)",
        )
        .bind(retention)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if deleted > 0 {
            tracing::debug!(deleted, "published outbox rows deleted");
        }
        Ok(())
    }
}

/// Whether `err` is PostgreSQL's `lock_not_available` (55P03), raised when `lock_timeout` expires.
fn is_lock_timeout(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "55P03")
}
