//! Opportunities, their stage history, the pipeline and the loss report.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{NewestFirstCursor, decode_error};
use crate::domain::{
    money::{Currency, Money},
    opportunity::{Cause, Opportunity, StageChange},
    stages::Stage,
};

const COLUMNS: &str = "id, partner_id, campaign_id, title, owner_staff_id, potential_units, \
     currency, probability_percent, expected_signing_date, stage, next_follow_up_date, \
     next_follow_up_note, lost_reason_id, lost_note, description, stage_change_time, close_time, \
     create_time, update_time, creator, updater, version";

/// Inserts a new opportunity.
pub async fn insert(conn: &mut PgConnection, o: &Opportunity) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO opportunities (id, partner_id, campaign_id, title, owner_staff_id, \
         potential_units, currency, probability_percent, expected_signing_date, stage, \
         next_follow_up_date, next_follow_up_note, lost_reason_id, lost_note, description, \
         stage_change_time, close_time, create_time, update_time, creator, updater, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22)",
    )
    .bind(o.id)
    .bind(o.partner_id)
    .bind(o.campaign_id)
    .bind(&o.title)
    .bind(o.owner_staff_id)
    .bind(o.potential.units)
    .bind(o.potential.currency.as_str())
    .bind(o.probability_percent)
    .bind(o.expected_signing_date)
    .bind(o.stage.as_db())
    .bind(o.next_follow_up_date)
    .bind(&o.next_follow_up_note)
    .bind(o.lost_reason_id)
    .bind(&o.lost_note)
    .bind(&o.description)
    .bind(o.stage_change_time)
    .bind(o.close_time)
    .bind(o.create_time)
    .bind(o.update_time)
    .bind(&o.creator)
    .bind(&o.updater)
    .bind(o.version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every changeable field of `o` if the stored version is still `expected_version`;
/// false when someone changed it since. Creation time and creator never change.
pub async fn update(
    conn: &mut PgConnection,
    o: &Opportunity,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE opportunities SET campaign_id = $2, title = $3, owner_staff_id = $4, \
         potential_units = $5, currency = $6, probability_percent = $7, \
         expected_signing_date = $8, stage = $9, next_follow_up_date = $10, \
         next_follow_up_note = $11, lost_reason_id = $12, lost_note = $13, description = $14, \
         stage_change_time = $15, close_time = $16, update_time = $17, updater = $18, \
         version = $19 WHERE id = $1 AND version = $20",
    )
    .bind(o.id)
    .bind(o.campaign_id)
    .bind(&o.title)
    .bind(o.owner_staff_id)
    .bind(o.potential.units)
    .bind(o.potential.currency.as_str())
    .bind(o.probability_percent)
    .bind(o.expected_signing_date)
    .bind(o.stage.as_db())
    .bind(o.next_follow_up_date)
    .bind(&o.next_follow_up_note)
    .bind(o.lost_reason_id)
    .bind(&o.lost_note)
    .bind(&o.description)
    .bind(o.stage_change_time)
    .bind(o.close_time)
    .bind(o.update_time)
    .bind(&o.updater)
    .bind(o.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// The opportunity with `id`, locked for update when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Opportunity>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(COLUMNS);
    query.push(" FROM opportunities WHERE id = ");
    query.push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let row = query.build().fetch_optional(conn).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The filters of ListOpportunities, already validated; `None` means any.
#[derive(Clone, Debug, Default, Hash)]
pub struct Filter {
    /// Partner.
    pub partner_id: Option<Uuid>,
    /// Campaign.
    pub campaign_id: Option<Uuid>,
    /// Owner.
    pub owner_staff_id: Option<Uuid>,
    /// Stages (empty: any).
    pub stages: Vec<&'static str>,
    /// Only open ones.
    pub open_only: bool,
    /// Next follow-up from.
    pub follow_up_from: Option<NaiveDate>,
    /// Next follow-up until (included).
    pub follow_up_to: Option<NaiveDate>,
    /// Expected signing from.
    pub signing_from: Option<NaiveDate>,
    /// Expected signing until (included).
    pub signing_to: Option<NaiveDate>,
    /// Title fragment, LIKE-escaped.
    pub title_contains: Option<String>,
}

/// One page of opportunities matching `filter`, newest first, after `after`; `limit` rows.
/// Only the filters given become conditions, so each query gets a plan for what it asks.
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<Opportunity>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(COLUMNS);
    query.push(" FROM opportunities WHERE true");
    if let Some(id) = filter.partner_id {
        query.push(" AND partner_id = ").push_bind(id);
    }
    if let Some(id) = filter.campaign_id {
        query.push(" AND campaign_id = ").push_bind(id);
    }
    if let Some(id) = filter.owner_staff_id {
        query.push(" AND owner_staff_id = ").push_bind(id);
    }
    if !filter.stages.is_empty() {
        query
            .push(" AND stage = ANY(")
            .push_bind(filter.stages.clone())
            .push(")");
    }
    if filter.open_only {
        query.push(" AND close_time IS NULL");
    }
    if let Some(day) = filter.follow_up_from {
        query.push(" AND next_follow_up_date >= ").push_bind(day);
    }
    if let Some(day) = filter.follow_up_to {
        query.push(" AND next_follow_up_date <= ").push_bind(day);
    }
    if let Some(day) = filter.signing_from {
        query.push(" AND expected_signing_date >= ").push_bind(day);
    }
    if let Some(day) = filter.signing_to {
        query.push(" AND expected_signing_date <= ").push_bind(day);
    }
    if let Some(text) = &filter.title_contains {
        query
            .push(" AND lower(title) LIKE '%' || lower(")
            .push_bind(text.clone())
            .push(") || '%'");
    }
    if let Some((time, id)) = after {
        query
            .push(" AND (create_time, id) < (")
            .push_bind(*time)
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY create_time DESC, id DESC LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &PgRow) -> sqlx::Result<Opportunity> {
    let stage: String = row.try_get("stage")?;
    let currency: String = row.try_get("currency")?;
    Ok(Opportunity {
        id: row.try_get("id")?,
        partner_id: row.try_get("partner_id")?,
        campaign_id: row.try_get("campaign_id")?,
        title: row.try_get("title")?,
        owner_staff_id: row.try_get("owner_staff_id")?,
        potential: Money::new(
            row.try_get("potential_units")?,
            Currency::parse(&currency).map_err(|_| decode_error("currency", &currency))?,
        ),
        probability_percent: row.try_get("probability_percent")?,
        expected_signing_date: row.try_get("expected_signing_date")?,
        stage: Stage::from_db(&stage).ok_or_else(|| decode_error("stage", &stage))?,
        next_follow_up_date: row.try_get("next_follow_up_date")?,
        next_follow_up_note: row.try_get("next_follow_up_note")?,
        lost_reason_id: row.try_get("lost_reason_id")?,
        lost_note: row.try_get("lost_note")?,
        description: row.try_get("description")?,
        stage_change_time: row.try_get("stage_change_time")?,
        close_time: row.try_get("close_time")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        creator: row.try_get("creator")?,
        updater: row.try_get("updater")?,
        version: row.try_get("version")?,
    })
}

/// Records a stage change.
pub async fn insert_stage_change(conn: &mut PgConnection, c: &StageChange) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO stage_changes (id, opportunity_id, stage, previous_stage, change_time, \
         delegate_staff_id, follow_up_date, follow_up_note, allocated_units, allocated_currency, \
         changed_by, lost_reason_id, lost_note, follow_up_task_id, cause_kind, cause_id, \
         cause_number, reopen_note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(c.id)
    .bind(c.opportunity_id)
    .bind(c.stage.as_db())
    .bind(c.previous_stage.map(Stage::as_db))
    .bind(c.change_time)
    .bind(c.delegate_staff_id)
    .bind(c.follow_up_date)
    .bind(&c.follow_up_note)
    .bind(c.allocated.as_ref().map(|m| m.units))
    .bind(c.allocated.as_ref().map(|m| m.currency.as_str()))
    .bind(&c.changed_by)
    .bind(c.lost_reason_id)
    .bind(&c.lost_note)
    .bind(c.follow_up_task_id)
    .bind(c.cause.as_ref().map(|c| c.kind))
    .bind(c.cause.as_ref().map(|c| c.id))
    .bind(c.cause.as_ref().map(|c| c.number.as_str()))
    .bind(&c.reopen_note)
    .execute(conn)
    .await?;
    Ok(())
}

const STAGE_CHANGE_COLUMNS: &str = "id, opportunity_id, stage, previous_stage, change_time, \
     delegate_staff_id, follow_up_date, follow_up_note, allocated_units, allocated_currency, \
     changed_by, lost_reason_id, lost_note, follow_up_task_id, cause_kind, cause_id, \
     cause_number, reopen_note";

/// One page of the stage changes of `opportunity_id`, oldest first, after `after`.
pub async fn list_stage_changes(
    conn: &mut PgConnection,
    opportunity_id: Uuid,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<StageChange>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(STAGE_CHANGE_COLUMNS);
    query
        .push(" FROM stage_changes WHERE opportunity_id = ")
        .push_bind(opportunity_id);
    if let Some((time, id)) = after {
        query
            .push(" AND (change_time, id) > (")
            .push_bind(*time)
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY change_time, id LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(conn).await?;
    rows.iter().map(stage_change_from_row).collect()
}

/// The stage change with `id`.
pub async fn get_stage_change(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<StageChange>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(STAGE_CHANGE_COLUMNS);
    query.push(" FROM stage_changes WHERE id = ").push_bind(id);
    let row = query.build().fetch_optional(conn).await?;
    row.map(|row| stage_change_from_row(&row)).transpose()
}

fn stage_change_from_row(row: &PgRow) -> sqlx::Result<StageChange> {
    let stage: String = row.try_get("stage")?;
    let previous: Option<String> = row.try_get("previous_stage")?;
    let allocated_units: Option<i64> = row.try_get("allocated_units")?;
    let allocated_currency: Option<String> = row.try_get("allocated_currency")?;
    let cause_kind: Option<String> = row.try_get("cause_kind")?;
    let cause_id: Option<Uuid> = row.try_get("cause_id")?;
    let cause_number: Option<String> = row.try_get("cause_number")?;
    Ok(StageChange {
        id: row.try_get("id")?,
        opportunity_id: row.try_get("opportunity_id")?,
        stage: Stage::from_db(&stage).ok_or_else(|| decode_error("stage", &stage))?,
        previous_stage: match previous {
            Some(p) => Some(Stage::from_db(&p).ok_or_else(|| decode_error("stage", &p))?),
            None => None,
        },
        change_time: row.try_get("change_time")?,
        delegate_staff_id: row.try_get("delegate_staff_id")?,
        follow_up_date: row.try_get("follow_up_date")?,
        follow_up_note: row.try_get("follow_up_note")?,
        allocated: match (allocated_units, allocated_currency) {
            (Some(units), Some(currency)) => Some(Money::new(
                units,
                Currency::parse(&currency).map_err(|_| decode_error("currency", &currency))?,
            )),
            _ => None,
        },
        changed_by: row.try_get("changed_by")?,
        lost_reason_id: row.try_get("lost_reason_id")?,
        lost_note: row.try_get("lost_note")?,
        follow_up_task_id: row.try_get("follow_up_task_id")?,
        cause: match (cause_kind.as_deref(), cause_id) {
            (Some("contract"), Some(id)) => Some(Cause {
                kind: "contract",
                id,
                number: cause_number.unwrap_or_default(),
            }),
            (Some("invoice"), Some(id)) => Some(Cause {
                kind: "invoice",
                id,
                number: cause_number.unwrap_or_default(),
            }),
            _ => None,
        },
        reopen_note: row.try_get("reopen_note")?,
    })
}

/// Records the follow-up task tasks created for a stage change; false when the stage change is
/// unknown.
pub async fn set_follow_up_task(
    conn: &mut PgConnection,
    stage_change_id: Uuid,
    task_id: Uuid,
) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE stage_changes SET follow_up_task_id = $2 WHERE id = $1")
        .bind(stage_change_id)
        .bind(task_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(updated == 1)
}

/// Whether a signed (or later terminated) contract or an issued invoice is linked to the
/// opportunity: what allows SALE by hand.
pub async fn has_sale_document(
    conn: &mut PgConnection,
    opportunity_id: Uuid,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM contracts WHERE opportunity_id = $1 \
                        AND status IN ('signed', 'terminated')) \
             OR EXISTS (SELECT 1 FROM invoices WHERE opportunity_id = $1 AND status = 'issued')",
    )
    .bind(opportunity_id)
    .fetch_one(conn)
    .await
}

/// The last open stage the opportunity was in, from its history.
pub async fn last_open_stage(
    conn: &mut PgConnection,
    opportunity_id: Uuid,
) -> sqlx::Result<Option<Stage>> {
    let stage: Option<String> = sqlx::query_scalar(
        "SELECT stage FROM stage_changes WHERE opportunity_id = $1 \
         AND stage NOT IN ('sale', 'lost') ORDER BY change_time DESC, id DESC LIMIT 1",
    )
    .bind(opportunity_id)
    .fetch_optional(conn)
    .await?;
    Ok(stage.as_deref().and_then(Stage::from_db))
}

/// Filters and grouping of the pipeline.
#[derive(Clone, Debug, Default)]
pub struct PipelineQuery {
    /// Group by owner.
    pub by_owner: bool,
    /// Group by campaign.
    pub by_campaign: bool,
    /// Only this owner.
    pub owner_staff_id: Option<Uuid>,
    /// Only this campaign.
    pub campaign_id: Option<Uuid>,
    /// Expected signing from.
    pub signing_from: Option<NaiveDate>,
    /// Expected signing until (included).
    pub signing_to: Option<NaiveDate>,
    /// Closed stages too.
    pub include_closed: bool,
}

/// One group of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineGroup {
    /// Stage.
    pub stage: Stage,
    /// Owner, when grouped by owner.
    pub owner_staff_id: Option<Uuid>,
    /// Campaign, when grouped by campaign.
    pub campaign_id: Option<Uuid>,
    /// Currency.
    pub currency: Currency,
    /// Opportunities.
    pub count: i64,
    /// Sum of potential values.
    pub potential: i64,
    /// Sum of each opportunity's rounded weighted value.
    pub weighted: i64,
}

/// Sums the pipeline per stage (owner, campaign) and currency; `probabilities` is the default
/// probability of each stage. The weighted value of each opportunity is rounded half away from
/// zero as in [`crate::domain::stages::weighted_value`] (values are never negative, so adding
/// 50 before the integer division is that rounding).
pub async fn pipeline(
    conn: &mut PgConnection,
    q: &PipelineQuery,
    probabilities: &[(Stage, i32)],
) -> sqlx::Result<Vec<PipelineGroup>> {
    let stages: Vec<&str> = probabilities.iter().map(|(s, _)| s.as_db()).collect();
    let percents: Vec<i32> = probabilities.iter().map(|(_, p)| *p).collect();
    let mut query = QueryBuilder::<Postgres>::new("SELECT o.stage, ");
    query.push(if q.by_owner {
        "o.owner_staff_id"
    } else {
        "NULL::uuid"
    });
    query.push(" AS owner, ");
    query.push(if q.by_campaign {
        "o.campaign_id"
    } else {
        "NULL::uuid"
    });
    query.push(
        " AS campaign, o.currency, count(*) AS count, \
         sum(o.potential_units)::bigint AS potential, \
         sum((o.potential_units * COALESCE(o.probability_percent, p.probability) + 50) / 100)::bigint \
         AS weighted \
         FROM opportunities o JOIN unnest(",
    );
    query
        .push_bind(stages)
        .push("::text[], ")
        .push_bind(percents)
        .push("::int[]) AS p(stage, probability) ON p.stage = o.stage WHERE ");
    query.push(if q.include_closed {
        "true"
    } else {
        "o.close_time IS NULL"
    });
    if let Some(id) = q.owner_staff_id {
        query.push(" AND o.owner_staff_id = ").push_bind(id);
    }
    if let Some(id) = q.campaign_id {
        query.push(" AND o.campaign_id = ").push_bind(id);
    }
    if let Some(day) = q.signing_from {
        query
            .push(" AND o.expected_signing_date >= ")
            .push_bind(day);
    }
    if let Some(day) = q.signing_to {
        query
            .push(" AND o.expected_signing_date <= ")
            .push_bind(day);
    }
    query.push(" GROUP BY 1, 2, 3, 4");
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let stage: String = row.try_get("stage")?;
            let currency: String = row.try_get("currency")?;
            Ok(PipelineGroup {
                stage: Stage::from_db(&stage).ok_or_else(|| decode_error("stage", &stage))?,
                owner_staff_id: row.try_get("owner")?,
                campaign_id: row.try_get("campaign")?,
                currency: Currency::parse(&currency)
                    .map_err(|_| decode_error("currency", &currency))?,
                count: row.try_get("count")?,
                potential: row.try_get("potential")?,
                weighted: row.try_get("weighted")?,
            })
        })
        .collect()
}

/// Filters and grouping of the loss report.
#[derive(Clone, Debug)]
pub struct LossQuery {
    /// Lost at or after.
    pub from: DateTime<Utc>,
    /// Lost before.
    pub until: DateTime<Utc>,
    /// Only this campaign.
    pub campaign_id: Option<Uuid>,
    /// Only this owner.
    pub owner_staff_id: Option<Uuid>,
    /// Group by owner.
    pub by_owner: bool,
    /// Group by campaign.
    pub by_campaign: bool,
}

/// One group of lost opportunities of one currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossGroup {
    /// The reason.
    pub lost_reason_id: Uuid,
    /// Its name.
    pub lost_reason_name: String,
    /// Owner, when grouped.
    pub owner_staff_id: Option<Uuid>,
    /// Campaign, when grouped.
    pub campaign_id: Option<Uuid>,
    /// Currency.
    pub currency: Currency,
    /// Opportunities.
    pub count: i64,
    /// Sum of their potential values.
    pub potential: i64,
}

/// The lost opportunities of a period, grouped by reason (owner, campaign) and currency.
pub async fn losses(conn: &mut PgConnection, q: &LossQuery) -> sqlx::Result<Vec<LossGroup>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT o.lost_reason_id, r.name, ");
    query.push(if q.by_owner {
        "o.owner_staff_id"
    } else {
        "NULL::uuid"
    });
    query.push(" AS owner, ");
    query.push(if q.by_campaign {
        "o.campaign_id"
    } else {
        "NULL::uuid"
    });
    query.push(
        " AS campaign, o.currency, count(*) AS count, sum(o.potential_units)::bigint AS potential \
         FROM opportunities o JOIN lost_reasons r ON r.id = o.lost_reason_id \
         WHERE o.stage = 'lost' AND o.close_time >= ",
    );
    query
        .push_bind(q.from)
        .push(" AND o.close_time < ")
        .push_bind(q.until);
    if let Some(id) = q.owner_staff_id {
        query.push(" AND o.owner_staff_id = ").push_bind(id);
    }
    if let Some(id) = q.campaign_id {
        query.push(" AND o.campaign_id = ").push_bind(id);
    }
    query.push(" GROUP BY 1, 2, 3, 4, 5");
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let currency: String = row.try_get("currency")?;
            Ok(LossGroup {
                lost_reason_id: row.try_get("lost_reason_id")?,
                lost_reason_name: row.try_get("name")?,
                owner_staff_id: row.try_get("owner")?,
                campaign_id: row.try_get("campaign")?,
                currency: Currency::parse(&currency)
                    .map_err(|_| decode_error("currency", &currency))?,
                count: row.try_get("count")?,
                potential: row.try_get("potential")?,
            })
        })
        .collect()
}
