//! The partners and campaigns this service has heard of, and the stage configuration.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, Row as _, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::domain::{
    catalogue::{Campaign, PartnerCard},
    stages::StageConfig,
};

/// Stores `card` unless a version at least as new is stored; whether it was stored.
pub async fn upsert_partner(
    conn: &mut PgConnection,
    card: &PartnerCard,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let stored = sqlx::query(
        "INSERT INTO partners (id, kind, name, fiscal_code, address_lines, email, phone, \
         archived, source_version, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, \
         fiscal_code = EXCLUDED.fiscal_code, address_lines = EXCLUDED.address_lines, \
         email = EXCLUDED.email, phone = EXCLUDED.phone, archived = EXCLUDED.archived, \
         source_version = EXCLUDED.source_version, update_time = EXCLUDED.update_time \
         WHERE partners.source_version < EXCLUDED.source_version",
    )
    .bind(card.id)
    .bind(&card.kind)
    .bind(&card.name)
    .bind(&card.fiscal_code)
    .bind(&card.address_lines)
    .bind(&card.email)
    .bind(&card.phone)
    .bind(card.archived)
    .bind(card.source_version)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// The partner with `id`, if this service has heard of it.
pub async fn get_partner(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<PartnerCard>> {
    let row = sqlx::query(
        "SELECT id, kind, name, fiscal_code, address_lines, email, phone, archived, \
         source_version FROM partners WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| partner_from_row(&row)).transpose()
}

fn partner_from_row(row: &PgRow) -> sqlx::Result<PartnerCard> {
    Ok(PartnerCard {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        fiscal_code: row.try_get("fiscal_code")?,
        address_lines: row.try_get("address_lines")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        archived: row.try_get("archived")?,
        source_version: row.try_get("source_version")?,
    })
}

/// A campaign's snapshot from marketing's events, with its version.
pub struct CampaignSnapshot<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// Its status name.
    pub status: &'a str,
    /// Its version in marketing.
    pub version: i64,
}

/// Stores a confirmed campaign snapshot unless a newer one is stored.
pub async fn upsert_campaign(
    conn: &mut PgConnection,
    snapshot: &CampaignSnapshot<'_>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let c = snapshot.campaign;
    sqlx::query(
        "INSERT INTO campaigns (id, name, start_date, end_date, status, confirmed, \
         source_version, update_time) VALUES ($1, $2, $3, $4, $5, true, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, start_date = EXCLUDED.start_date, \
         end_date = EXCLUDED.end_date, status = EXCLUDED.status, confirmed = true, \
         source_version = EXCLUDED.source_version, update_time = EXCLUDED.update_time \
         WHERE NOT campaigns.confirmed OR campaigns.source_version < EXCLUDED.source_version",
    )
    .bind(c.id)
    .bind(&c.name)
    .bind(c.start_date)
    .bind(c.end_date)
    .bind(snapshot.status)
    .bind(snapshot.version)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a campaign named by marketing before its event arrived (unconfirmed); nothing when
/// it is known.
pub async fn announce_campaign(
    conn: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO campaigns (id, confirmed, update_time) VALUES ($1, false, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The campaign with `id`, if this service has heard of it.
pub async fn get_campaign(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Campaign>> {
    let row = sqlx::query(
        "SELECT id, name, start_date, end_date, confirmed FROM campaigns WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(Campaign {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            start_date: row.try_get::<Option<NaiveDate>, _>("start_date")?,
            end_date: row.try_get("end_date")?,
            confirmed: row.try_get("confirmed")?,
        })
    })
    .transpose()
}

/// The stage configuration, its last change and version.
pub async fn get_stage_config(
    conn: &mut PgConnection,
    for_update: bool,
) -> sqlx::Result<(StageConfig, DateTime<Utc>, i64)> {
    let sql = if for_update {
        "SELECT config, update_time, version FROM stage_config FOR UPDATE"
    } else {
        "SELECT config, update_time, version FROM stage_config"
    };
    let row = sqlx::query(sql).fetch_one(conn).await?;
    let Json(config): Json<StageConfig> = row.try_get("config")?;
    Ok((config, row.try_get("update_time")?, row.try_get("version")?))
}

/// Stores a new stage configuration at `version`.
pub async fn put_stage_config(
    conn: &mut PgConnection,
    config: &StageConfig,
    at: DateTime<Utc>,
    version: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE stage_config SET config = $1, update_time = $2, version = $3")
        .bind(Json(config))
        .bind(at)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}
