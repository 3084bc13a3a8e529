//! `crm.files.v1.FileService`: uploads of attachment files for every record of the CRM
//! (DESIGN "Files"). Marketing hosts it; the gateway routes `crm.files.v1` here.

use std::time::Duration;

use crm_platform::{
    auth::Caller,
    blob::BlobStore,
    clock::Clock,
    error::{FieldViolations, invalid_field},
    files::{UploadTokens, check_file_name, sniff_content_type},
    values::timestamp,
};
use crm_proto::{
    common::AttachmentRef,
    files::{self as pb, file_service_server::FileService, upload_file_chunk::Part},
};
use futures::StreamExt as _;
use sqlx::PgPool;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{error::MarketingError, store::files::Upload};

/// How long an upload waits for a record to claim it.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The upload handlers and what they need.
#[derive(Clone)]
pub struct FileApi {
    pool: PgPool,
    blobs: BlobStore,
    clock: Clock,
    tokens: UploadTokens,
    max_bytes: usize,
}

impl FileApi {
    /// Uploads into `blobs`, recorded in `pool`, of at most `max_bytes`.
    pub fn new(
        pool: PgPool,
        blobs: BlobStore,
        clock: Clock,
        tokens: UploadTokens,
        max_bytes: usize,
    ) -> Self {
        Self {
            pool,
            blobs,
            clock,
            tokens,
            max_bytes,
        }
    }

    /// Stores `content` named `file_name` for `caller` and answers with its signed reference.
    async fn store(
        &self,
        caller: &Caller,
        file_name: &str,
        content: Vec<u8>,
    ) -> Result<pb::UploadFileResponse, Status> {
        let file_name = file_name.trim();
        let mut violations = FieldViolations::new();
        violations.check("file_name", check_file_name(file_name));
        if content.is_empty() {
            violations.add("content", "is required: the file is empty");
        }
        violations.into_result()?;
        let content_type = sniff_content_type(&content);
        let size_bytes = i64::try_from(content.len()).unwrap_or(i64::MAX);
        let key = content_key(&content);
        let blob_was_new = !self
            .blobs
            .exists(&key)
            .await
            .map_err(|err| crm_platform::error::internal(&err))?;
        let stored_key = self
            .blobs
            .put(content.into())
            .await
            .map_err(|err| crm_platform::error::internal(&err))?;
        let now = self.clock.now();
        let upload = Upload {
            id: Uuid::now_v7(),
            blob_key: stored_key,
            file_name: file_name.to_owned(),
            content_type,
            size_bytes,
            uploader: caller.subject.clone(),
            create_time: now,
            blob_was_new,
        };
        let mut conn = self.pool.acquire().await.map_err(MarketingError::from)?;
        crate::store::files::insert_upload(&mut conn, &upload)
            .await
            .map_err(MarketingError::from)?;
        let deadline =
            now + chrono::Duration::from_std(CLAIM_WINDOW).expect("a day fits a chrono duration");
        let mut attachment = AttachmentRef {
            blob_key: upload.blob_key,
            file_name: upload.file_name,
            content_type: upload.content_type,
            size_bytes,
            id: upload.id.to_string(),
            upload_token: String::new(),
        };
        attachment.upload_token = self.tokens.sign(&attachment, &caller.subject, deadline);
        tracing::info!(
            upload = %upload.id,
            size_bytes,
            content_type = %attachment.content_type,
            "file uploaded"
        );
        Ok(pb::UploadFileResponse {
            attachment: Some(attachment),
            claim_deadline_time: Some(timestamp(deadline)),
        })
    }

    fn too_big(&self, size: usize) -> Status {
        Status::resource_exhausted(format!(
            "the file is {size} bytes or more; the limit is {} bytes",
            self.max_bytes
        ))
    }
}

/// The SHA-256 key the blob store will give these bytes (to know whether they are new).
fn content_key(content: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(content))
}

#[tonic::async_trait]
impl FileService for FileApi {
    #[tracing::instrument(skip_all)]
    async fn upload_file(
        &self,
        request: Request<pb::UploadFileRequest>,
    ) -> Result<Response<pb::UploadFileResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        let request = request.into_inner();
        if request.content.len() > self.max_bytes {
            return Err(self.too_big(request.content.len()));
        }
        Ok(Response::new(
            self.store(&caller, &request.file_name, request.content)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn upload_file_stream(
        &self,
        request: Request<Streaming<pb::UploadFileChunk>>,
    ) -> Result<Response<pb::UploadFileResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        let mut chunks = request.into_inner();
        let file_name = match chunks.next().await {
            Some(Ok(pb::UploadFileChunk {
                part: Some(Part::FileName(name)),
            })) => name,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(invalid_field(
                    "file_name",
                    "the first message must name the file",
                ));
            }
        };
        let mut content = Vec::new();
        while let Some(chunk) = chunks.next().await {
            match chunk?.part {
                Some(Part::Data(bytes)) => {
                    // Refused as soon as the bytes pass the limit: nothing is stored.
                    if content.len() + bytes.len() > self.max_bytes {
                        return Err(self.too_big(content.len() + bytes.len()));
                    }
                    content.extend_from_slice(&bytes);
                }
                Some(Part::FileName(_)) => {
                    return Err(invalid_field(
                        "file_name",
                        "only the first message names the file",
                    ));
                }
                None => {}
            }
        }
        Ok(Response::new(
            self.store(&caller, &file_name, content).await?,
        ))
    }
}
