//! `AttachmentService`: the bytes of the files on tasks and on their replies (DESIGN "Files"),
//! to whoever may see the task; NOT_FOUND for anyone else (X5).

use crm_platform::files::{DownloadStream, download};
use crm_proto::{
    common::DocumentKind, files as fpb, tasks::attachment_service_server::AttachmentService,
};
use tonic::{Request, Response, Status};

use super::{EVERY_ROLE, Fields, TasksApi, caller};
use crate::{error::TasksError, store};

#[tonic::async_trait]
impl AttachmentService for TasksApi {
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
            Ok(kind @ (DocumentKind::Task | DocumentKind::TaskReply)) => Some(kind),
            _ => {
                f.add("owner.kind", "must be TASK or TASK_REPLY: the records here");
                None
            }
        };
        let owner_id = f.id("owner.id", &owner.id);
        let attachment_id = f.id("attachment_id", &request.attachment_id);
        f.finish()?;
        let (owner_id, attachment_id) =
            (owner_id.expect("checked"), attachment_id.expect("checked"));
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        // Another user's task answers NOT_FOUND like a missing one; other failures stay.
        let visible = |result: crate::error::Result<crate::domain::task::Task>| match result {
            Ok(task) => Ok(Some(task)),
            Err(TasksError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        };
        let files = match kind.expect("checked") {
            DocumentKind::Task => visible(self.visible_task(&mut conn, &caller, owner_id).await)?
                .map(|t| t.attachments),
            _ => match store::replies::get(&mut conn, owner_id)
                .await
                .map_err(TasksError::from)?
            {
                Some(reply) => visible(self.visible_task(&mut conn, &caller, reply.task_id).await)?
                    .map(|_| reply.attachments),
                None => None,
            },
        };
        let file = files
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.id == attachment_id)
            .ok_or_else(|| TasksError::not_found("attachment", attachment_id))?;
        Ok(Response::new(download(&self.blobs, file.to_proto()).await?))
    }
}
