//! `TaskSettingsService`: the company's reminder settings (T8).

use crm_proto::tasks::{self as pb, task_settings_service_server::TaskSettingsService};
use tonic::{Request, Response, Status};

use super::{ADMIN_ONLY, EVERY_ROLE, Fields, TasksApi, caller, check_version, convert};
use crate::{
    domain::reminders::MAX_DAYS_BEFORE,
    error::{Result, TasksError},
    store,
};

/// Fields UpdateReminderSettings may change.
const UPDATABLE: &[&str] = &[
    "send_in_app",
    "send_email",
    "default_days_before",
    "send_at_minute",
];

impl TasksApi {
    async fn update_settings(
        &self,
        request: pb::UpdateReminderSettingsRequest,
    ) -> Result<pb::ReminderSettings> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.settings else {
            f.add("settings", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let has = |p: &str| paths.iter().any(|x| x == p);
        let days = u32::try_from(given.default_days_before)
            .ok()
            .filter(|d| *d <= MAX_DAYS_BEFORE);
        if has("default_days_before") && days.is_none() {
            f.add(
                "settings.default_days_before",
                format!("must be between 0 and {MAX_DAYS_BEFORE}"),
            );
        }
        let minute = u32::try_from(given.send_at_minute)
            .ok()
            .filter(|m| *m < 24 * 60);
        if has("send_at_minute") && minute.is_none() {
            f.add(
                "settings.send_at_minute",
                "must be between 0 and 1439 (minutes after midnight)",
            );
        }
        f.finish()?;
        let mut tx = self.pool.begin().await?;
        let (mut settings, _, current) = store::settings::get(&mut tx).await?;
        check_version("reminder settings", version.expect("checked"), current)?;
        if has("send_in_app") {
            settings.send_in_app = given.send_in_app;
        }
        if has("send_email") {
            settings.send_email = given.send_email;
        }
        if let (true, Some(days)) = (has("default_days_before"), days) {
            settings.default_days_before = days;
        }
        if let (true, Some(minute)) = (has("send_at_minute"), minute) {
            settings.send_at_minute = minute;
        }
        let now = self.clock.now();
        if !store::settings::update(&mut tx, &settings, now, current).await? {
            return Err(TasksError::StaleEtag("reminder settings"));
        }
        tx.commit().await?;
        Ok(convert::reminder_settings(&settings, now, current + 1))
    }
}

#[tonic::async_trait]
impl TaskSettingsService for TasksApi {
    #[tracing::instrument(skip_all)]
    async fn get_reminder_settings(
        &self,
        request: Request<pb::GetReminderSettingsRequest>,
    ) -> Result<Response<pb::ReminderSettings>, Status> {
        caller(&request, EVERY_ROLE)?;
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let (settings, update_time, version) = store::settings::get(&mut conn)
            .await
            .map_err(TasksError::from)?;
        Ok(Response::new(convert::reminder_settings(
            &settings,
            update_time,
            version,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn update_reminder_settings(
        &self,
        request: Request<pb::UpdateReminderSettingsRequest>,
    ) -> Result<Response<pb::ReminderSettings>, Status> {
        caller(&request, ADMIN_ONLY)?;
        Ok(Response::new(
            self.update_settings(request.into_inner()).await?,
        ))
    }
}
