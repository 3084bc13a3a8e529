//! FileService end to end (DESIGN "Files"): uploads into the real blob store, recorded in the
//! service's own PostgreSQL database; the content type sniffed from the bytes; the size limit;
//! the upload token; uploads claimed by a record kept, the others collected after a day.

use chrono::{Duration, Utc};
use crm_marketing::{config::Settings, uploads};
use crm_platform::{
    auth::AuthSettings,
    blob::BlobStore,
    clock::Clock,
    files::UploadTokens,
    testing::{self, TestDatabase, authed, redis_settings},
};
use crm_proto::{
    common::{AttachmentRef, DocumentKind, DocumentRef},
    events::{Envelope, FilesAttached},
    files::{self as pb, file_service_client::FileServiceClient, upload_file_chunk::Part},
};
use sqlx::PgPool;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt as _;

/// The upload limit of these tests: small, so a test can pass it cheaply.
const LIMIT: usize = 64 * 1024;

struct Service {
    client: FileServiceClient<Channel>,
    pool: PgPool,
    blobs: BlobStore,
    _db: TestDatabase,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Service {
    let db = TestDatabase::create("marketing").await;
    let mut settings = Settings::load(None).unwrap();
    testing::init_telemetry(&settings.base);
    testing::use_test_backing(&mut settings.base, &db, redis_settings());
    settings.base.server.max_upload_bytes = LIMIT;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crm_marketing::run(settings.clone(), listener, async {
        let _ = stopped.await;
    }));
    testing::wait_serving(addr, "crm.marketing.v1.PartnerService").await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Service {
        client: FileServiceClient::new(channel),
        pool: crm_platform::db::connect(&db.settings).await.unwrap(),
        blobs: BlobStore::local(&settings.base.blob.root).unwrap(),
        _db: db,
        _stop: stop,
    }
}

/// Bytes no other test uploads (the blob store is shared and content-addressed).
fn unique_text() -> Vec<u8> {
    format!("Oferta {}\nPreț: 145,50 lei\n", uuid::Uuid::now_v7()).into_bytes()
}

/// A tiny PNG (signature and IHDR chunk) followed by unique bytes.
fn unique_png() -> Vec<u8> {
    let mut png = vec![
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
    ];
    png.extend_from_slice(uuid::Uuid::now_v7().as_bytes());
    png
}

async fn upload(
    s: &mut Service,
    user: &str,
    name: &str,
    content: Vec<u8>,
) -> pb::UploadFileResponse {
    s.client
        .upload_file(authed(
            pb::UploadFileRequest {
                file_name: name.into(),
                content,
            },
            user,
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
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

#[tokio::test]
async fn an_upload_is_stored_by_content_with_a_sniffed_type_and_a_token_of_its_uploader() {
    let mut s = start().await;
    let content = unique_png();
    let before = Utc::now();
    // The name says text; the bytes say PNG: the bytes win.
    let response = upload(&mut s, "ana", "  poza.txt ", content.clone()).await;
    let file = response.attachment.unwrap();
    assert_eq!(file.content_type, "image/png");
    assert_eq!(file.file_name, "poza.txt");
    assert_eq!(file.size_bytes, i64::try_from(content.len()).unwrap());
    {
        use sha2::Digest as _;
        assert_eq!(file.blob_key, hex::encode(sha2::Sha256::digest(&content)));
    }
    assert_eq!(s.blobs.get(&file.blob_key).await.unwrap(), content);
    uuid::Uuid::parse_str(&file.id).unwrap();

    let deadline = response.claim_deadline_time.unwrap();
    let deadline = chrono::DateTime::from_timestamp(deadline.seconds, 0).unwrap();
    assert!(deadline >= before + Duration::hours(24) - Duration::seconds(1));
    assert!(deadline <= Utc::now() + Duration::hours(24));

    // The token proves that ana uploaded exactly this file, and nobody else.
    let tokens = UploadTokens::new(&AuthSettings::development());
    assert_eq!(tokens.verify(&file, "ana", Utc::now()), Ok(()));
    assert!(tokens.verify(&file, "ion", Utc::now()).is_err());
    let bigger = AttachmentRef {
        size_bytes: file.size_bytes + 1,
        ..file.clone()
    };
    assert!(tokens.verify(&bigger, "ana", Utc::now()).is_err());

    // Text is text.
    let text = upload(&mut s, "ana", "note.bin", unique_text()).await;
    assert_eq!(
        text.attachment.unwrap().content_type,
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn a_streamed_upload_is_the_same_file_as_its_chunks_in_order() {
    let mut s = start().await;
    let content: Vec<u8> = (0..40_000u32)
        .flat_map(u32::to_le_bytes)
        .take(LIMIT)
        .collect();
    let chunks: Vec<pb::UploadFileChunk> = std::iter::once(Part::FileName("date.bin".into()))
        .chain(content.chunks(10_000).map(|c| Part::Data(c.to_vec())))
        .map(|part| pb::UploadFileChunk { part: Some(part) })
        .collect();
    let response = s
        .client
        .upload_file_stream(authed(tokio_stream::iter(chunks), "ana", &["sales"]))
        .await
        .unwrap()
        .into_inner();
    let file = response.attachment.unwrap();
    assert_eq!(file.size_bytes, i64::try_from(LIMIT).unwrap());
    assert_eq!(s.blobs.get(&file.blob_key).await.unwrap(), content);
}

#[tokio::test]
async fn a_file_over_the_limit_is_resource_exhausted_and_nothing_is_stored() {
    let mut s = start().await;
    // Unary: one byte over.
    let err = s
        .client
        .upload_file(authed(
            pb::UploadFileRequest {
                file_name: "mare.bin".into(),
                content: vec![7; LIMIT + 1],
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Streamed: chunks each under the limit, together over it.
    let chunks: Vec<pb::UploadFileChunk> = std::iter::once(Part::FileName("mare.bin".into()))
        .chain((0..3).map(|_| Part::Data(vec![9; LIMIT / 2])))
        .map(|part| pb::UploadFileChunk { part: Some(part) })
        .collect();
    let err = s
        .client
        .upload_file_stream(authed(tokio_stream::iter(chunks), "ana", &["sales"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains(&LIMIT.to_string()), "{err:?}");

    let uploads: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(uploads, 0);
}

#[tokio::test]
async fn bad_uploads_name_their_fields() {
    let mut s = start().await;
    let err = s
        .client
        .upload_file(authed(pb::UploadFileRequest::default(), "ana", &["sales"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["file_name", "content"]);

    for name in ["../etc/passwd", "a\\b", "linie\nnouă", &"x".repeat(256)] {
        let err = s
            .client
            .upload_file(authed(
                pb::UploadFileRequest {
                    file_name: name.into(),
                    content: b"x".to_vec(),
                },
                "ana",
                &["sales"],
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&err), ["file_name"], "{name:?}");
    }

    // A stream must name the file first, and only once.
    let data_first = vec![pb::UploadFileChunk {
        part: Some(Part::Data(b"x".to_vec())),
    }];
    let err = s
        .client
        .upload_file_stream(authed(tokio_stream::iter(data_first), "ana", &["sales"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["file_name"]);
    let named_twice = vec![
        pb::UploadFileChunk {
            part: Some(Part::FileName("a.txt".into())),
        },
        pb::UploadFileChunk {
            part: Some(Part::FileName("b.txt".into())),
        },
    ];
    let err = s
        .client
        .upload_file_stream(authed(tokio_stream::iter(named_twice), "ana", &["sales"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["file_name"]);

    // Without a token: not authenticated.
    let err = s
        .client
        .upload_file(pb::UploadFileRequest {
            file_name: "a.txt".into(),
            content: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

fn files_attached(blob_keys: Vec<String>) -> Envelope {
    Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: "crm.events.v1.FilesAttached".into(),
        producer: "opportunities".into(),
        payload: Some(
            prost_types::Any::from_msg(&FilesAttached {
                owner: Some(DocumentRef {
                    kind: DocumentKind::Offer as i32,
                    id: uuid::Uuid::now_v7().to_string(),
                    number: String::new(),
                }),
                blob_keys,
            })
            .unwrap(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn uploads_no_record_claims_within_a_day_are_collected_with_their_bytes() {
    let mut s = start().await;
    let kept = upload(&mut s, "ana", "kept.txt", unique_text())
        .await
        .attachment
        .unwrap();
    let dropped = upload(&mut s, "ana", "dropped.txt", unique_text())
        .await
        .attachment
        .unwrap();
    let mut conn = s.pool.acquire().await.unwrap();
    uploads::claim(&mut conn, &files_attached(vec![kept.blob_key.clone()]))
        .await
        .unwrap();
    drop(conn);
    // The same bytes as the kept file, uploaded again and never attached: the upload goes, the
    // bytes stay (the kept record needs them).
    let kept_bytes = s.blobs.get(&kept.blob_key).await.unwrap().to_vec();
    let again = upload(&mut s, "ion", "again.txt", kept_bytes)
        .await
        .attachment
        .unwrap();
    assert_eq!(again.blob_key, kept.blob_key);

    // Within the day nothing goes.
    let within = Clock::fixed(Utc::now() + Duration::hours(23));
    assert_eq!(
        uploads::collect_once(&s.pool, &s.blobs, &within)
            .await
            .unwrap(),
        0
    );
    assert!(s.blobs.exists(&dropped.blob_key).await.unwrap());

    let after = Clock::fixed(Utc::now() + Duration::hours(25));
    assert_eq!(
        uploads::collect_once(&s.pool, &s.blobs, &after)
            .await
            .unwrap(),
        1
    );
    assert!(!s.blobs.exists(&dropped.blob_key).await.unwrap());
    assert!(s.blobs.exists(&kept.blob_key).await.unwrap());
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM uploads ORDER BY id")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    assert_eq!(left, [uuid::Uuid::parse_str(&kept.id).unwrap()]);
    // A second round finds nothing more.
    assert_eq!(
        uploads::collect_once(&s.pool, &s.blobs, &after)
            .await
            .unwrap(),
        0
    );
}
