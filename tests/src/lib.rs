//! The whole CRM started in-process for cross-service scenarios: every service on port 0, each
//! with its own fresh database, sharing one Redis stream prefix, behind the gateway.

use std::{net::SocketAddr, time::Duration};

use crm_platform::{
    settings::{RedisSettings, ServerSettings},
    testing::{self, TestDatabase, redis_settings},
};
use crm_proto::events::Envelope;
use tonic::transport::Channel;

/// A running CRM: stops when dropped.
pub struct Stack {
    /// Address of the gateway.
    pub gateway: SocketAddr,
    /// Address of marketing, for calls that bypass the gateway.
    pub marketing: SocketAddr,
    /// Address of opportunities, for calls that bypass the gateway.
    pub opportunities: SocketAddr,
    /// Address of tasks, for calls that bypass the gateway.
    pub tasks: SocketAddr,
    /// The Redis settings every service uses (with this stack's stream prefix).
    pub redis: RedisSettings,
    /// The settings tasks runs with (for a second replica).
    pub tasks_settings: crm_tasks::config::Settings,
    databases: Vec<TestDatabase>,
    stops: Vec<(&'static str, tokio::sync::oneshot::Sender<()>)>,
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("bound address");
    (listener, addr)
}

fn stopper() -> (
    tokio::sync::oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    (stop, async {
        let _ = stopped.await;
    })
}

impl Stack {
    /// Starts marketing, opportunities, tasks and the gateway and waits until all report
    /// SERVING.
    pub async fn start() -> Self {
        let redis = redis_settings();
        let mut marketing_settings = crm_marketing::config::Settings::load(None).expect("defaults");
        testing::init_telemetry(&marketing_settings.base);
        let marketing_db = TestDatabase::create("marketing").await;
        testing::use_test_backing(&mut marketing_settings.base, &marketing_db, redis.clone());
        let (marketing_listener, marketing) = listener().await;
        let (opportunities_listener, opportunities) = listener().await;
        let (tasks_listener, tasks) = listener().await;
        marketing_settings.opportunities.url = format!("http://{opportunities}");
        let (stop_marketing, marketing_stopped) = stopper();
        tokio::spawn(crm_marketing::run(
            marketing_settings,
            marketing_listener,
            marketing_stopped,
        ));

        let mut opportunities_settings =
            crm_opportunities::config::Settings::load(None).expect("defaults");
        let opportunities_db = TestDatabase::create("opportunities").await;
        testing::use_test_backing(
            &mut opportunities_settings.base,
            &opportunities_db,
            redis.clone(),
        );
        opportunities_settings.marketing.url = format!("http://{marketing}");
        let (stop_opportunities, opportunities_stopped) = stopper();
        tokio::spawn(crm_opportunities::run(
            opportunities_settings,
            opportunities_listener,
            opportunities_stopped,
        ));

        let mut tasks_settings = crm_tasks::config::Settings::load(None).expect("defaults");
        let tasks_db = TestDatabase::create("tasks").await;
        testing::use_test_backing(&mut tasks_settings.base, &tasks_db, redis.clone());
        tasks_settings.opportunities.url = format!("http://{opportunities}");
        let (stop_tasks, tasks_stopped) = stopper();
        tokio::spawn(crm_tasks::run(
            tasks_settings.clone(),
            tasks_listener,
            tasks_stopped,
        ));

        let mut gateway_settings = crm_gateway::config::Settings::load(None).expect("defaults");
        let (gateway_listener, gateway) = listener().await;
        gateway_settings.server = ServerSettings::on(gateway);
        gateway_settings
            .routes
            .insert("marketing".into(), format!("http://{marketing}"));
        gateway_settings
            .routes
            .insert("opportunities".into(), format!("http://{opportunities}"));
        gateway_settings
            .routes
            .insert("files".into(), format!("http://{marketing}"));
        gateway_settings
            .routes
            .insert("tasks".into(), format!("http://{tasks}"));
        let (stop_gateway, gateway_stopped) = stopper();
        tokio::spawn(crm_gateway::run(
            gateway_settings,
            gateway_listener,
            gateway_stopped,
        ));

        testing::wait_serving(marketing, "crm.marketing.v1.PartnerService").await;
        testing::wait_serving(opportunities, "crm.opportunities.v1.OpportunityService").await;
        testing::wait_serving(tasks, "crm.tasks.v1.TaskService").await;
        testing::wait_serving(gateway, "").await;
        Self {
            gateway,
            marketing,
            opportunities,
            tasks,
            redis,
            tasks_settings,
            databases: vec![marketing_db, opportunities_db, tasks_db],
            stops: vec![
                ("marketing", stop_marketing),
                ("opportunities", stop_opportunities),
                ("tasks", stop_tasks),
                ("gateway", stop_gateway),
            ],
        }
    }

    /// Stops `service` (its in-flight calls finish); calls to it fail from then on.
    pub async fn stop(&mut self, service: &str) {
        self.stops.retain(|(name, _)| *name != service);
        // Its listener closes once its server has shut down.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Starts another replica of tasks on the same database and Redis; it stops with the stack.
    pub async fn start_tasks_replica(&mut self) -> SocketAddr {
        let (listener, addr) = listener().await;
        let (stop, stopped) = stopper();
        tokio::spawn(crm_tasks::run(
            self.tasks_settings.clone(),
            listener,
            stopped,
        ));
        testing::wait_serving(addr, "crm.tasks.v1.TaskService").await;
        self.stops.push(("tasks-replica", stop));
        addr
    }

    /// A pool on tasks' database (schema set), to look at what it stored.
    pub async fn tasks_pool(&self) -> sqlx::PgPool {
        crm_platform::db::connect(&self.databases[2].settings)
            .await
            .expect("tasks' database")
    }

    /// A pool on marketing's database (schema set), to look at what it stored.
    pub async fn marketing_pool(&self) -> sqlx::PgPool {
        crm_platform::db::connect(&self.databases[0].settings)
            .await
            .expect("marketing's database")
    }

    /// A channel to the gateway.
    pub async fn gateway_channel(&self) -> Channel {
        channel(self.gateway).await
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(secrecy::ExposeSecret::expose_secret(&self.redis.url))
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis answers")
    }

    /// Publishes `payload` on `stream` (name without prefix) as `producer`'s relay would, for a
    /// producer that is not running (e.g. tasks' commands before tasks exists): an envelope
    /// added with XADD. Returns the envelope id.
    pub async fn publish<M: prost::Name>(
        &self,
        stream: &str,
        producer: &str,
        payload: &M,
    ) -> uuid::Uuid {
        use prost::Message as _;
        let id = uuid::Uuid::now_v7();
        let envelope = Envelope {
            id: id.to_string(),
            r#type: M::full_name(),
            time: Some(std::time::SystemTime::now().into()),
            producer: producer.into(),
            payload: Some(prost_types::Any::from_msg(payload).expect("encodes")),
            actor: format!("service:{producer}"),
            ..Default::default()
        };
        let _: String = redis::cmd("XADD")
            .arg(crm_platform::redis_conn::stream_name(&self.redis, stream))
            .arg("*")
            .arg(crm_platform::events::ENVELOPE_FIELD)
            .arg(envelope.encode_to_vec())
            .arg(crm_platform::events::TYPE_FIELD)
            .arg(M::full_name())
            .query_async(&mut self.redis().await)
            .await
            .expect("XADD");
        id
    }

    /// The envelopes on `stream` (name without prefix), oldest first.
    pub async fn envelopes(&self, stream: &str) -> Vec<Envelope> {
        use prost::Message as _;
        let reply: redis::streams::StreamRangeReply = redis::AsyncCommands::xrange_all(
            &mut self.redis().await,
            crm_platform::redis_conn::stream_name(&self.redis, stream),
        )
        .await
        .expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|entry| {
                let bytes: Vec<u8> = entry.get("envelope").expect("envelope field");
                Envelope::decode(bytes.as_slice()).expect("an envelope")
            })
            .collect()
    }

    /// Waits (up to 10 s) until an event of type `M` for which `matches` holds is on `stream`.
    pub async fn wait_event<M: prost::Name + Default>(
        &self,
        stream: &str,
        matches: impl Fn(&M) -> bool,
    ) -> (Envelope, M) {
        for _ in 0..400 {
            for envelope in self.envelopes(stream).await {
                if envelope.r#type == M::full_name() {
                    let message: M = envelope
                        .payload
                        .as_ref()
                        .expect("payload")
                        .to_msg()
                        .expect("decodes");
                    if matches(&message) {
                        return (envelope, message);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {} on {stream} matched", M::full_name());
    }
}

/// A connected channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connect")
}

pub use crm_platform::testing::{authed, user_token as token};

/// A codec of raw message bytes, to put on the wire what no generated client would.
pub mod raw {
    use bytes::{Buf as _, BufMut as _, Bytes};
    use tonic::{
        Status,
        codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    };

    /// Sends and receives message bytes as they are.
    #[derive(Clone, Copy, Default)]
    pub struct RawCodec;
    /// The encoder of [`RawCodec`].
    pub struct RawEncoder;
    /// The decoder of [`RawCodec`].
    pub struct RawDecoder;

    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;

        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }

        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }

    impl Encoder for RawEncoder {
        type Item = Bytes;
        type Error = Status;

        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }

        fn buffer_settings(&self) -> BufferSettings {
            BufferSettings::default()
        }
    }

    impl Decoder for RawDecoder {
        type Item = Bytes;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }

        fn buffer_settings(&self) -> BufferSettings {
            BufferSettings::default()
        }
    }
}
