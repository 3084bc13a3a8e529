//! `AttachmentService`: the bytes of the files on opportunities' records (DESIGN "Files"):
//! offers', orders', contracts' and invoices' attachments and articles' pictures, to whoever may
//! read the record; NOT_FOUND for anyone else (X5).

use crm_platform::files::{DownloadStream, download};
use crm_proto::{
    common::DocumentKind, files as fpb, opportunities::attachment_service_server::AttachmentService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{DOCUMENT_ROLES, EVERY_ROLE, Fields, OpportunitiesApi, caller, convert};
use crate::{
    domain::{catalogue::Attachment, documents::OfferPurpose},
    error::{OpportunitiesError, Result},
    store,
};

impl OpportunitiesApi {
    /// The attachment `attachment_id` of the record `owner`, if the caller (who has `all_documents`
    /// or only the `service` role) may read the record.
    async fn attachment_of(
        &self,
        kind: DocumentKind,
        owner: Uuid,
        attachment_id: Uuid,
        all_documents: bool,
    ) -> Result<Attachment> {
        let mut conn = self.pool.acquire().await?;
        let files: Vec<Attachment> = match kind {
            DocumentKind::Offer => store::offers::get(&mut conn, owner, false)
                .await?
                .filter(|o| all_documents || o.purpose == OfferPurpose::ServiceEstimate)
                .map(|o| o.doc.attachments)
                .unwrap_or_default(),
            DocumentKind::Order if all_documents => store::orders::get(&mut conn, owner, false)
                .await?
                .map(|o| o.doc.attachments)
                .unwrap_or_default(),
            DocumentKind::Contract => store::contracts::get(&mut conn, owner, false)
                .await?
                .map(|c| c.doc.attachments)
                .unwrap_or_default(),
            DocumentKind::Invoice => store::invoices::get(&mut conn, owner, false)
                .await?
                .filter(|i| all_documents || i.task_id.is_some())
                .map(|i| i.doc.attachments)
                .unwrap_or_default(),
            DocumentKind::Article => store::articles::get(&mut conn, owner)
                .await?
                .map(|a| a.pictures)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        files
            .into_iter()
            .find(|f| f.id == attachment_id)
            .ok_or_else(|| OpportunitiesError::not_found("attachment", attachment_id))
    }
}

#[tonic::async_trait]
impl AttachmentService for OpportunitiesApi {
    type DownloadAttachmentStream = DownloadStream;

    #[tracing::instrument(skip_all)]
    async fn download_attachment(
        &self,
        request: Request<fpb::DownloadAttachmentRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let caller = caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let Some(owner) = request.owner else {
            f.add("owner", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let kind = match DocumentKind::try_from(owner.kind) {
            Ok(
                kind @ (DocumentKind::Offer
                | DocumentKind::Order
                | DocumentKind::Contract
                | DocumentKind::Invoice
                | DocumentKind::Article),
            ) => Some(kind),
            _ => {
                f.add(
                    "owner.kind",
                    "must be OFFER, ORDER, CONTRACT, INVOICE or ARTICLE: the records here",
                );
                None
            }
        };
        let owner_id = f.id("owner.id", &owner.id);
        let attachment_id = f.id("attachment_id", &request.attachment_id);
        f.finish()?;
        let file = self
            .attachment_of(
                kind.expect("checked"),
                owner_id.expect("checked"),
                attachment_id.expect("checked"),
                caller.has_any_role(DOCUMENT_ROLES),
            )
            .await?;
        Ok(Response::new(
            download(&self.blobs, convert::attachment(&file)).await?,
        ))
    }
}
