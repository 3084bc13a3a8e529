//! Bad bytes on the wire, through the gateway, get the caller's codes (X2): a string that is not
//! UTF-8 or holds U+0000 is INVALID_ARGUMENT naming the field, an oversized message is
//! RESOURCE_EXHAUSTED, and a refused token says "invalid token" without the parser's details.
//! These are platform behaviours; marketing's CreatePartner stands in for every service.

use bytes::Bytes;
use crm_proto::marketing as pb;
use crm_tests::{Stack, token};
use prost::Message as _;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt as _;

async fn create_partner_raw(
    channel: Channel,
    body: Vec<u8>,
    authorization: &str,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(Bytes::from(body));
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().unwrap());
    grpc.unary(
        request,
        "/crm.marketing.v1.PartnerService/CreatePartner"
            .parse()
            .unwrap(),
        crm_tests::raw::RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A CreatePartnerRequest whose partner name is replaced by `name`, byte for byte.
fn request_with_name(name: &[u8]) -> Vec<u8> {
    let marker = "N".repeat(name.len());
    let mut bytes = pb::CreatePartnerRequest {
        partner: Some(pb::Partner {
            kind: pb::PartnerKind::Lead as i32,
            name: marker.clone(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
    .encode_to_vec();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    bytes[at..at + name.len()].copy_from_slice(name);
    bytes
}

fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test]
async fn bad_strings_and_big_messages_get_the_callers_codes_through_the_gateway() {
    let stack = Stack::start().await;
    let bearer = format!("Bearer {}", token("ana", &["sales"]));
    let channel = stack.gateway_channel().await;

    // The same request with a good name is created: the harness itself is right.
    create_partner_raw(channel.clone(), request_with_name(b"Agroserv SRL"), &bearer)
        .await
        .unwrap();

    let status = create_partner_raw(
        channel.clone(),
        request_with_name(b"Agro\xc3\x28serv"),
        &bearer,
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&status), ["partner.name"]);

    let status = create_partner_raw(channel.clone(), request_with_name(b"Agro\0serv"), &bearer)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["partner.name"]);

    // 5 MiB: over the default 4 MiB limit.
    let big = vec![b'a'; 5 * 1024 * 1024];
    let status = create_partner_raw(channel.clone(), request_with_name(&big), &bearer)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Straight to the service too: the limit is the service's, not only the gateway's.
    let direct = crm_tests::channel(stack.marketing).await;
    let status = create_partner_raw(direct, request_with_name(&big), &bearer)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // A token whose header names an unknown algorithm: the parser's words stay in the logs.
    let status = create_partner_raw(
        channel,
        request_with_name(b"Agroserv"),
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbmEifQ.c2ln",
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid token");
}
