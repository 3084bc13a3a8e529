//! Files across services, through the gateway (DESIGN "Files"): a file uploaded to the file
//! service (marketing) is attached by reference to a record of opportunities, which checks the
//! upload token and announces the attachment; marketing claims the upload from that event; the
//! bytes come back from opportunities' AttachmentService, over gRPC and over gRPC-Web on
//! HTTP/1.1 as a browser would read them, and only to whoever may read the record.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 145_50 is 145.50"
)]

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use crm_proto::{
    common::{self, AttachmentRef, DocumentKind, DocumentRef},
    events as ev,
    files::{self as fpb, file_chunk::Part, file_service_client::FileServiceClient},
    marketing::{self as mpb, partner_service_client::PartnerServiceClient},
    opportunities::{
        self as pb, article_service_client::ArticleServiceClient,
        attachment_service_client::AttachmentServiceClient,
        offer_service_client::OfferServiceClient,
        opportunity_service_client::OpportunityServiceClient,
    },
};
use crm_tests::{Stack, authed, token};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

fn ron(units: i64) -> Option<common::Money> {
    Some(common::Money {
        units,
        currency_code: "RON".into(),
    })
}

/// A PNG signature and header, then `size` bytes no other test uploads.
fn png(size: usize) -> Vec<u8> {
    let mut png = vec![
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
    ];
    let seed = uuid::Uuid::now_v7();
    png.extend((0..size).map(|i| seed.as_bytes()[i % 16] ^ u8::try_from(i % 251).unwrap()));
    png
}

async fn upload(stack: &Stack, user: &str, name: &str, content: Vec<u8>) -> AttachmentRef {
    FileServiceClient::new(stack.gateway_channel().await)
        .upload_file(authed(
            fpb::UploadFileRequest {
                file_name: name.into(),
                content,
            },
            user,
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
        .attachment
        .unwrap()
}

async fn create_article(
    stack: &Stack,
    code: &str,
    pictures: Vec<AttachmentRef>,
) -> Result<pb::Article, tonic::Status> {
    ArticleServiceClient::new(stack.gateway_channel().await)
        .create_article(authed(
            pb::CreateArticleRequest {
                article: Some(pb::Article {
                    code: code.into(),
                    name: "Pompă submersibilă".into(),
                    unit: "buc".into(),
                    unit_price: ron(1_450_00),
                    vat_rate_bp: 1900,
                    kind: pb::ArticleKind::Product as i32,
                    pictures,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Waits until marketing has claimed the upload of `blob_key`.
async fn wait_claimed(stack: &Stack, blob_key: &str) {
    let pool = stack.marketing_pool().await;
    for _ in 0..200 {
        let claimed: Option<bool> = sqlx::query_scalar(
            "SELECT bool_and(claim_time IS NOT NULL) FROM uploads WHERE blob_key = $1",
        )
        .bind(blob_key)
        .fetch_one(&pool)
        .await
        .unwrap();
        if claimed == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("marketing never claimed the upload of {blob_key}");
}

/// Downloads an attachment through the gateway over gRPC: the reference, then the bytes.
async fn download(
    stack: &Stack,
    user: &str,
    roles: &[&str],
    owner: DocumentRef,
    attachment_id: &str,
) -> Result<(AttachmentRef, Vec<u8>, usize), tonic::Status> {
    let mut stream = AttachmentServiceClient::new(stack.gateway_channel().await)
        .download_attachment(authed(
            fpb::DownloadAttachmentRequest {
                owner: Some(owner),
                attachment_id: attachment_id.into(),
            },
            user,
            roles,
        ))
        .await?
        .into_inner();
    let mut head = None;
    let mut bytes = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await? {
        match chunk.part.unwrap() {
            Part::File(file) => {
                assert!(
                    head.is_none() && bytes.is_empty(),
                    "the reference comes first"
                );
                head = Some(file);
            }
            Part::Data(data) => {
                assert!(data.len() <= 64 * 1024);
                bytes.extend_from_slice(&data);
                chunks += 1;
            }
        }
    }
    Ok((head.expect("a reference"), bytes, chunks))
}

fn article_ref(id: &str) -> DocumentRef {
    DocumentRef {
        kind: DocumentKind::Article as i32,
        id: id.into(),
        number: String::new(),
    }
}

#[tokio::test]
async fn a_picture_uploaded_through_the_gateway_is_claimed_by_its_article_and_downloaded() {
    let stack = Stack::start().await;
    let content = png(200_000);
    let uploaded = upload(&stack, "ana", "pompa.png", content.clone()).await;
    assert_eq!(uploaded.content_type, "image/png");

    let article = create_article(&stack, "POMPA-1", vec![uploaded.clone()])
        .await
        .unwrap();
    let picture = &article.pictures[0];
    assert_eq!(picture.id, uploaded.id, "the upload's id is kept");
    assert_eq!(picture.blob_key, uploaded.blob_key);
    assert!(picture.upload_token.is_empty(), "tokens are not stored");

    // Opportunities announced the attachment; marketing claimed the upload from that event.
    let (_, attached) = stack
        .wait_event::<ev::FilesAttached>("crm.events.opportunities", |e| {
            e.owner.as_ref().unwrap().id == article.id
        })
        .await;
    assert_eq!(attached.blob_keys, std::slice::from_ref(&uploaded.blob_key));
    assert_eq!(attached.owner.unwrap().kind, DocumentKind::Article as i32);
    wait_claimed(&stack, &uploaded.blob_key).await;

    // gRPC: the reference, then the bytes in 64 KiB chunks.
    let (file, bytes, chunks) = download(
        &stack,
        "ion",
        &["marketing"],
        article_ref(&article.id),
        &picture.id,
    )
    .await
    .unwrap();
    assert_eq!(file.file_name, "pompa.png");
    assert_eq!(file.content_type, "image/png");
    assert_eq!(file.size_bytes, i64::try_from(content.len()).unwrap());
    assert_eq!(bytes, content);
    assert_eq!(chunks, content.len().div_ceil(64 * 1024));

    // gRPC-Web over HTTP/1.1, as a browser: data frames, then the trailers frame.
    let message = fpb::DownloadAttachmentRequest {
        owner: Some(article_ref(&article.id)),
        attachment_id: picture.id.clone(),
    }
    .encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap());
    frame.put_slice(&message);
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!(
        "http://{}/crm.opportunities.v1.AttachmentService/DownloadAttachment",
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
    let mut body = response.into_body().collect().await.unwrap().to_bytes();
    let mut web_bytes = Vec::new();
    let mut head = None;
    let mut trailers = String::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 == 0 {
            match fpb::FileChunk::decode(payload).unwrap().part.unwrap() {
                Part::File(file) => head = Some(file),
                Part::Data(data) => web_bytes.extend_from_slice(&data),
            }
        } else {
            trailers = String::from_utf8(payload.to_vec()).unwrap();
        }
    }
    assert_eq!(head.unwrap().blob_key, uploaded.blob_key);
    assert_eq!(web_bytes, content);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // An attachment the record does not have, and a record that does not exist: NOT_FOUND.
    let err = download(
        &stack,
        "ana",
        &["sales"],
        article_ref(&article.id),
        &uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = download(
        &stack,
        "ana",
        &["sales"],
        article_ref(&uuid::Uuid::now_v7().to_string()),
        &picture.id,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A request without owner or attachment names both.
    let err = AttachmentServiceClient::new(stack.gateway_channel().await)
        .download_attachment(authed(
            fpb::DownloadAttachmentRequest::default(),
            "ana",
            &["sales"],
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["owner"]);
}

#[tokio::test]
async fn only_the_uploader_with_a_valid_token_attaches_a_file() {
    let stack = Stack::start().await;
    let uploaded = upload(&stack, "ana", "pompa.png", png(1_000)).await;

    // A reference without a token (a blob key seen elsewhere) is refused.
    let without = AttachmentRef {
        upload_token: String::new(),
        ..uploaded.clone()
    };
    let err = create_article(&stack, "POMPA-2", vec![without])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["article.pictures[0].upload_token"]);

    // Someone else's upload is refused.
    let ions = upload(&stack, "ion", "a-lui-ion.png", png(1_000)).await;
    let err = create_article(&stack, "POMPA-2", vec![uploaded.clone(), ions])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["article.pictures[1].upload_token"]);

    // A reference changed after the upload (another blob, a bigger size) is refused.
    let other_blob = AttachmentRef {
        blob_key: "0".repeat(64),
        ..uploaded.clone()
    };
    let err = create_article(&stack, "POMPA-2", vec![other_blob])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["article.pictures[0].upload_token"]);

    // Nothing refused was announced or claimed; the genuine upload attaches.
    let article = create_article(&stack, "POMPA-2", vec![uploaded.clone()])
        .await
        .unwrap();
    wait_claimed(&stack, &uploaded.blob_key).await;

    // Keeping an existing picture on an update needs no token (it is not new).
    let stored = article.pictures[0].clone();
    let renamed = ArticleServiceClient::new(stack.gateway_channel().await)
        .update_article(authed(
            pb::UpdateArticleRequest {
                article: Some(pb::Article {
                    id: article.id.clone(),
                    name: "Pompă de suprafață".into(),
                    pictures: vec![stored.clone()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into(), "pictures".into()],
                }),
                etag: article.etag.clone(),
            },
            "ion",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.pictures, [stored]);
}

#[tokio::test]
async fn an_offers_attachment_is_downloaded_only_by_who_may_read_the_offer() {
    let stack = Stack::start().await;
    let partner_id = PartnerServiceClient::new(stack.gateway_channel().await)
        .create_partner(authed(
            mpb::CreatePartnerRequest {
                partner: Some(mpb::Partner {
                    kind: mpb::PartnerKind::Customer as i32,
                    name: "Agroserv SRL".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut opportunities = OpportunityServiceClient::new(stack.gateway_channel().await);
    let opportunity = opportunities
        .create_opportunity(authed(
            pb::CreateOpportunityRequest {
                opportunity: Some(pb::Opportunity {
                    partner_id,
                    title: "Irigații".into(),
                    owner_staff_id: uuid::Uuid::now_v7().to_string(),
                    potential_value: ron(50_000_00),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    let opportunity = opportunities
        .change_opportunity_stage(authed(
            pb::ChangeOpportunityStageRequest {
                id: opportunity.id.clone(),
                etag: opportunity.etag.clone(),
                stage: pb::OpportunityStage::Offer as i32,
                ..Default::default()
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    let article = create_article(&stack, "POMPA-3", Vec::new()).await.unwrap();
    let pdf = b"%PDF-1.7\n% oferta semnata\n".to_vec();
    let uploaded = upload(&stack, "ana", "oferta-semnata.pdf", pdf.clone()).await;
    assert_eq!(uploaded.content_type, "application/pdf");
    let offer = OfferServiceClient::new(stack.gateway_channel().await)
        .create_offer(authed(
            pb::CreateOfferRequest {
                offer: Some(pb::Offer {
                    opportunity_id: opportunity.id,
                    lines: vec![pb::DocumentLine {
                        article_id: article.id,
                        quantity_milli: 1_000,
                        ..Default::default()
                    }],
                    valid_until: Some(common::Date {
                        year: 2099,
                        month: 1,
                        day: 31,
                    }),
                    attachments: vec![uploaded.clone()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    let owner = DocumentRef {
        kind: DocumentKind::Offer as i32,
        id: offer.id.clone(),
        number: String::new(),
    };
    let attachment_id = offer.attachments[0].id.clone();
    wait_claimed(&stack, &uploaded.blob_key).await;

    let (_, bytes, _) = download(&stack, "ion", &["manager"], owner.clone(), &attachment_id)
        .await
        .unwrap();
    assert_eq!(bytes, pdf);
    // Marketing staff do not read sales offers: to them the attachment does not exist.
    let err = download(&stack, "maria", &["marketing"], owner, &attachment_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn a_browser_uploads_a_file_larger_than_any_other_message_over_grpc_web() {
    let stack = Stack::start().await;
    // 6 MiB: over the 4 MiB every other request may carry, under the upload limit.
    let content = png(6 * 1024 * 1024);
    let message = fpb::UploadFileRequest {
        file_name: "plan-irigatii.png".into(),
        content: content.clone(),
    }
    .encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap());
    frame.put_slice(&message);
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!(
        "http://{}/crm.files.v1.FileService/UploadFile",
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
    let mut body = response.into_body().collect().await.unwrap().to_bytes();
    let mut uploaded = None;
    let mut trailers = String::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 == 0 {
            uploaded = fpb::UploadFileResponse::decode(payload).unwrap().attachment;
        } else {
            trailers = String::from_utf8(payload.to_vec()).unwrap();
        }
    }
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let uploaded = uploaded.expect("an attachment");
    assert_eq!(uploaded.size_bytes, i64::try_from(content.len()).unwrap());
    assert_eq!(uploaded.content_type, "image/png");

    // Any other request that size is refused before it is read.
    let err = PartnerServiceClient::new(stack.gateway_channel().await)
        .create_partner(authed(
            mpb::CreatePartnerRequest {
                partner: Some(mpb::Partner {
                    kind: mpb::PartnerKind::Customer as i32,
                    name: "Mare SRL".into(),
                    activity_domain: "x".repeat(6 * 1024 * 1024),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
}
