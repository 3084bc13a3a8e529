//! The tasks service in-process on port 0, against its own fresh PostgreSQL database and Redis
//! stream prefix, with clients of every service and ways to feed it what other services would
//! publish (stage changes, invoices, imported email).

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::time::Duration;

use crm_platform::{
    clock::Clock,
    testing::{self, TestDatabase, redis_settings},
};
use crm_proto::{
    common,
    events::Envelope,
    tasks::{
        self as pb, attachment_service_client::AttachmentServiceClient,
        service_catalog_service_client::ServiceCatalogServiceClient,
        staff_service_client::StaffServiceClient, task_service_client::TaskServiceClient,
        task_settings_service_client::TaskSettingsServiceClient,
    },
};
use crm_tasks::config::Settings;
use prost::Message as _;
use sqlx::PgPool;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt as _;
use uuid::Uuid;

#[allow(unused_imports, reason = "each test binary uses part of the harness")]
pub use crm_platform::testing::{as_service, authed};

/// Tasks' event stream.
pub const TASKS: &str = "crm.events.tasks";
/// The notifications command stream.
pub const NOTIFICATIONS: &str = "crm.commands.notifications";
/// Opportunities' command stream (billing).
pub const BILLING: &str = "crm.commands.opportunities";
/// Opportunities' events.
pub const OPPORTUNITIES: &str = "crm.events.opportunities";
/// Email import's events.
pub const EMAIL_IMPORT: &str = "crm.events.email-import";

/// A running tasks service and its clients.
pub struct Service {
    pub staff: StaffServiceClient<Channel>,
    pub tasks: TaskServiceClient<Channel>,
    pub catalogue: ServiceCatalogServiceClient<Channel>,
    pub reminders: TaskSettingsServiceClient<Channel>,
    pub attachments: AttachmentServiceClient<Channel>,
    pub settings: Settings,
    pub clock: Clock,
    pub addr: std::net::SocketAddr,
    /// The service's own database, for checks.
    pub pool: PgPool,
    redis: redis::aio::MultiplexedConnection,
    db: Option<TestDatabase>,
    _blobs: Option<tempfile::TempDir>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

async fn spawn(
    settings: &Settings,
    clock: Clock,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crm_tasks::run_with_clock(
        settings.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
        clock,
    ));
    testing::wait_serving(addr, "crm.tasks.v1.TaskService").await;
    (addr, stop)
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Starts the service with `clock`; `adjust` changes its settings first.
pub async fn start_with(clock: Clock, adjust: impl FnOnce(&mut Settings)) -> Service {
    let db = TestDatabase::create("tasks").await;
    let mut settings = Settings::load(None).unwrap();
    testing::init_telemetry(&settings.base);
    testing::use_test_backing(&mut settings.base, &db, redis_settings());
    let blobs = tempfile::tempdir().unwrap();
    settings.base.blob.root = blobs.path().to_path_buf();
    // No opportunities: coverage is "unavailable" unless a test points it somewhere.
    settings.opportunities.url = "http://127.0.0.1:9".into();
    settings.opportunities.timeout_ms = 500;
    settings.coverage.timeout_ms = 500;
    settings.feed.heartbeat_ms = 500;
    adjust(&mut settings);
    let (addr, stop) = spawn(&settings, clock.clone()).await;
    let channel = connect(addr).await;
    let pool = crm_platform::db::connect(&db.settings).await.unwrap();
    let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(
        &settings.base.redis.url,
    ))
    .unwrap();
    Service {
        staff: StaffServiceClient::new(channel.clone()),
        tasks: TaskServiceClient::new(channel.clone()),
        catalogue: ServiceCatalogServiceClient::new(channel.clone()),
        reminders: TaskSettingsServiceClient::new(channel.clone()),
        attachments: AttachmentServiceClient::new(channel),
        settings,
        clock,
        addr,
        pool,
        redis: client.get_multiplexed_async_connection().await.unwrap(),
        db: Some(db),
        _blobs: Some(blobs),
        stops: vec![stop],
    }
}

/// Starts the service with the system clock and its defaults.
pub async fn start() -> Service {
    start_with(Clock::system(), |_| {}).await
}

impl Service {
    /// Starts another replica on the same database and Redis (stops with this one); returns a
    /// task client of it.
    pub async fn replica(&mut self) -> TaskServiceClient<Channel> {
        let (addr, stop) = spawn(&self.settings, self.clock.clone()).await;
        self.stops.push(stop);
        TaskServiceClient::new(connect(addr).await)
    }

    /// Publishes `payload` on `stream` (name without prefix) as `producer`'s relay would, caused
    /// by `actor`.
    pub async fn publish<M: prost::Name>(
        &mut self,
        stream: &str,
        actor: &str,
        payload: &M,
    ) -> Uuid {
        let id = Uuid::now_v7();
        let envelope = Envelope {
            id: id.to_string(),
            r#type: M::full_name(),
            time: Some(std::time::SystemTime::now().into()),
            producer: stream.rsplit('.').next().unwrap_or_default().into(),
            payload: Some(prost_types::Any::from_msg(payload).unwrap()),
            actor: actor.into(),
            ..Default::default()
        };
        let stream = crm_platform::redis_conn::stream_name(&self.settings.base.redis, stream);
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg(crm_platform::events::ENVELOPE_FIELD)
            .arg(envelope.encode_to_vec())
            .arg(crm_platform::events::TYPE_FIELD)
            .arg(M::full_name())
            .query_async(&mut self.redis)
            .await
            .unwrap();
        id
    }

    /// The envelopes on `stream` (name without prefix), oldest first.
    pub async fn envelopes(&mut self, stream: &str) -> Vec<Envelope> {
        let stream = crm_platform::redis_conn::stream_name(&self.settings.base.redis, stream);
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut self.redis, &stream)
                .await
                .unwrap();
        reply
            .ids
            .iter()
            .map(|entry| {
                let bytes: Vec<u8> = entry.get("envelope").expect("envelope field");
                Envelope::decode(bytes.as_slice()).unwrap()
            })
            .collect()
    }

    /// The messages of type `M` on `stream` for which `matches` holds.
    pub async fn messages<M: prost::Name + Default>(
        &mut self,
        stream: &str,
        matches: impl Fn(&M) -> bool,
    ) -> Vec<(Envelope, M)> {
        self.envelopes(stream)
            .await
            .into_iter()
            .filter(|e| e.r#type == M::full_name())
            .map(|e| {
                let m: M = e.payload.as_ref().unwrap().to_msg().unwrap();
                (e, m)
            })
            .filter(|(_, m)| matches(m))
            .collect()
    }

    /// Waits (up to 10 s) until a message of type `M` on `stream` matches; returns it.
    pub async fn wait_message<M: prost::Name + Default>(
        &mut self,
        stream: &str,
        matches: impl Fn(&M) -> bool,
    ) -> (Envelope, M) {
        for _ in 0..400 {
            if let Some(found) = self.messages(stream, &matches).await.into_iter().next() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {} on {stream} matched", M::full_name());
    }

    /// Waits (up to 10 s) until `check` holds for the task `id` as a manager reads it.
    pub async fn wait_task(&mut self, id: &str, check: impl Fn(&pb::Task) -> bool) -> pb::Task {
        for _ in 0..400 {
            let task = self
                .tasks
                .get_task(manager(pb::GetTaskRequest { id: id.into() }))
                .await
                .unwrap()
                .into_inner();
            if check(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {id} never reached the expected state");
    }

    /// A staff member named `name` logging in as `user` (none when empty), created by a manager.
    pub async fn staff_member(&mut self, name: &str, user: &str) -> pb::Staff {
        self.staff
            .create_staff(manager(pb::CreateStaffRequest {
                staff: Some(pb::Staff {
                    name: name.into(),
                    user_name: user.into(),
                    email: format!("{}@example.ro", name.to_lowercase().replace(' ', ".")),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// A task created by `user` (roles `sales`) for `responsible`, due `deadline`.
    pub async fn task_by(
        &mut self,
        user: &str,
        title: &str,
        responsible: &pb::Staff,
        deadline: chrono::NaiveDate,
    ) -> pb::Task {
        self.tasks
            .create_task(authed(
                pb::CreateTaskRequest {
                    task: Some(pb::Task {
                        title: title.into(),
                        responsible_staff_id: responsible.id.clone(),
                        deadline_date: Some(date_of(deadline)),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                user,
                &["sales"],
            ))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap()
    }

    /// The test database (for a pool of one's own).
    pub fn database(&self) -> &TestDatabase {
        self.db.as_ref().unwrap()
    }
}

/// A request of user "mara" with the `manager` role.
pub fn manager<T>(message: T) -> tonic::Request<T> {
    authed(message, "mara", &["manager"])
}

/// A request of `user` with the `sales` role.
pub fn sales<T>(message: T, user: &str) -> tonic::Request<T> {
    authed(message, user, &["sales"])
}

/// The fields named by an INVALID_ARGUMENT status, in order.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// A calendar date as the proto message.
pub fn date_of(day: chrono::NaiveDate) -> common::Date {
    crm_platform::values::date_to_proto(day)
}

/// A calendar date.
pub fn day(year: i32, month: u32, day: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap()
}

/// An update mask.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// Today in Bucharest.
pub fn today() -> chrono::NaiveDate {
    crm_platform::calendar::day_of(chrono::Utc::now(), chrono_tz::Europe::Bucharest)
}
