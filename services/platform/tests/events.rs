//! The outbox, relay and consumer against a real PostgreSQL and Redis: delivery survives a
//! killed relay or consumer, repeated events have one effect, poison ends in the dead-letter
//! stream, and order holds per stream even when transactions commit out of order.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use crm_platform::{
    db,
    events::{
        Consumer, ConsumerSettings, DEAD_LETTER_SUFFIX, EventHandler, HandlerError, Outbox, Relay,
        RelaySettings, RelayWaker, decode_payload,
    },
    redis_conn,
    settings::RedisSettings,
    telemetry,
    testing::{self, TestDatabase},
};
use crm_proto::{
    events::{Envelope, PartnerCreated},
    marketing::Partner,
};
use prost::Message as _;
use redis::{
    aio::ConnectionManager,
    streams::{StreamId, StreamPendingReply, StreamRangeReply},
};
use sqlx::{PgConnection, PgPool, migrate::Migrator};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use uuid::Uuid;

static MIGRATOR: Migrator = sqlx::migrate!("./tests/migrations");

const GROUP: &str = "tester";

/// One test's database, Redis namespace and stream.
struct Env {
    _db: TestDatabase,
    pool: PgPool,
    redis_settings: RedisSettings,
    redis: ConnectionManager,
    outbox: Outbox,
}

impl Env {
    async fn new() -> Self {
        init_tracing();
        let db = TestDatabase::create("events_test").await;
        let pool = db::connect_and_migrate(&db.settings, &MIGRATOR)
            .await
            .unwrap();
        let redis_settings = testing::redis_settings();
        let redis = redis_conn::connect(&redis_settings).await.unwrap();
        let stream = redis_conn::stream_name(&redis_settings, "crm.events.marketing");
        Self {
            _db: db,
            pool,
            redis_settings,
            redis,
            outbox: Outbox::new("marketing", stream),
        }
    }

    fn stream(&self) -> &str {
        self.outbox.stream()
    }

    fn dead_letter_stream(&self) -> String {
        format!("{}{DEAD_LETTER_SUFFIX}", self.stream())
    }

    /// Commits one `PartnerCreated` event whose partner id is `key`.
    async fn publish(&self, key: &str) -> Uuid {
        let mut tx = self.pool.begin().await.unwrap();
        let id = self.publish_in(&mut tx, key).await;
        tx.commit().await.unwrap();
        id
    }

    async fn publish_in(&self, conn: &mut PgConnection, key: &str) -> Uuid {
        self.outbox
            .publish(conn, None, "ana", &partner_created(key), Utc::now())
            .await
            .unwrap()
    }

    fn spawn_relay(&self, settings: RelaySettings) -> Task {
        self.spawn_relay_with_waker(settings).0
    }

    fn spawn_relay_with_waker(&self, settings: RelaySettings) -> (Task, RelayWaker) {
        let relay = Relay::new(self.pool.clone(), &self.redis_settings, settings).unwrap();
        let waker = relay.waker();
        let (stop, shutdown) = watch::channel(false);
        let task = Task {
            stop,
            handle: tokio::spawn(relay.run(shutdown)),
        };
        (task, waker)
    }

    fn spawn_consumer<H: EventHandler>(&self, handler: H, settings: ConsumerSettings) -> Task {
        let consumer = Consumer::new(
            self.pool.clone(),
            &self.redis_settings,
            self.stream(),
            GROUP,
            handler,
        )
        .unwrap()
        .with_settings(settings);
        let (stop, shutdown) = watch::channel(false);
        Task {
            stop,
            handle: tokio::spawn(consumer.run(shutdown)),
        }
    }

    async fn entries(&self, stream: &str) -> Vec<StreamId> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        reply.ids
    }

    /// Ids of the envelopes on the stream, in stream order.
    async fn stream_event_ids(&self) -> Vec<Uuid> {
        self.entries(self.stream())
            .await
            .iter()
            .map(|entry| {
                let envelope = decode_envelope(entry);
                envelope.id.parse().unwrap()
            })
            .collect()
    }

    async fn pending(&self) -> usize {
        let reply: StreamPendingReply = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(GROUP)
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        reply.count()
    }

    async fn count(&self, key: &str) -> i32 {
        sqlx::query_scalar("SELECT n FROM counters WHERE id = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .unwrap_or(0)
    }

    async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Installs, once per test binary, a subscriber that gives spans OpenTelemetry ids (nothing is
/// exported or printed), so trace context travels through envelopes. Global rather than
/// per-test: a scoped subscriber races with tests on other threads over tracing's per-callsite
/// interest cache.
fn init_tracing() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    static PROVIDER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
        std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("events-test")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        provider
    });
}

/// A running relay or consumer.
struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Task {
    /// Asks it to stop and waits until it has.
    async fn shutdown(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("stops within 5 s after shutdown")
            .unwrap();
    }

    /// Kills it, as a crash would.
    async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

fn partner_created(key: &str) -> PartnerCreated {
    PartnerCreated {
        partner: Some(Partner {
            id: key.to_owned(),
            name: format!("Partner {key}"),
            ..Partner::default()
        }),
    }
}

fn decode_envelope(entry: &StreamId) -> Envelope {
    let bytes: Vec<u8> = entry.get("envelope").unwrap();
    Envelope::decode(bytes.as_slice()).unwrap()
}

fn fast_relay() -> RelaySettings {
    RelaySettings {
        batch_size: 20,
        poll_interval_ms: 20,
        leader_retry_ms: 50,
        ..RelaySettings::default()
    }
}

fn fast_consumer() -> ConsumerSettings {
    ConsumerSettings {
        batch_size: 10,
        block_ms: 50,
        min_idle_ms: 300,
        reclaim_interval_ms: 50,
        max_deliveries: 3,
        retry_backoff_ms: 50,
        ..ConsumerSettings::default()
    }
}

/// Waits until `condition` holds, failing the test after 10 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the test handler does with a `PartnerCreated` event.
#[derive(Default)]
enum Behaviour {
    /// Adds one to the partner's counter.
    #[default]
    Count,
    /// Signals that it started, then never finishes (a consumer that dies mid-event).
    Hang(Arc<Notify>),
    /// Always fails.
    Fail,
}

#[derive(Default)]
struct Counter {
    behaviour: Behaviour,
    calls: AtomicUsize,
}

impl Counter {
    fn with(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour,
            calls: AtomicUsize::new(0),
        })
    }
}

impl EventHandler for Counter {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(created) = decode_payload::<PartnerCreated>(envelope)? else {
            return Ok(());
        };
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = created.partner.unwrap_or_default().id;
        sqlx::query(
            "INSERT INTO counters (id, n) VALUES ($1, 1) \
             ON CONFLICT (id) DO UPDATE SET n = counters.n + 1",
        )
        .bind(&key)
        .execute(&mut *tx)
        .await?;
        match &self.behaviour {
            Behaviour::Count => Ok(()),
            Behaviour::Hang(started) => {
                started.notify_one();
                std::future::pending().await
            }
            Behaviour::Fail => Err(HandlerError::retry(anyhow::anyhow!(
                "the counter refuses {key}"
            ))),
        }
    }
}

#[tokio::test]
async fn an_event_committed_while_the_relay_is_down_is_delivered_after_a_restart() {
    let env = Env::new().await;
    let relay = env.spawn_relay(fast_relay());
    let first = env.publish("a").await;
    eventually("the first event is on the stream", || async {
        env.stream_event_ids().await == [first]
    })
    .await;

    relay.kill().await;
    let second = env.publish("b").await;
    // Rolled back: must never be published.
    let mut tx = env.pool.begin().await.unwrap();
    env.publish_in(&mut tx, "rolled back").await;
    tx.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.stream_event_ids().await, [first]);

    let relay = env.spawn_relay(fast_relay());
    eventually("the second event is on the stream", || async {
        env.stream_event_ids().await.len() == 2
    })
    .await;
    assert_eq!(env.stream_event_ids().await, [first, second]);
    // The relay marks rows published just after it adds them to the stream.
    eventually("every row is marked published", || async {
        env.unpublished().await == 0
    })
    .await;

    let entry = &env.entries(env.stream()).await[1];
    let envelope = decode_envelope(entry);
    assert_eq!(envelope.r#type, "crm.events.v1.PartnerCreated");
    assert_eq!(envelope.producer, "marketing");
    assert_eq!(envelope.actor, "ana");
    assert_eq!(
        entry.get::<String>("type").as_deref(),
        Some("crm.events.v1.PartnerCreated")
    );
    let payload: PartnerCreated = envelope.payload.unwrap().to_msg().unwrap();
    assert_eq!(payload.partner.unwrap().id, "b");

    relay.shutdown().await;
}

#[tokio::test]
async fn the_waker_wakes_the_relay_long_before_its_poll() {
    let env = Env::new().await;
    let (relay, waker) = env.spawn_relay_with_waker(RelaySettings {
        poll_interval_ms: 60_000,
        ..fast_relay()
    });
    // Let it become the leader and go to sleep until its (far) next poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = env.publish("a").await;
    waker.wake();
    let started = tokio::time::Instant::now();
    eventually("the event is on the stream", || async {
        env.stream_event_ids().await == [id]
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    relay.shutdown().await;
}

#[tokio::test]
async fn an_event_read_by_a_consumer_that_died_is_reclaimed_and_applied_once() {
    let env = Env::new().await;
    let relay = env.spawn_relay(fast_relay());
    let started = Arc::new(Notify::new());
    let dying = env.spawn_consumer(
        Counter::with(Behaviour::Hang(started.clone())),
        fast_consumer(),
    );
    env.publish("a").await;
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the first consumer receives the event");
    // Killed after reading, before acknowledging: the message stays pending for it.
    dying.kill().await;
    assert_eq!(env.pending().await, 1);
    assert_eq!(env.count("a").await, 0);

    let handler = Counter::with(Behaviour::Count);
    let consumer = env.spawn_consumer(handler.clone(), fast_consumer());
    eventually("the event is applied by the second consumer", || async {
        env.count("a").await == 1
    })
    .await;
    eventually("the event is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    assert!(env.entries(&env.dead_letter_stream()).await.is_empty());

    consumer.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_has_one_effect() {
    let env = Env::new().await;
    let relay = env.spawn_relay(fast_relay());
    env.publish("twice").await;
    eventually("the event is on the stream", || async {
        env.stream_event_ids().await.len() == 1
    })
    .await;
    relay.shutdown().await;

    // The same envelope again, as a relay crashing between XADD and marking would send it.
    let envelope: Vec<u8> = sqlx::query_scalar("SELECT envelope FROM outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(env.stream())
        .arg("*")
        .arg("envelope")
        .arg(envelope.as_slice())
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    // Then another event, so we know when the consumer is past both copies.
    let relay = env.spawn_relay(fast_relay());
    env.publish("marker").await;

    let handler = Counter::with(Behaviour::Count);
    let consumer = env.spawn_consumer(handler.clone(), fast_consumer());
    eventually("the marker event is applied", || async {
        env.count("marker").await == 1
    })
    .await;
    assert_eq!(env.count("twice").await, 1);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    eventually("everything is acknowledged", || async {
        env.pending().await == 0
    })
    .await;

    // A restarted consumer (a new name in the same group) does not apply anything again.
    consumer.shutdown().await;
    let consumer = env.spawn_consumer(handler.clone(), fast_consumer());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.count("twice").await, 1);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);

    consumer.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_message_that_is_not_an_envelope_goes_to_the_dead_letter_stream_at_once() {
    let env = Env::new().await;
    let handler = Counter::with(Behaviour::Count);
    let consumer = env.spawn_consumer(handler.clone(), fast_consumer());
    let mut redis = env.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(env.stream())
        .arg("*")
        .arg("envelope")
        .arg(&b"\xff\xff\xff not protobuf"[..])
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(env.stream())
        .arg("*")
        .arg("something")
        .arg("else")
        .query_async(&mut redis)
        .await
        .unwrap();

    let dead_letter = env.dead_letter_stream();
    eventually("both messages are dead-lettered", || async {
        env.entries(&dead_letter).await.len() == 2
    })
    .await;
    let dead = env.entries(&dead_letter).await;
    let originals = env.entries(env.stream()).await;
    assert_eq!(
        dead[0].get::<Vec<u8>>("envelope").unwrap(),
        b"\xff\xff\xff not protobuf"
    );
    assert!(
        dead[0]
            .get::<String>("error")
            .unwrap()
            .contains("undecodable"),
        "{dead:?}"
    );
    assert_eq!(dead[0].get::<String>("group").as_deref(), Some(GROUP));
    assert_eq!(dead[0].get::<String>("deliveries").as_deref(), Some("1"));
    assert_eq!(
        dead[0].get::<String>("message_id").as_deref(),
        Some(originals[0].id.as_str())
    );
    assert!(dead[0].get::<String>("consumer").is_some());
    assert_eq!(
        dead[1].get::<String>("message_id").as_deref(),
        Some(originals[1].id.as_str())
    );
    eventually("both are acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    consumer.shutdown().await;
}

#[tokio::test]
async fn an_event_whose_handler_always_fails_is_dead_lettered_after_max_deliveries() {
    let env = Env::new().await;
    let relay = env.spawn_relay(fast_relay());
    let handler = Counter::with(Behaviour::Fail);
    let consumer = env.spawn_consumer(handler.clone(), fast_consumer());
    let id = env.publish("poison").await;

    let dead_letter = env.dead_letter_stream();
    eventually("the event is dead-lettered", || async {
        !env.entries(&dead_letter).await.is_empty()
    })
    .await;
    let dead = env.entries(&dead_letter).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(decode_envelope(&dead[0]).id, id.to_string());
    assert_eq!(dead[0].get::<String>("deliveries").as_deref(), Some("3"));
    assert!(
        dead[0]
            .get::<String>("error")
            .unwrap()
            .contains("the counter refuses poison"),
        "{dead:?}"
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    eventually("it is acknowledged", || async { env.pending().await == 0 }).await;
    // Every attempt was rolled back, its record in `processed_events` included.
    assert_eq!(env.count("poison").await, 0);
    let processed: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(processed, 0);

    // Later events still flow.
    consumer.shutdown().await;
    let handler = Counter::with(Behaviour::Count);
    let consumer = env.spawn_consumer(handler, fast_consumer());
    env.publish("healthy").await;
    eventually("a later event is applied", || async {
        env.count("healthy").await == 1
    })
    .await;
    assert_eq!(env.count("poison").await, 0);

    consumer.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn events_are_published_in_outbox_order_when_transactions_commit_out_of_order() {
    let env = Env::new().await;
    let relay = env.spawn_relay(RelaySettings {
        poll_interval_ms: 5,
        batch_size: 7,
        ..fast_relay()
    });
    let env = Arc::new(env);
    let mut writers = Vec::new();
    for i in 0..40_u64 {
        let env = env.clone();
        writers.push(tokio::spawn(async move {
            let mut tx = env.pool.begin().await.unwrap();
            env.publish_in(&mut tx, &format!("k{i}")).await;
            // Hold the transaction open for a while, longer for some than for others, so
            // later positions commit before earlier ones.
            tokio::time::sleep(Duration::from_millis((i * 37) % 150)).await;
            if i % 3 == 0 {
                env.publish_in(&mut tx, &format!("k{i}-bis")).await;
            }
            tx.commit().await.unwrap();
        }));
        if i % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY position")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(expected.len(), 54);
    eventually("every event is on the stream", || async {
        env.stream_event_ids().await.len() >= expected.len()
    })
    .await;
    assert_eq!(env.stream_event_ids().await, expected);

    // And a consumer applies them in that order.
    let handler = Counter::with(Behaviour::Count);
    let consumer = env.spawn_consumer(handler, fast_consumer());
    eventually("every event is applied", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM processed_events")
            .fetch_one(&env.pool)
            .await
            .unwrap()
            == 54
    })
    .await;
    let applied: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM processed_events ORDER BY processed_at, event_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    // `processed_at` is the transaction start: strictly increasing for sequential transactions
    // on one consumer, so it gives the order of application.
    assert_eq!(applied, expected);

    consumer.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn two_relays_at_once_never_both_publish_and_one_takes_over_from_the_other() {
    let env = Env::new().await;
    let first = env.spawn_relay(fast_relay());
    let second = env.spawn_relay(fast_relay());
    let mut published = Vec::new();
    for round in 0..10 {
        for i in 0..5 {
            published.push(env.publish(&format!("r{round}-{i}")).await);
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    eventually("every event is published", || async {
        env.unpublished().await == 0
    })
    .await;
    let advisory_locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND database = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(advisory_locks, 1, "exactly one relay leads");
    // Let both relays poll a few more times: nothing may be sent twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.stream_event_ids().await, published);

    // The first relay dies (leader or not); the other one publishes what comes next.
    first.kill().await;
    for i in 0..5 {
        published.push(env.publish(&format!("after-{i}")).await);
    }
    eventually("the later events are published", || async {
        env.stream_event_ids().await.len() >= published.len()
    })
    .await;
    assert_eq!(env.stream_event_ids().await, published);
    second.shutdown().await;

    // After a graceful shutdown the lock is released at once.
    let advisory_locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND database = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(advisory_locks, 0);
}

#[tokio::test]
async fn published_rows_are_deleted_after_the_retention() {
    let env = Env::new().await;
    env.publish("old").await;
    let relay = env.spawn_relay(RelaySettings {
        retention_secs: 0,
        cleanup_interval_ms: 50,
        ..fast_relay()
    });
    eventually("the published row is deleted", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&env.pool)
            .await
            .unwrap()
            == 0
    })
    .await;
    assert_eq!(env.stream_event_ids().await.len(), 1);
    relay.shutdown().await;
}

/// Remembers the trace id of the span the handler runs in.
#[derive(Default)]
struct TraceRecorder {
    trace_id: std::sync::Mutex<Option<String>>,
}

impl EventHandler for TraceRecorder {
    async fn handle(&self, _: &mut PgConnection, _: &Envelope) -> Result<(), HandlerError> {
        *self.trace_id.lock().unwrap() = telemetry::trace_id(&tracing::Span::current());
        Ok(())
    }
}

#[tokio::test]
async fn the_consumer_continues_the_trace_of_the_producer() {
    use tracing::Instrument as _;

    let env = Env::new().await;
    let relay = env.spawn_relay(fast_relay());
    let handler = Arc::new(TraceRecorder::default());
    let consumer = env.spawn_consumer(handler.clone(), fast_consumer());

    let request = tracing::info_span!("request");
    let producer_trace = telemetry::trace_id(&request).expect("the request span is traced");
    env.publish("traced").instrument(request).await;

    eventually("the event is handled", || async {
        handler.trace_id.lock().unwrap().is_some()
    })
    .await;
    assert_eq!(
        handler.trace_id.lock().unwrap().as_deref(),
        Some(producer_trace.as_str())
    );
    let envelope = decode_envelope(&env.entries(env.stream()).await[0]);
    assert!(
        envelope.traceparent.contains(&producer_trace),
        "{envelope:?}"
    );

    consumer.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn the_consumer_forgets_events_it_applied_long_ago() {
    let env = Env::new().await;
    for (consumer, days) in [(GROUP, 40), (GROUP, 1), ("someone-else", 40)] {
        sqlx::query(
            "INSERT INTO processed_events (consumer, event_id, processed_at) \
             VALUES ($1, $2, now() - make_interval(days => $3))",
        )
        .bind(consumer)
        .bind(Uuid::now_v7())
        .bind(days)
        .execute(&env.pool)
        .await
        .unwrap();
    }
    let consumer = env.spawn_consumer(Counter::with(Behaviour::Count), fast_consumer());
    eventually("the old row of the group is deleted", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM processed_events")
            .fetch_one(&env.pool)
            .await
            .unwrap()
            == 2
    })
    .await;
    let left: Vec<(String, i32)> = sqlx::query_as(
        "SELECT consumer, extract(day FROM now() - processed_at)::int FROM processed_events \
         ORDER BY consumer",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        [("someone-else".to_owned(), 40), (GROUP.to_owned(), 1)]
    );
    consumer.shutdown().await;
}
