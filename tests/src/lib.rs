//! The whole CRM started in-process for cross-service scenarios: every service on port 0, each
//! with its own fresh database, sharing one Redis stream prefix, behind the gateway.

use std::net::SocketAddr;

use crm_platform::{
    settings::{RedisSettings, ServerSettings},
    testing::{self, TestDatabase, redis_settings},
};
use tonic::transport::Channel;

/// A running CRM: stops when dropped.
pub struct Stack {
    /// Address of the gateway.
    pub gateway: SocketAddr,
    /// Address of marketing, for calls that bypass the gateway.
    pub marketing: SocketAddr,
    /// Address of opportunities, for calls that bypass the gateway.
    pub opportunities: SocketAddr,
    /// The Redis settings every service uses (with this stack's stream prefix).
    pub redis: RedisSettings,
    _databases: Vec<TestDatabase>,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
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
    /// Starts marketing, opportunities and the gateway and waits until all report SERVING.
    pub async fn start() -> Self {
        let redis = redis_settings();
        let mut marketing_settings = crm_marketing::config::Settings::load(None).expect("defaults");
        testing::init_telemetry(&marketing_settings.base);
        let marketing_db = TestDatabase::create("marketing").await;
        testing::use_test_backing(&mut marketing_settings.base, &marketing_db, redis.clone());
        let (marketing_listener, marketing) = listener().await;
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
        let (opportunities_listener, opportunities) = listener().await;
        let (stop_opportunities, opportunities_stopped) = stopper();
        tokio::spawn(crm_opportunities::run(
            opportunities_settings,
            opportunities_listener,
            opportunities_stopped,
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
        let (stop_gateway, gateway_stopped) = stopper();
        tokio::spawn(crm_gateway::run(
            gateway_settings,
            gateway_listener,
            gateway_stopped,
        ));

        testing::wait_serving(marketing, "crm.marketing.v1.PartnerService").await;
        testing::wait_serving(opportunities, "crm.opportunities.v1.OpportunityService").await;
        testing::wait_serving(gateway, "").await;
        Self {
            gateway,
            marketing,
            opportunities,
            redis,
            _databases: vec![marketing_db, opportunities_db],
            _stop: vec![stop_marketing, stop_opportunities, stop_gateway],
        }
    }

    /// A channel to the gateway.
    pub async fn gateway_channel(&self) -> Channel {
        channel(self.gateway).await
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
