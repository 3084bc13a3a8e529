//! The whole CRM started in-process for cross-service scenarios: every service on port 0, each
//! with its own fresh database, sharing one Redis stream prefix, behind the gateway.

use std::{net::SocketAddr, time::Duration};

use crm_platform::{
    auth::{AuthSettings, TokenIssuer},
    settings::{RedisSettings, ServerSettings},
    testing::{TestDatabase, redis_settings},
};
use tonic::transport::Channel;

/// A running CRM: stops when dropped.
pub struct Stack {
    /// Address of the gateway.
    pub gateway: SocketAddr,
    /// Address of marketing, for calls that bypass the gateway.
    pub marketing: SocketAddr,
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
    /// Starts marketing and the gateway and waits until both report SERVING.
    pub async fn start() -> Self {
        let mut marketing_settings = crm_marketing::config::Settings::load(None).expect("defaults");
        // As the binaries do: spans get trace ids, so trace context reaches events.
        std::mem::forget(
            crm_platform::telemetry::init("crm-tests", &marketing_settings.telemetry)
                .expect("telemetry"),
        );
        let redis = redis_settings();
        let marketing_db = TestDatabase::create("marketing").await;
        marketing_settings.database = marketing_db.settings.clone();
        marketing_settings.redis = redis.clone();
        marketing_settings.relay.poll_interval_ms = 50;
        let (marketing_listener, marketing) = listener().await;
        marketing_settings.server = ServerSettings {
            listen_addr: marketing,
        };
        let (stop_marketing, marketing_stopped) = stopper();
        tokio::spawn(crm_marketing::run(
            marketing_settings,
            marketing_listener,
            marketing_stopped,
        ));

        let mut gateway_settings = crm_gateway::config::Settings::load(None).expect("defaults");
        let (gateway_listener, gateway) = listener().await;
        gateway_settings.server = ServerSettings {
            listen_addr: gateway,
        };
        gateway_settings
            .routes
            .insert("marketing".into(), format!("http://{marketing}"));
        let (stop_gateway, gateway_stopped) = stopper();
        tokio::spawn(crm_gateway::run(
            gateway_settings,
            gateway_listener,
            gateway_stopped,
        ));

        wait_serving(marketing, "crm.marketing.v1.PartnerService").await;
        wait_serving(gateway, "").await;
        Self {
            gateway,
            marketing,
            redis,
            _databases: vec![marketing_db],
            _stop: vec![stop_marketing, stop_gateway],
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

async fn wait_serving(addr: SocketAddr, service: &str) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    for _ in 0..300 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
            && let Ok(response) = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
            && response.get_ref().status == ServingStatus::Serving as i32
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} never reported SERVING for {service:?}");
}

/// A development token for `user` with `roles`.
pub fn token(user: &str, roles: &[&str]) -> String {
    TokenIssuer::for_users(&AuthSettings::development())
        .expect("development secret")
        .issue(user, roles, Duration::from_secs(600))
}

/// `message` with a bearer token for `user` and `roles`.
pub fn authed<T>(message: T, user: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token(user, roles))
            .parse()
            .expect("ascii token"),
    );
    request
}
