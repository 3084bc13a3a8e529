//! The gateway in front of a small real upstream (a `PartnerService` that records what it saw),
//! both in-process on port 0: auth, identity stripping, trace context, rate limit, deadlines,
//! an upstream that is down, reflection, health, gRPC-Web and CORS.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::{Buf as _, Bytes};
use crm_gateway::{
    balance::{BoxFuture, DnsResolver, Resolve},
    config::Settings,
};
use crm_platform::{
    auth::TokenIssuer,
    telemetry::{self, TelemetryGuard},
};
use crm_proto::marketing::{
    GetPartnerRequest, ListPartnersRequest, ListPartnersResponse, Partner,
    partner_service_client::PartnerServiceClient,
    partner_service_server::{PartnerService, PartnerServiceServer},
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message as _;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, Request, Response, Status, metadata::MetadataValue, transport::Channel};

const CLIENT_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN_ID: &str = "b7ad6b7169203331";

// ---------------------------------------------------------------------------------------------
// The upstream: records the metadata of every call it receives.

#[derive(Clone, Debug, Default)]
struct Seen {
    method: &'static str,
    authorization: Option<String>,
    crm_headers: Vec<String>,
    traceparent: Option<String>,
    grpc_timeout: Option<String>,
}

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn record<T>(&self, method: &'static str, request: &Request<T>) {
        let headers = request.metadata().clone().into_headers();
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.calls.lock().unwrap().push(Seen {
            method,
            authorization: text("authorization"),
            crm_headers: headers
                .keys()
                .map(|k| k.as_str().to_owned())
                .filter(|k| k.starts_with("x-crm-"))
                .collect(),
            traceparent: text("traceparent"),
            grpc_timeout: text("grpc-timeout"),
        });
    }

    fn calls(&self) -> Vec<Seen> {
        self.calls.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl PartnerService for Recorder {
    async fn create_partner(
        &self,
        _: Request<crm_proto::marketing::CreatePartnerRequest>,
    ) -> Result<Response<Partner>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    /// Echoes the id back.
    async fn get_partner(
        &self,
        request: Request<GetPartnerRequest>,
    ) -> Result<Response<Partner>, Status> {
        self.record("GetPartner", &request);
        Ok(Response::new(Partner {
            id: request.into_inner().id,
            name: "Echo SRL".into(),
            ..Partner::default()
        }))
    }

    async fn update_partner(
        &self,
        _: Request<crm_proto::marketing::UpdatePartnerRequest>,
    ) -> Result<Response<Partner>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    /// Sleeps `page_size` milliseconds, then answers an empty page: a slow call.
    async fn list_partners(
        &self,
        request: Request<ListPartnersRequest>,
    ) -> Result<Response<ListPartnersResponse>, Status> {
        self.record("ListPartners", &request);
        let millis = u64::try_from(request.get_ref().page_size).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(Response::new(ListPartnersResponse::default()))
    }

    async fn convert_lead(
        &self,
        _: Request<crm_proto::marketing::ConvertLeadRequest>,
    ) -> Result<Response<Partner>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn archive_partner(
        &self,
        _: Request<crm_proto::marketing::ArchivePartnerRequest>,
    ) -> Result<Response<Partner>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn find_partners_by_email(
        &self,
        _: Request<crm_proto::marketing::FindPartnersByEmailRequest>,
    ) -> Result<Response<crm_proto::marketing::FindPartnersByEmailResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// Starts the recording upstream on a free port; it stops with the test's runtime.
async fn start_upstream() -> (SocketAddr, Recorder) {
    let replica = Replica::start("127.0.0.1:0".parse().unwrap()).await;
    let addr = replica.addr;
    let recorder = replica.recorder.clone();
    // Left running until the test's runtime ends.
    std::mem::forget(replica.stop);
    (addr, recorder)
}

/// One replica of the recording upstream, which the test can stop (a pod going away).
struct Replica {
    addr: SocketAddr,
    recorder: Recorder,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Replica {
    async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder::default();
        let service = PartnerServiceServer::new(recorder.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Self {
            addr,
            recorder,
            stop,
            task,
        }
    }

    /// Stops serving (graceful: its connections are closed) and waits until it has stopped.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The gateway.

struct Gateway {
    addr: SocketAddr,
    settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn start(upstream: SocketAddr, tune: impl FnOnce(&mut Settings)) -> Self {
        Self::start_resolving(&format!("http://{upstream}"), Arc::new(DnsResolver), tune).await
    }

    /// A gateway whose `marketing` route is `url`, with host names resolved by `resolver`.
    async fn start_resolving(
        url: &str,
        resolver: Arc<dyn Resolve>,
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut settings = Settings::load(None).unwrap();
        settings.routes = BTreeMap::from([("marketing".to_owned(), url.to_owned())]);
        tune(&mut settings);
        init_telemetry(&settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crm_gateway::run_with_resolver(
            settings.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
            resolver,
        ));
        Self {
            addr,
            settings,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn partners(&self) -> PartnerServiceClient<Channel> {
        PartnerServiceClient::new(self.channel().await)
    }

    fn token(&self, subject: &str) -> String {
        TokenIssuer::for_users(&self.settings.auth).unwrap().issue(
            subject,
            &["sales"],
            Duration::from_secs(600),
        )
    }

    fn bearer(&self, subject: &str) -> String {
        format!("Bearer {}", self.token(subject))
    }

    async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

/// One subscriber (with OpenTelemetry) for every test, kept for the whole process.
fn init_telemetry(settings: &Settings) {
    static GUARD: OnceLock<TelemetryGuard> = OnceLock::new();
    GUARD.get_or_init(|| telemetry::init("gateway-test", &settings.telemetry).unwrap());
}

fn with_auth<T>(message: T, bearer: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::try_from(bearer).unwrap());
    request
}

fn get(id: &str) -> GetPartnerRequest {
    GetPartnerRequest { id: id.into() }
}

fn sleep_for(millis: i32) -> ListPartnersRequest {
    ListPartnersRequest {
        page_size: millis,
        ..ListPartnersRequest::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication, identity, trace context.

#[tokio::test]
async fn a_call_without_a_valid_token_is_refused_before_the_upstream() {
    let (upstream, recorder) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let mut client = gateway.partners().await;

    let status = client.get_partner(get("p1")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("missing bearer token"),
        "{status:?}"
    );

    let status = client
        .get_partner(with_auth(get("p1"), "Bearer not.a.token"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    assert!(recorder.calls().is_empty(), "the upstream was called");
}

#[tokio::test]
async fn a_call_with_a_token_is_forwarded_without_forged_identity() {
    let (upstream, recorder) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let mut client = gateway.partners().await;
    let bearer = gateway.bearer("ana");

    let mut request = with_auth(get("p-42"), &bearer);
    request
        .metadata_mut()
        .insert("x-crm-subject", MetadataValue::from_static("admin"));
    request
        .metadata_mut()
        .insert("x-crm-roles", MetadataValue::from_static("admin"));
    let partner = client.get_partner(request).await.unwrap().into_inner();
    assert_eq!(partner.id, "p-42");
    assert_eq!(partner.name, "Echo SRL");

    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    let seen = &calls[0];
    assert_eq!(seen.method, "GetPartner");
    // The services verify the token themselves: it is forwarded as it came.
    assert_eq!(seen.authorization.as_deref(), Some(bearer.as_str()));
    assert!(
        seen.crm_headers.is_empty(),
        "forged identity reached the upstream: {seen:?}"
    );
    // No client deadline: the default one (30 s) is set for the upstream.
    let timeout = seen
        .grpc_timeout
        .as_deref()
        .expect("a grpc-timeout upstream");
    let timeout = parse_grpc_timeout(timeout);
    assert!(
        timeout <= Duration::from_secs(30) && timeout > Duration::from_secs(29),
        "{timeout:?}"
    );
}

#[tokio::test]
async fn the_trace_of_the_client_continues_upstream_and_a_new_one_starts_otherwise() {
    let (upstream, recorder) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let mut client = gateway.partners().await;
    let bearer = gateway.bearer("ana");

    let mut request = with_auth(get("p1"), &bearer);
    let traceparent = format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    client.get_partner(request).await.unwrap();
    client
        .get_partner(with_auth(get("p2"), &bearer))
        .await
        .unwrap();

    let calls = recorder.calls();
    let continued = calls[0]
        .traceparent
        .as_deref()
        .expect("traceparent upstream");
    let parts: Vec<&str> = continued.split('-').collect();
    assert_eq!(parts.len(), 4, "{continued}");
    assert_eq!(parts[1], CLIENT_TRACE_ID, "the trace was not continued");
    assert_ne!(
        parts[2], CLIENT_SPAN_ID,
        "the gateway's own span is the upstream's parent"
    );

    let started = calls[1]
        .traceparent
        .as_deref()
        .expect("traceparent upstream");
    let trace_id = started.split('-').nth(1).unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, CLIENT_TRACE_ID);
    assert_ne!(trace_id, "0".repeat(32));
}

// ---------------------------------------------------------------------------------------------
// Rate limit, routing failures, deadlines.

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_resource_exhausted_and_others_do_not() {
    let (upstream, recorder) = start_upstream().await;
    let gateway = Gateway::start(upstream, |s| {
        s.rate_limit.requests_per_second = 1;
        s.rate_limit.burst = 2;
    })
    .await;
    let mut client = gateway.partners().await;
    let ana = gateway.bearer("ana");

    for _ in 0..2 {
        client
            .get_partner(with_auth(get("p1"), &ana))
            .await
            .unwrap();
    }
    let status = client
        .get_partner(with_auth(get("p1"), &ana))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("rate limit"), "{status:?}");
    assert_eq!(recorder.calls().len(), 2);

    client
        .get_partner(with_auth(get("p1"), &gateway.bearer("bob")))
        .await
        .unwrap();
}

/// A call to `marketing` through the gateway answers UNAVAILABLE, naming the service.
async fn assert_marketing_unavailable(
    gateway: &Gateway,
    client: &mut PartnerServiceClient<Channel>,
) {
    let status = client
        .get_partner(with_auth(get("p1"), &gateway.bearer("ana")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("marketing"), "{status:?}");
}

#[tokio::test]
async fn a_down_upstream_answers_unavailable_quickly() {
    let down = closed_port().await;
    let gateway = Gateway::start(down, |_| {}).await;
    let mut client = gateway.partners().await;

    let started = Instant::now();
    assert_marketing_unavailable(&gateway, &mut client).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_service_without_a_route_is_unimplemented() {
    let (upstream, _) = start_upstream().await;
    let gateway = Gateway::start(upstream, |s| {
        s.routes = BTreeMap::from([("tasks".to_owned(), format!("http://{upstream}"))]);
    })
    .await;
    let status = gateway
        .partners()
        .await
        .get_partner(with_auth(get("p1"), &gateway.bearer("ana")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(
        status.message().contains("crm.marketing.v1.PartnerService"),
        "{status:?}"
    );
}

/// A client that does not enforce deadlines itself (a tonic `Channel` would, and answer
/// CANCELLED on its own), so what is measured is the gateway's.
fn raw_h2_partners(
    gateway: &Gateway,
) -> PartnerServiceClient<
    Client<hyper_util::client::legacy::connect::HttpConnector, tonic::body::Body>,
> {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    PartnerServiceClient::with_origin(client, gateway.url().parse().unwrap())
}

#[tokio::test]
async fn the_client_deadline_is_propagated_capped_and_enforced() {
    let (upstream, recorder) = start_upstream().await;
    let gateway = Gateway::start(upstream, |s| s.deadlines.max_ms = 800).await;
    let mut client = raw_h2_partners(&gateway);
    let bearer = gateway.bearer("ana");

    // The client's 300 ms, shorter than the upstream's 5 s.
    let mut request = with_auth(sleep_for(5000), &bearer);
    request
        .metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("300m"));
    let started = Instant::now();
    let status = client.list_partners(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let forwarded = parse_grpc_timeout(recorder.calls()[0].grpc_timeout.as_deref().unwrap());
    assert!(forwarded <= Duration::from_millis(300), "{forwarded:?}");

    // A minute asked for, 800 ms allowed.
    let mut request = with_auth(sleep_for(5000), &bearer);
    request
        .metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("60S"));
    let started = Instant::now();
    let status = client.list_partners(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let forwarded = parse_grpc_timeout(recorder.calls()[1].grpc_timeout.as_deref().unwrap());
    assert!(forwarded <= Duration::from_millis(800), "{forwarded:?}");

    // A call that fits in its deadline passes.
    let mut request = with_auth(sleep_for(50), &bearer);
    request
        .metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("2S"));
    client.list_partners(request).await.unwrap();
}

fn parse_grpc_timeout(value: &str) -> Duration {
    crm_gateway::deadline::parse(&value.parse().unwrap()).expect(value)
}

// ---------------------------------------------------------------------------------------------
// Reflection and health.

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_crm_service() {
    use tonic_reflection::pb::{v1, v1alpha};

    let (upstream, _) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let channel = gateway.channel().await;
    let expected = crm_proto::service_names();
    assert!(
        expected
            .iter()
            .any(|s| s == "crm.marketing.v1.PartnerService")
    );

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let response = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("not a service list: {response:?}");
    };
    let listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in &expected {
        assert!(listed.contains(name), "v1 does not list {name}: {listed:?}");
    }

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let response = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("not a service list: {response:?}");
    };
    let listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in &expected {
        assert!(
            listed.contains(name),
            "v1alpha does not list {name}: {listed:?}"
        );
    }
}

#[tokio::test]
async fn health_is_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let (upstream, _) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let response = HealthClient::new(gateway.channel().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);
}

// ---------------------------------------------------------------------------------------------
// Browsers: gRPC-Web and CORS.

const ALLOWED_ORIGIN: &str = "http://localhost:3000";

/// One length-prefixed gRPC message frame.
fn frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Splits a gRPC-Web response body into its message frames and its trailers.
fn parse_grpc_web(mut body: Bytes) -> (Vec<Bytes>, BTreeMap<String, String>) {
    let mut messages = Vec::new();
    let mut trailers = BTreeMap::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            for line in std::str::from_utf8(&payload).unwrap().split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
        } else {
            messages.push(payload);
        }
    }
    (messages, trailers)
}

async fn grpc_web_call(
    gateway: &Gateway,
    http2: bool,
    text: bool,
    bearer: Option<&str>,
) -> (http::response::Parts, Bytes) {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(http2);
    let client = builder.build_http::<Full<Bytes>>();
    let body = frame(&get("web-1"));
    let (content_type, body) = if text {
        (
            "application/grpc-web-text",
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into_bytes(),
        )
    } else {
        ("application/grpc-web+proto", body)
    };
    let mut request = http::Request::post(format!(
        "{}/crm.marketing.v1.PartnerService/GetPartner",
        gateway.url()
    ))
    .header("content-type", content_type)
    // grpc-web's JS client asks for the response in the same encoding.
    .header("accept", content_type)
    .header("x-grpc-web", "1")
    .header("origin", ALLOWED_ORIGIN);
    if let Some(bearer) = bearer {
        request = request.header("authorization", bearer);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let mut body = body.collect().await.unwrap().to_bytes();
    if text {
        // Each chunk is base64 of its own, padded: 4-character groups decode independently.
        let mut decoded = Vec::new();
        for group in body.chunks(4) {
            decoded.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(group)
                    .unwrap(),
            );
        }
        body = decoded.into();
    }
    (parts, body)
}

#[tokio::test]
async fn grpc_web_calls_pass_over_http1_and_http2_binary_and_text() {
    let (upstream, recorder) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let bearer = gateway.bearer("ana");

    for (http2, text) in [(false, false), (false, true), (true, false)] {
        let (parts, body) = grpc_web_call(&gateway, http2, text, Some(&bearer)).await;
        let case = format!("http2={http2} text={text}");
        assert_eq!(parts.status, http::StatusCode::OK, "{case}");
        let version = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(parts.version, version, "{case}");
        assert!(
            parts.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/grpc-web"),
            "{case}: {:?}",
            parts.headers
        );
        assert_eq!(
            parts.headers["access-control-allow-origin"], ALLOWED_ORIGIN,
            "{case}"
        );
        let (messages, trailers) = parse_grpc_web(body);
        assert_eq!(
            trailers.get("grpc-status").map(String::as_str),
            Some("0"),
            "{case}: {trailers:?}"
        );
        assert_eq!(messages.len(), 1, "{case}");
        let partner = Partner::decode(messages[0].clone()).unwrap();
        assert_eq!(partner.id, "web-1", "{case}");
    }
    assert_eq!(recorder.calls().len(), 3);

    // Without a token: refused in the headers (trailers-only), never forwarded.
    let (parts, _) = grpc_web_call(&gateway, false, false, None).await;
    assert_eq!(parts.headers["grpc-status"], "16", "{parts:?}");
    assert_eq!(recorder.calls().len(), 3);
}

async fn preflight(gateway: &Gateway, origin: &str) -> http::response::Parts {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method("OPTIONS")
        .uri(format!(
            "{}/crm.marketing.v1.PartnerService/GetPartner",
            gateway.url()
        ))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout,traceparent",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    client.request(request).await.unwrap().into_parts().0
}

#[tokio::test]
async fn a_cors_preflight_is_allowed_for_configured_origins_only() {
    let (upstream, _) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;

    let allowed = preflight(&gateway, ALLOWED_ORIGIN).await;
    assert!(allowed.status.is_success(), "{allowed:?}");
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let headers = allowed.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in ["authorization", "x-grpc-web", "grpc-timeout", "traceparent"] {
        assert!(headers.contains(name), "{name} not allowed: {headers}");
    }

    let refused = preflight(&gateway, "https://evil.example.com").await;
    assert!(
        refused.headers.get("access-control-allow-origin").is_none(),
        "{refused:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Replicas: client-side balancing over the addresses of the upstream's host (a headless Service).

/// What cluster DNS would answer for the headless Service: the test changes it as pods come
/// and go.
#[derive(Clone, Default)]
struct Pods(Arc<Mutex<Vec<SocketAddr>>>);

impl Pods {
    fn set(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = addrs.to_vec();
    }
}

impl Resolve for Pods {
    fn resolve(&self, host: &str, _port: u16) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        assert_eq!(host, "marketing-headless");
        let addrs = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// Two replicas on one port, at 127.0.0.1 and 127.0.0.2, like two pods of one Deployment.
async fn two_replicas() -> (Replica, Replica) {
    let a = Replica::start("127.0.0.1:0".parse().unwrap()).await;
    let b = Replica::start(SocketAddr::from(([127, 0, 0, 2], a.addr.port()))).await;
    (a, b)
}

async fn get_partners(gateway: &Gateway, client: &mut PartnerServiceClient<Channel>, n: usize) {
    for i in 0..n {
        client
            .get_partner(with_auth(get(&format!("p{i}")), &gateway.bearer("ana")))
            .await
            .unwrap_or_else(|status| panic!("call {i} failed: {status:?}"));
    }
}

#[tokio::test]
async fn calls_on_one_connection_are_spread_over_every_replica() {
    let (a, b) = two_replicas().await;
    let pods = Pods::default();
    pods.set(&[a.addr, b.addr]);
    let url = format!("http://marketing-headless:{}", a.addr.port());
    let gateway = Gateway::start_resolving(&url, Arc::new(pods), |_| {}).await;
    // One client connection to the gateway, as a frontend's channel would be.
    let mut client = gateway.partners().await;

    get_partners(&gateway, &mut client, 10).await;
    assert_eq!(a.recorder.calls().len(), 5);
    assert_eq!(b.recorder.calls().len(), 5);
}

#[tokio::test]
async fn replicas_that_come_and_go_are_followed() {
    let (a, b) = two_replicas().await;
    let pods = Pods::default();
    pods.set(&[a.addr]);
    let url = format!("http://marketing-headless:{}", a.addr.port());
    let gateway = Gateway::start_resolving(&url, Arc::new(pods.clone()), |s| {
        s.balancing.resolve_interval_ms = 100;
    })
    .await;
    let mut client = gateway.partners().await;
    get_partners(&gateway, &mut client, 4).await;
    assert_eq!((a.recorder.calls().len(), b.recorder.calls().len()), (4, 0));

    // A second pod becomes ready: after the next resolution, calls reach it too.
    pods.set(&[a.addr, b.addr]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.recorder.calls().is_empty() {
        assert!(Instant::now() < deadline, "the new replica got no call");
        tokio::time::sleep(Duration::from_millis(50)).await;
        get_partners(&gateway, &mut client, 1).await;
    }
    let (a_before, b_before) = (a.recorder.calls().len(), b.recorder.calls().len());
    get_partners(&gateway, &mut client, 10).await;
    assert_eq!(a.recorder.calls().len() - a_before, 5);
    assert_eq!(b.recorder.calls().len() - b_before, 5);

    // The first pod goes away before DNS says so: no call fails, all go to the other one.
    let a_calls = a.recorder.calls().len();
    let (a_addr, a_recorder) = (a.addr, a.recorder.clone());
    a.stop().await;
    let b_before = b.recorder.calls().len();
    get_partners(&gateway, &mut client, 6).await;
    assert_eq!(a_recorder.calls().len(), a_calls);
    assert_eq!(b.recorder.calls().len() - b_before, 6);

    // DNS catches up; a pod comes back at the old address and gets calls again.
    pods.set(&[b.addr]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    get_partners(&gateway, &mut client, 2).await;
    let a = Replica::start(a_addr).await;
    pods.set(&[a.addr, b.addr]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.recorder.calls().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the returning replica got no call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        get_partners(&gateway, &mut client, 1).await;
    }
}

#[tokio::test]
async fn an_upstream_host_name_is_resolved_by_the_system_resolver() {
    let (upstream, recorder) = start_upstream().await;
    let url = format!("http://localhost:{}", upstream.port());
    let gateway = Gateway::start_resolving(&url, Arc::new(DnsResolver), |_| {}).await;
    let mut client = gateway.partners().await;
    get_partners(&gateway, &mut client, 2).await;
    assert_eq!(recorder.calls().len(), 2);
}

#[tokio::test]
async fn a_host_name_without_address_answers_unavailable() {
    let pods = Pods::default();
    let gateway =
        Gateway::start_resolving("http://marketing-headless:1", Arc::new(pods), |_| {}).await;
    let mut client = gateway.partners().await;
    assert_marketing_unavailable(&gateway, &mut client).await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[tokio::test]
async fn shutdown_lets_the_call_in_flight_finish() {
    let (upstream, _) = start_upstream().await;
    let gateway = Gateway::start(upstream, |_| {}).await;
    let mut client = gateway.partners().await;
    let bearer = gateway.bearer("ana");
    let addr = gateway.addr;

    let in_flight = tokio::spawn(async move {
        client
            .list_partners(with_auth(sleep_for(500), &bearer))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    tokio::time::timeout(Duration::from_secs(5), gateway.shutdown())
        .await
        .expect("the gateway stops")
        .unwrap();
    in_flight
        .await
        .unwrap()
        .expect("the call in flight finished");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting connections"
    );
}
