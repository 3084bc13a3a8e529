//! Replies (T4): a thread per task, and the replies to every task a creator issued. A reply
//! tells the other party (the responsible, or the creator) in the app.

use crm_platform::{
    auth::Caller,
    files::{new_uploads, parse_attachments},
};
use crm_proto::{common::DocumentKind, events as ev, notifications::NotificationKind, tasks as pb};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Fields, Page, TasksApi, convert, tasks::MAX_DESCRIPTION, tasks::truncate, time_range};
use crate::{
    domain::task::{Reply, Task},
    error::{Result, TasksError},
    opportunities::document_ref,
    store::{self, replies::Cursor},
};

/// Most files on a reply.
const MAX_ATTACHMENTS: usize = 20;

impl TasksApi {
    /// Stores `reply` on `task`, counts it, publishes `TaskReplyAdded` and tells the other
    /// party, in `tx`.
    pub(crate) async fn store_reply(
        &self,
        tx: &mut PgConnection,
        task: &Task,
        reply: &Reply,
        actor: &str,
    ) -> Result<()> {
        store::replies::insert(tx, reply).await?;
        store::tasks::count_reply(tx, task.id, reply.create_time).await?;
        self.events
            .publish(
                tx,
                task.partner_id,
                actor,
                &ev::TaskReplyAdded {
                    reply: Some(convert::reply(reply)),
                    partner_id: task.partner_id.map(|p| p.to_string()).unwrap_or_default(),
                    task_creator: task.creator.clone(),
                },
                reply.create_time,
            )
            .await?;
        // The creator hears of the responsible's replies and the responsible of everyone
        // else's; nobody of their own.
        let responsible = store::staff::get(tx, task.responsible_staff_id).await?;
        let mut recipients: Vec<(String, String, Option<Uuid>)> = Vec::new();
        if let Some(r) = &responsible
            && let Some(user) = &r.user_name
            && user != &reply.author
        {
            recipients.push((user.clone(), r.name.clone(), Some(r.id)));
        }
        if !task.creator.is_empty()
            && task.creator != reply.author
            && !recipients.iter().any(|(u, _, _)| u == &task.creator)
        {
            recipients.push((
                task.creator.clone(),
                task.creator.clone(),
                task.creator_staff_id,
            ));
        }
        for (user, name, staff) in recipients {
            let command = ev::NotificationRequested {
                idempotency_key: format!("reply:{}:{user}", reply.id),
                kind: NotificationKind::TaskReply as i32,
                in_app: true,
                email: false,
                recipient_user: user,
                recipient_email: String::new(),
                recipient_name: name,
                recipient_staff_id: staff.map(|s| s.to_string()).unwrap_or_default(),
                title: format!("Reply on: {}", truncate(&task.title, 180)),
                body_text: truncate(&reply.text, 2000),
                document: Some(document_ref(DocumentKind::Task, task.id)),
                partner_id: task.partner_id.map(|p| p.to_string()).unwrap_or_default(),
                expire_time: None,
            };
            self.events
                .notify(tx, actor, &command, reply.create_time)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn create_reply(
        &self,
        caller: &Caller,
        request: pb::CreateTaskReplyRequest,
    ) -> Result<pb::TaskReply> {
        let mut f = Fields::new();
        let task_id = f.id("task_id", &request.task_id);
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.reply else {
            f.add("reply", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let text = f.text("reply.text", &given.text, MAX_DESCRIPTION, true);
        let attachments = parse_attachments(
            &mut f,
            "reply.attachments",
            &given.attachments,
            MAX_ATTACHMENTS,
            false,
        );
        f.finish()?;
        let new_files = new_uploads(
            &self.uploads,
            &caller.subject,
            "reply.attachments",
            &given.attachments,
            &[],
            self.clock.now(),
        )?;
        let task_id = task_id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let task = self.visible_task(&mut conn, caller, task_id).await?;
        let author_staff_id = self.staff_of_user(&mut conn, &caller.subject).await?;
        drop(conn);
        let now = self.clock.now();
        let reply = Reply {
            id: Uuid::now_v7(),
            task_id,
            task_title: task.title.clone(),
            text: text.expect("checked"),
            attachments: attachments.expect("checked"),
            author: caller.subject.clone(),
            author_staff_id,
            create_time: now,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "task_reply",
                &caller.request_scope(),
                &request_id,
                reply.id,
                now,
            )
            .await?
        {
            let existing = store::replies::get(&mut tx, existing)
                .await?
                .ok_or_else(|| TasksError::not_found("reply", existing))?;
            return Ok(convert::reply(&existing));
        }
        self.store_reply(&mut tx, &task, &reply, &caller.subject)
            .await?;
        if !new_files.is_empty() {
            self.events
                .publish(
                    &mut tx,
                    None,
                    &caller.subject,
                    &ev::FilesAttached {
                        owner: Some(document_ref(DocumentKind::TaskReply, reply.id)),
                        blob_keys: new_files,
                    },
                    now,
                )
                .await?;
        }
        self.events.commit(tx).await?;
        Ok(convert::reply(&reply))
    }

    pub(super) async fn list_replies(
        &self,
        caller: &Caller,
        request: pb::ListTaskRepliesRequest,
    ) -> Result<pb::ListTaskRepliesResponse> {
        let mut f = Fields::new();
        let task_id = f.id("task_id", &request.task_id);
        f.finish()?;
        let task_id = task_id.expect("checked");
        let page = Page::<Cursor>::of(request.page_size, &request.page_token, &task_id)?;
        let mut conn = self.pool.acquire().await?;
        self.visible_task(&mut conn, caller, task_id).await?;
        let mut rows =
            store::replies::of_task(&mut conn, task_id, page.after.as_ref(), page.limit()).await?;
        let next_page_token = page.finish(&mut rows, |r| (r.create_time, r.id));
        Ok(pb::ListTaskRepliesResponse {
            replies: rows.iter().map(convert::reply).collect(),
            next_page_token,
        })
    }

    pub(super) async fn replies_to_my_tasks(
        &self,
        caller: &Caller,
        request: pb::ListRepliesToMyTasksRequest,
    ) -> Result<pb::ListRepliesToMyTasksResponse> {
        let mut f = Fields::new();
        let (from, to) = time_range(&mut f, "period", request.period.as_ref());
        f.finish()?;
        let page = Page::<Cursor>::of(
            request.page_size,
            &request.page_token,
            &(from, to, request.exclude_own),
        )?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::replies::to_tasks_of(
            &mut conn,
            &caller.subject,
            from,
            to,
            request.exclude_own,
            page.after.as_ref(),
            page.limit(),
        )
        .await?;
        let next_page_token = page.finish(&mut rows, |r| (r.create_time, r.id));
        Ok(pb::ListRepliesToMyTasksResponse {
            replies: rows.iter().map(convert::reply).collect(),
            next_page_token,
        })
    }
}
