//! The server bootstrap: health is NOT_SERVING until PostgreSQL and Redis answer, and reflection
//! (v1 and v1alpha) lists the service's public services.

use std::time::Duration;

use crm_platform::{db, redis_conn, server, testing};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SERVICE: &str = "crm.marketing.v1.PartnerService";

async fn start(health: &server::Health) -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let health = health.clone();
    tokio::spawn(async move {
        server::serve(
            listener,
            tonic::service::Routes::default(),
            &health,
            &crm_platform::settings::ServerSettings::on(addr),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, stop)
}

async fn status(channel: &Channel, service: &str) -> i32 {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn health_turns_serving_only_when_database_and_redis_answer() {
    let health = server::Health::new(&[SERVICE]).await;
    let (channel, _stop) = start(&health).await;
    assert_eq!(status(&channel, "").await, ServingStatus::NotServing as i32);
    assert_eq!(
        status(&channel, SERVICE).await,
        ServingStatus::NotServing as i32
    );

    let database = testing::TestDatabase::create("platform_health").await;
    let pool = db::connect(&database.settings).await.unwrap();
    let (stop_watch, watching) = tokio::sync::watch::channel(false);

    // A database where nothing listens: stays NOT_SERVING although Redis answers.
    let dead_pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://crm@127.0.0.1:9/none")
        .unwrap();
    let redis = redis_conn::connect(&testing::redis_settings())
        .await
        .unwrap();
    let watcher = health.watch_dependencies(dead_pool, redis, watching.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status(&channel, SERVICE).await,
        ServingStatus::NotServing as i32
    );
    watcher.abort();

    let redis = redis_conn::connect(&testing::redis_settings())
        .await
        .unwrap();
    let watcher = health.watch_dependencies(pool, redis, watching);
    for _ in 0..100 {
        if status(&channel, SERVICE).await == ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status(&channel, SERVICE).await,
        ServingStatus::Serving as i32
    );
    assert_eq!(status(&channel, "").await, ServingStatus::Serving as i32);

    // On shutdown the service stops reporting SERVING before it goes away.
    stop_watch.send(true).unwrap();
    watcher.await.unwrap();
    assert_eq!(
        status(&channel, SERVICE).await,
        ServingStatus::NotServing as i32
    );
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_public_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let health = server::Health::new(&[SERVICE]).await;
    let (channel, _stop) = start(&health).await;

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE.to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    assert!(list.service.iter().any(|s| s.name == SERVICE));
}
