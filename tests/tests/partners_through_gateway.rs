//! The partners slice end to end through the gateway (SPEC M1, X1–X5): what a frontend sees.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use crm_proto::{
    events::Envelope,
    marketing::{self as pb, partner_service_client::PartnerServiceClient},
};
use crm_tests::{Stack, authed, token};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

fn lead(name: &str) -> pb::Partner {
    pb::Partner {
        kind: pb::PartnerKind::Lead as i32,
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_partner_lifecycle_works_through_the_gateway() {
    let stack = Stack::start().await;
    let mut client = PartnerServiceClient::new(stack.gateway_channel().await);

    // No token: refused by the gateway.
    let status = client
        .list_partners(pb::ListPartnersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A bad email is refused naming the field.
    let status = client
        .create_partner(authed(
            pb::CreatePartnerRequest {
                partner: Some(pb::Partner {
                    sites: vec![pb::Site {
                        label: "HQ".into(),
                        email: "office@@agroserv".into(),
                        ..Default::default()
                    }],
                    ..lead("Agroserv")
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["partner.sites[0].email"]);

    // A repeated request_id returns the same partner.
    let create = pb::CreatePartnerRequest {
        partner: Some(lead("Agroserv")),
        request_id: "signup-1".into(),
    };
    let first = client
        .create_partner(authed(create.clone(), "ana", &["sales"]))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_partner(authed(create, "ana", &["sales"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);

    // A stale etag is refused.
    let update = |name: &str, etag: &str| pb::UpdatePartnerRequest {
        partner: Some(pb::Partner {
            id: first.id.clone(),
            name: name.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".into()],
        }),
        etag: etag.into(),
    };
    let renamed = client
        .update_partner(authed(
            update("Agroserv SRL", &first.etag),
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Agroserv SRL");
    let status = client
        .update_partner(authed(
            update("Lost update", &first.etag),
            "ana",
            &["sales"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
}

#[tokio::test]
async fn partner_created_reaches_the_stream_with_the_callers_trace_id() {
    let stack = Stack::start().await;
    let mut client = PartnerServiceClient::new(stack.gateway_channel().await);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request = authed(
        pb::CreatePartnerRequest {
            partner: Some(lead("Traced SRL")),
            request_id: String::new(),
        },
        "ana",
        &["sales"],
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let created = client.create_partner(request).await.unwrap().into_inner();

    let stream = crm_platform::redis_conn::stream_name(&stack.redis, crm_marketing::events::STREAM);
    let redis_client =
        redis::Client::open(secrecy::ExposeSecret::expose_secret(&stack.redis.url)).unwrap();
    let mut redis = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for _ in 0..100 {
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut redis, &stream)
                .await
                .unwrap();
        if let Some(entry) = reply.ids.first() {
            let bytes: Vec<u8> = entry.get("envelope").unwrap();
            let envelope = Envelope::decode(bytes.as_slice()).unwrap();
            assert_eq!(envelope.r#type, "crm.events.v1.PartnerCreated");
            assert_eq!(envelope.partner_id, created.id);
            assert!(
                envelope.traceparent.starts_with(&format!("00-{trace_id}-")),
                "the gateway and marketing continued the caller's trace: {:?}",
                envelope.traceparent
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no PartnerCreated on {stream}");
}

/// A gRPC-Web call over HTTP/1.1, as a browser makes it.
#[tokio::test]
async fn a_browser_calls_over_grpc_web_on_http1() {
    let stack = Stack::start().await;
    let mut client = PartnerServiceClient::new(stack.gateway_channel().await);
    let created = client
        .create_partner(authed(
            pb::CreatePartnerRequest {
                partner: Some(lead("Web SRL")),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();

    let message = pb::GetPartnerRequest {
        id: created.id.clone(),
    }
    .encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap());
    frame.put_slice(&message);
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!(
        "http://{}/crm.marketing.v1.PartnerService/GetPartner",
        stack.gateway
    ))
    .version(hyper::Version::HTTP_11)
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("origin", "http://localhost:3000")
    .header(
        "authorization",
        format!("Bearer {}", token("ana", &["sales"])),
    )
    .body(Full::new(frame.freeze()))
    .unwrap();
    let response = http1.request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_11);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let mut body = response.into_body().collect().await.unwrap().to_bytes();
    // Frames: one data frame (flag 0) with the partner, then the trailers frame (flag 0x80).
    let mut partner = None;
    let mut trailers = String::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 == 0 {
            partner = Some(pb::Partner::decode(payload).unwrap());
        } else {
            trailers = String::from_utf8(payload.to_vec()).unwrap();
        }
    }
    assert_eq!(partner.unwrap().id, created.id);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

#[tokio::test]
async fn reflection_lists_every_public_service() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let stack = Stack::start().await;
    let mut reflection = ServerReflectionClient::new(stack.gateway_channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in crm_proto::service_names() {
        assert!(
            listed.contains(&service),
            "{service} missing from {listed:?}"
        );
    }
    assert!(
        listed
            .iter()
            .any(|s| s == "crm.marketing.v1.PartnerService")
    );
}
