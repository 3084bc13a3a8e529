//! SQL for the marketing schema. Every query is a literal with bound parameters; the pool's
//! `search_path` is the service's own schema.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use crate::domain::{
    partner::{Contact, Kind, Partner, PartnerDraft, Site, State},
    values::{CountryCode, Email, FiscalCode, NonNegativeMoney},
};

/// Filters of `ListPartners` (M2), already validated; `None` means "any". Text is compared
/// case-insensitively by the database.
#[derive(Clone, Debug, Default, Hash)]
pub struct PartnerFilter {
    /// Name prefix, LIKE-escaped.
    pub name_prefix: Option<String>,
    /// Name fragment, LIKE-escaped.
    pub name_contains: Option<String>,
    /// Fiscal code without prefix.
    pub fiscal_code: Option<String>,
    /// City, compared case-insensitively.
    pub city: Option<String>,
    /// County, compared case-insensitively.
    pub county: Option<String>,
    /// Currency of the turnover bounds.
    pub turnover_currency: Option<String>,
    /// Turnover at least.
    pub turnover_min: Option<i64>,
    /// Turnover at most.
    pub turnover_max: Option<i64>,
    /// Employees at least.
    pub employees_min: Option<i64>,
    /// Employees at most.
    pub employees_max: Option<i64>,
    /// Activity domain, compared case-insensitively.
    pub activity_domain: Option<String>,
    /// Kind.
    pub kind: Option<&'static str>,
    /// Include archived partners.
    pub show_archived: bool,
}

/// The keyset position after the last partner of a page: (lower-cased name, id).
pub type PartnerCursor = (String, Uuid);

/// Where an email address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailOwner {
    /// A site's address.
    Site(Uuid),
    /// A contact person's address.
    Contact(Uuid),
}

/// The outcome of claiming a create request id.
pub enum RequestClaim {
    /// New request id: go on and create.
    New,
    /// Already used by this user: the partner created then.
    Existing(Uuid),
}

/// Records that `creator` used `request_id` for `partner_id`, or returns the partner created the
/// first time. A concurrent twin waits on the primary key until the first commits.
pub async fn claim_create_request(
    conn: &mut PgConnection,
    creator: &str,
    request_id: &str,
    partner_id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<RequestClaim> {
    let inserted = sqlx::query(
        "INSERT INTO partner_create_requests (creator, request_id, partner_id, create_time) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (creator, request_id) DO NOTHING",
    )
    .bind(creator)
    .bind(request_id)
    .bind(partner_id)
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(RequestClaim::New);
    }
    let existing: Uuid = sqlx::query_scalar(
        "SELECT partner_id FROM partner_create_requests WHERE creator = $1 AND request_id = $2",
    )
    .bind(creator)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(RequestClaim::Existing(existing))
}

/// Binds `$1`..`$20` of the partner statements below, which share this order: id, the client's
/// fields, state, convert time, update time, updater, version.
fn bind_partner<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    p: &'q Partner,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let d = &p.draft;
    query
        .bind(p.id)
        .bind(d.kind.as_str())
        .bind(&d.name)
        .bind(d.fiscal_code.as_ref().map_or("", FiscalCode::as_str))
        .bind(&d.city)
        .bind(&d.county)
        .bind(d.country.as_str())
        .bind(d.annual_turnover.as_ref().map(|m| m.units))
        .bind(d.annual_turnover.as_ref().map(|m| m.currency.as_str()))
        .bind(d.employee_count)
        .bind(&d.activity_domain)
        .bind(&d.activities_of_interest)
        .bind(&d.competitor_ids)
        .bind(uuid_text(d.sales_rep_staff_id))
        .bind(uuid_text(d.service_rep_staff_id))
        .bind(p.state.as_str())
        .bind(p.convert_time)
        .bind(p.update_time)
        .bind(&p.updater)
        .bind(p.version)
}

/// Inserts a new partner with its sites and contacts (ids already assigned).
pub async fn insert_partner(conn: &mut PgConnection, p: &Partner) -> sqlx::Result<()> {
    let query = sqlx::query(
        "INSERT INTO partners (id, kind, name, fiscal_code, city, county, country, \
         turnover_units, turnover_currency, employee_count, activity_domain, \
         activities_of_interest, competitor_ids, sales_rep_staff_id, service_rep_staff_id, \
         state, convert_time, update_time, updater, version, create_time, creator) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22)",
    );
    bind_partner(query, p)
        .bind(p.create_time)
        .bind(&p.creator)
        .execute(&mut *conn)
        .await?;
    upsert_sites_and_contacts(conn, p).await
}

/// Writes every field of `p` over the stored partner if its version is still
/// `expected_version`; returns false when someone changed it since (stale etag). Creation time
/// and creator never change.
pub async fn update_partner(
    conn: &mut PgConnection,
    p: &Partner,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let query = sqlx::query(
        "UPDATE partners SET kind = $2, name = $3, fiscal_code = $4, city = $5, county = $6, \
         country = $7, turnover_units = $8, turnover_currency = $9, employee_count = $10, \
         activity_domain = $11, activities_of_interest = $12, competitor_ids = $13, \
         sales_rep_staff_id = $14, service_rep_staff_id = $15, state = $16, convert_time = $17, \
         update_time = $18, updater = $19, version = $20 \
         WHERE id = $1 AND version = $21",
    );
    let updated = bind_partner(query, p)
        .bind(expected_version)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    delete_missing_sites_and_contacts(conn, p).await?;
    upsert_sites_and_contacts(conn, p).await?;
    Ok(true)
}

/// Removes the stored sites and contacts of `p` that its lists no longer hold.
async fn delete_missing_sites_and_contacts(
    conn: &mut PgConnection,
    p: &Partner,
) -> sqlx::Result<()> {
    let site_ids: Vec<Uuid> = p.draft.sites.iter().filter_map(|s| s.id).collect();
    let contact_ids: Vec<Uuid> = p.draft.contacts.iter().filter_map(|c| c.id).collect();
    sqlx::query("DELETE FROM partner_contacts WHERE partner_id = $1 AND NOT (id = ANY($2))")
        .bind(p.id)
        .bind(&contact_ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM partner_sites WHERE partner_id = $1 AND NOT (id = ANY($2))")
        .bind(p.id)
        .bind(&site_ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores the sites and contacts of `p` in list order: updates the known ones, inserts the new.
async fn upsert_sites_and_contacts(conn: &mut PgConnection, p: &Partner) -> sqlx::Result<()> {
    for (position, site) in p.draft.sites.iter().enumerate() {
        sqlx::query(
            "INSERT INTO partner_sites (id, partner_id, position, label, address, city, county, \
             country, email, phone, head_office) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, \
             label = EXCLUDED.label, address = EXCLUDED.address, city = EXCLUDED.city, \
             county = EXCLUDED.county, country = EXCLUDED.country, email = EXCLUDED.email, \
             phone = EXCLUDED.phone, head_office = EXCLUDED.head_office",
        )
        .bind(site.id.expect("sites are given ids before they are stored"))
        .bind(p.id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&site.label)
        .bind(&site.address)
        .bind(&site.city)
        .bind(&site.county)
        .bind(site.country.as_str())
        .bind(site.email.as_ref().map_or("", Email::as_str))
        .bind(&site.phone)
        .bind(site.head_office)
        .execute(&mut *conn)
        .await?;
    }
    for (position, contact) in p.draft.contacts.iter().enumerate() {
        sqlx::query(
            "INSERT INTO partner_contacts (id, partner_id, position, name, role, email, phone, \
             site_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, \
             name = EXCLUDED.name, role = EXCLUDED.role, email = EXCLUDED.email, \
             phone = EXCLUDED.phone, site_id = EXCLUDED.site_id",
        )
        .bind(
            contact
                .id
                .expect("contacts are given ids before they are stored"),
        )
        .bind(p.id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&contact.name)
        .bind(&contact.role)
        .bind(contact.email.as_ref().map_or("", Email::as_str))
        .bind(&contact.phone)
        .bind(contact.site_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The partner with `id`, locked for update when `for_update` (inside a transaction).
pub async fn get_partner(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Partner>> {
    let row = if for_update {
        sqlx::query(
            "SELECT id, kind, name, fiscal_code, city, county, country, turnover_units, \
             turnover_currency, employee_count, activity_domain, activities_of_interest, \
             competitor_ids, sales_rep_staff_id, service_rep_staff_id, state, convert_time, \
             create_time, update_time, creator, updater, version \
             FROM partners WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    } else {
        sqlx::query(
            "SELECT id, kind, name, fiscal_code, city, county, country, turnover_units, \
             turnover_currency, employee_count, activity_domain, activities_of_interest, \
             competitor_ids, sales_rep_staff_id, service_rep_staff_id, state, convert_time, \
             create_time, update_time, creator, updater, version \
             FROM partners WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    };
    let Some(row) = row else { return Ok(None) };
    let mut partners = vec![partner_from_row(&row)?];
    attach_sites_and_contacts(conn, &mut partners).await?;
    Ok(partners.pop())
}

/// Loads the partners with `ids` (any order; missing ids are skipped).
pub async fn get_partners(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Partner>> {
    let rows = sqlx::query(
        "SELECT id, kind, name, fiscal_code, city, county, country, turnover_units, \
         turnover_currency, employee_count, activity_domain, activities_of_interest, \
         competitor_ids, sales_rep_staff_id, service_rep_staff_id, state, convert_time, \
         create_time, update_time, creator, updater, version \
         FROM partners WHERE id = ANY($1) ORDER BY lower(name), id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut partners = rows
        .iter()
        .map(partner_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    attach_sites_and_contacts(conn, &mut partners).await?;
    Ok(partners)
}

/// The ids among `ids` that are not partners of kind competitor.
pub async fn non_competitors(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    let competitors: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM partners WHERE id = ANY($1) AND kind = 'competitor'")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !competitors.contains(id))
        .collect())
}

/// One page of partners matching `filter`, after `after`, in (lower(name), id) order; fetches
/// `limit` rows. Each comes with its position in that order, to resume after it: the
/// database's own `lower(name)`, which may differ from Rust's lower-casing (locales).
///
/// Only the filters given become conditions (bound parameters, never formatted values): a
/// generic `$n IS NULL OR …` statement gets one plan for every combination, which scans and
/// sorts; this way each shape of request gets a plan for what it asks, and the indexes of
/// migration 0003 serve each filter with the list order, so a page is an index range read.
pub async fn list_partners(
    pool: &PgPool,
    filter: &PartnerFilter,
    after: Option<&PartnerCursor>,
    limit: i64,
) -> sqlx::Result<Vec<(Partner, PartnerCursor)>> {
    let mut conn = pool.acquire().await?;
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT id, kind, name, fiscal_code, city, county, country, turnover_units, \
         turnover_currency, employee_count, activity_domain, activities_of_interest, \
         competitor_ids, sales_rep_staff_id, service_rep_staff_id, state, convert_time, \
         create_time, update_time, creator, updater, version, lower(name) AS sort_name \
         FROM partners WHERE ",
    );
    query.push(if filter.show_archived {
        "true"
    } else {
        "state = 'active'"
    });
    if let Some(prefix) = &filter.name_prefix {
        query
            .push(" AND lower(name) LIKE lower(")
            .push_bind(prefix.clone())
            .push(") || '%'");
    }
    if let Some(fragment) = &filter.name_contains {
        query
            .push(" AND lower(name) LIKE '%' || lower(")
            .push_bind(fragment.clone())
            .push(") || '%'");
    }
    if let Some(code) = &filter.fiscal_code {
        query.push(" AND fiscal_code = ").push_bind(code.clone());
    }
    if let Some(city) = &filter.city {
        query
            .push(" AND lower(city) = lower(")
            .push_bind(city.clone())
            .push(")");
    }
    if let Some(county) = &filter.county {
        query
            .push(" AND lower(county) = lower(")
            .push_bind(county.clone())
            .push(")");
    }
    if let Some(currency) = &filter.turnover_currency {
        query
            .push(" AND turnover_currency = ")
            .push_bind(currency.clone());
    }
    if let Some(min) = filter.turnover_min {
        query.push(" AND turnover_units >= ").push_bind(min);
    }
    if let Some(max) = filter.turnover_max {
        query.push(" AND turnover_units <= ").push_bind(max);
    }
    if let Some(min) = filter.employees_min {
        query.push(" AND employee_count >= ").push_bind(min);
    }
    if let Some(max) = filter.employees_max {
        query.push(" AND employee_count <= ").push_bind(max);
    }
    if let Some(domain) = &filter.activity_domain {
        query
            .push(" AND lower(activity_domain) = lower(")
            .push_bind(domain.clone())
            .push(")");
    }
    if let Some(kind) = filter.kind {
        query.push(" AND kind = ").push_bind(kind);
    }
    if let Some((name, id)) = after {
        query
            .push(" AND (lower(name), id) > (")
            .push_bind(name.clone())
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY lower(name), id LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut partners = rows
        .iter()
        .map(partner_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    attach_sites_and_contacts(&mut conn, &mut partners).await?;
    partners
        .into_iter()
        .zip(&rows)
        .map(|(partner, row)| {
            let cursor = (row.try_get("sort_name")?, partner.id);
            Ok((partner, cursor))
        })
        .collect()
}

/// Every site and contact person whose email is `email`, compared case-insensitively.
pub async fn find_email_owners(
    pool: &PgPool,
    email: &str,
) -> sqlx::Result<Vec<(Uuid, EmailOwner)>> {
    let rows = sqlx::query(
        "SELECT partner_id, 'site' AS owner, id FROM partner_sites WHERE lower(email) = lower($1) \
         UNION ALL \
         SELECT partner_id, 'contact' AS owner, id FROM partner_contacts \
         WHERE lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let owner: String = row.try_get("owner")?;
            let id: Uuid = row.try_get("id")?;
            Ok((
                row.try_get("partner_id")?,
                if owner == "site" {
                    EmailOwner::Site(id)
                } else {
                    EmailOwner::Contact(id)
                },
            ))
        })
        .collect()
}

async fn attach_sites_and_contacts(
    conn: &mut PgConnection,
    partners: &mut [Partner],
) -> sqlx::Result<()> {
    if partners.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = partners.iter().map(|p| p.id).collect();
    let index: std::collections::HashMap<Uuid, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let sites = sqlx::query(
        "SELECT id, partner_id, label, address, city, county, country, email, phone, head_office \
         FROM partner_sites WHERE partner_id = ANY($1) ORDER BY partner_id, position",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in &sites {
        let partner_id: Uuid = row.try_get("partner_id")?;
        let site = Site {
            id: Some(row.try_get("id")?),
            label: row.try_get("label")?,
            address: row.try_get("address")?,
            city: row.try_get("city")?,
            county: row.try_get("county")?,
            country: stored(CountryCode::parse_or(row.try_get("country")?, "RO"))?,
            email: stored_email(row.try_get("email")?)?,
            phone: row.try_get("phone")?,
            head_office: row.try_get("head_office")?,
        };
        if let Some(&i) = index.get(&partner_id) {
            partners[i].draft.sites.push(site);
        }
    }
    let contacts = sqlx::query(
        "SELECT id, partner_id, name, role, email, phone, site_id \
         FROM partner_contacts WHERE partner_id = ANY($1) ORDER BY partner_id, position",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in &contacts {
        let partner_id: Uuid = row.try_get("partner_id")?;
        let contact = Contact {
            id: Some(row.try_get("id")?),
            name: row.try_get("name")?,
            role: row.try_get("role")?,
            email: stored_email(row.try_get("email")?)?,
            phone: row.try_get("phone")?,
            site_id: row.try_get("site_id")?,
        };
        if let Some(&i) = index.get(&partner_id) {
            partners[i].draft.contacts.push(contact);
        }
    }
    Ok(())
}

fn partner_from_row(row: &PgRow) -> sqlx::Result<Partner> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let country: String = row.try_get("country")?;
    let fiscal_code: String = row.try_get("fiscal_code")?;
    let turnover_units: Option<i64> = row.try_get("turnover_units")?;
    let turnover_currency: Option<String> = row.try_get("turnover_currency")?;
    let sales_rep: String = row.try_get("sales_rep_staff_id")?;
    let service_rep: String = row.try_get("service_rep_staff_id")?;
    Ok(Partner {
        id: row.try_get("id")?,
        draft: PartnerDraft {
            kind: Kind::from_db(&kind).ok_or_else(|| decode_error("kind", &kind))?,
            name: row.try_get("name")?,
            fiscal_code: if fiscal_code.is_empty() {
                None
            } else {
                Some(stored(FiscalCode::parse(&fiscal_code, &country))?)
            },
            city: row.try_get("city")?,
            county: row.try_get("county")?,
            annual_turnover: match (turnover_units, turnover_currency) {
                (Some(units), Some(currency)) => {
                    Some(stored(NonNegativeMoney::parse(units, &currency))?)
                }
                _ => None,
            },
            country: stored(CountryCode::parse_or(&country, "RO"))?,
            employee_count: row.try_get("employee_count")?,
            activity_domain: row.try_get("activity_domain")?,
            activities_of_interest: row.try_get("activities_of_interest")?,
            competitor_ids: row.try_get("competitor_ids")?,
            sales_rep_staff_id: Uuid::parse_str(&sales_rep).ok(),
            service_rep_staff_id: Uuid::parse_str(&service_rep).ok(),
            sites: Vec::new(),
            contacts: Vec::new(),
        },
        state: State::from_db(&state).ok_or_else(|| decode_error("state", &state))?,
        convert_time: row.try_get("convert_time")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        creator: row.try_get("creator")?,
        updater: row.try_get("updater")?,
        version: row.try_get("version")?,
    })
}

fn uuid_text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

fn stored_email(raw: String) -> sqlx::Result<Option<Email>> {
    if raw.is_empty() {
        Ok(None)
    } else {
        stored(Email::parse(&raw)).map(Some)
    }
}

/// A stored value that no longer parses means the database was changed behind the service.
fn stored<T>(result: Result<T, String>) -> sqlx::Result<T> {
    result.map_err(|reason| sqlx::Error::Decode(reason.into()))
}

fn decode_error(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}
