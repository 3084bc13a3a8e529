//! Staff and their categories (T1).

use sqlx::{PgConnection, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use crate::domain::{
    availability::WorkSchedule,
    staff::{Staff, StaffCategory},
};

const STAFF_COLUMNS: &str = "s.id, s.name, s.email, s.user_name, s.available_minutes_per_day, \
     s.work_start_minute, s.work_end_minute, s.working_weekdays, s.phone, s.active, \
     s.create_time, s.update_time, s.version, \
     ARRAY(SELECT m.category_id FROM staff_category_members m WHERE m.staff_id = s.id \
           ORDER BY m.category_id) AS category_ids";

fn minutes(row: &PgRow, column: &str) -> sqlx::Result<u32> {
    let value: i32 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| super::decode_error(column, value))
}

fn staff_of(row: &PgRow) -> sqlx::Result<Staff> {
    let weekdays: Vec<i32> = row.try_get("working_weekdays")?;
    Ok(Staff {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        user_name: row.try_get("user_name")?,
        category_ids: row.try_get("category_ids")?,
        schedule: WorkSchedule {
            available_minutes_per_day: minutes(row, "available_minutes_per_day")?,
            work_start_minute: minutes(row, "work_start_minute")?,
            work_end_minute: minutes(row, "work_end_minute")?,
            working_weekdays: weekdays
                .into_iter()
                .filter_map(|d| u32::try_from(d).ok())
                .collect(),
            active: row.try_get("active")?,
        },
        phone: row.try_get("phone")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}

fn weekdays(s: &Staff) -> Vec<i32> {
    s.schedule
        .working_weekdays
        .iter()
        .filter_map(|d| i32::try_from(*d).ok())
        .collect()
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Inserts a staff member and their category memberships. `Ok(false)` when the user name is
/// taken.
pub async fn insert(conn: &mut PgConnection, s: &Staff) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO staff (id, name, email, user_name, available_minutes_per_day, \
         work_start_minute, work_end_minute, working_weekdays, phone, active, create_time, \
         update_time, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (user_name) DO NOTHING",
    )
    .bind(s.id)
    .bind(&s.name)
    .bind(&s.email)
    .bind(&s.user_name)
    .bind(to_i32(s.schedule.available_minutes_per_day))
    .bind(to_i32(s.schedule.work_start_minute))
    .bind(to_i32(s.schedule.work_end_minute))
    .bind(weekdays(s))
    .bind(&s.phone)
    .bind(s.schedule.active)
    .bind(s.create_time)
    .bind(s.update_time)
    .bind(s.version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    set_categories(conn, s.id, &s.category_ids).await?;
    Ok(true)
}

async fn set_categories(
    conn: &mut PgConnection,
    staff_id: Uuid,
    categories: &[Uuid],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM staff_category_members WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO staff_category_members (category_id, staff_id) \
         SELECT c, $1 FROM unnest($2::uuid[]) AS c",
    )
    .bind(staff_id)
    .bind(categories)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces a staff member whose version is still `expected_version`. `Ok(false)` when it
/// changed since; a taken user name is the unique violation `staff_user_name_key`.
pub async fn update(
    conn: &mut PgConnection,
    s: &Staff,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE staff SET name = $2, email = $3, user_name = $4, available_minutes_per_day = $5, \
         work_start_minute = $6, work_end_minute = $7, working_weekdays = $8, phone = $9, \
         active = $10, update_time = $11, version = $12 WHERE id = $1 AND version = $13",
    )
    .bind(s.id)
    .bind(&s.name)
    .bind(&s.email)
    .bind(&s.user_name)
    .bind(to_i32(s.schedule.available_minutes_per_day))
    .bind(to_i32(s.schedule.work_start_minute))
    .bind(to_i32(s.schedule.work_end_minute))
    .bind(weekdays(s))
    .bind(&s.phone)
    .bind(s.schedule.active)
    .bind(s.update_time)
    .bind(s.version)
    .bind(expected_version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    set_categories(conn, s.id, &s.category_ids).await?;
    Ok(true)
}

/// Whether `err` is the user name's unique violation.
pub fn is_user_name_taken(err: &sqlx::Error) -> bool {
    super::is_unique_violation(err, "staff_user_name_key")
}

/// One staff member.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Staff>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {STAFF_COLUMNS} FROM staff s WHERE s.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| staff_of(&row))
    .transpose()
}

/// Several staff members, in no particular order; missing ids are left out.
pub async fn get_many(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Staff>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {STAFF_COLUMNS} FROM staff s WHERE s.id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(conn)
    .await?
    .iter()
    .map(staff_of)
    .collect()
}

/// The staff member a user logs in as.
pub async fn by_user_name(conn: &mut PgConnection, user: &str) -> sqlx::Result<Option<Staff>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {STAFF_COLUMNS} FROM staff s WHERE s.user_name = $1"
    )))
    .bind(user)
    .fetch_optional(conn)
    .await?
    .map(|row| staff_of(&row))
    .transpose()
}

/// The id of the staff member a user logs in as (the cheap lookup of every call).
pub async fn id_of_user(conn: &mut PgConnection, user: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM staff WHERE user_name = $1")
        .bind(user)
        .fetch_optional(conn)
        .await
}

/// Filters of ListStaff.
#[derive(Clone, Debug, Default, Hash)]
pub struct StaffFilter {
    /// Members of this category.
    pub category_id: Option<Uuid>,
    /// Name contains (already a LIKE pattern, lower case).
    pub name_like: Option<String>,
    /// Exact email, case-insensitive.
    pub email: Option<String>,
    /// Exact user name.
    pub user_name: Option<String>,
    /// Inactive too.
    pub include_inactive: bool,
}

/// A page of staff by lower(name), id after `after`.
pub async fn list(
    conn: &mut PgConnection,
    filter: &StaffFilter,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<Staff>> {
    let mut q = QueryBuilder::new(format!("SELECT {STAFF_COLUMNS} FROM staff s WHERE TRUE"));
    if let Some(category) = filter.category_id {
        q.push(" AND EXISTS (SELECT 1 FROM staff_category_members m WHERE m.staff_id = s.id AND m.category_id = ")
            .push_bind(category)
            .push(")");
    }
    if let Some(like) = &filter.name_like {
        q.push(" AND lower(s.name) LIKE ").push_bind(like.clone());
    }
    if let Some(email) = &filter.email {
        q.push(" AND lower(s.email) = lower(")
            .push_bind(email.clone())
            .push(")");
    }
    if let Some(user) = &filter.user_name {
        q.push(" AND s.user_name = ").push_bind(user.clone());
    }
    if !filter.include_inactive {
        q.push(" AND s.active");
    }
    if let Some((name, id)) = after {
        q.push(" AND (lower(s.name), s.id) > (")
            .push_bind(name.clone())
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    q.push(" ORDER BY lower(s.name), s.id LIMIT ")
        .push_bind(limit);
    q.build()
        .fetch_all(conn)
        .await?
        .iter()
        .map(staff_of)
        .collect()
}

/// Active members of `categories` and the active staff among `staff_ids`, each once.
pub async fn recipients(
    conn: &mut PgConnection,
    staff_ids: &[Uuid],
    categories: &[Uuid],
) -> sqlx::Result<Vec<Staff>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {STAFF_COLUMNS} FROM staff s WHERE s.active AND (s.id = ANY($1) OR EXISTS \
         (SELECT 1 FROM staff_category_members m WHERE m.staff_id = s.id \
          AND m.category_id = ANY($2))) ORDER BY lower(s.name), s.id"
    )))
    .bind(staff_ids)
    .bind(categories)
    .fetch_all(conn)
    .await?
    .iter()
    .map(staff_of)
    .collect()
}

fn category_of(row: &PgRow) -> sqlx::Result<StaffCategory> {
    Ok(StaffCategory {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        member_count: row.try_get("member_count")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}

const CATEGORY_COLUMNS: &str = "c.id, c.name, c.description, c.create_time, c.update_time, \
     c.version, (SELECT count(*) FROM staff_category_members m JOIN staff s ON s.id = m.staff_id \
     WHERE m.category_id = c.id AND s.active) AS member_count";

/// Inserts a category. `Ok(false)` when the name is taken.
pub async fn insert_category(conn: &mut PgConnection, c: &StaffCategory) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO staff_categories (id, name, description, create_time, update_time, version) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(c.id)
    .bind(&c.name)
    .bind(&c.description)
    .bind(c.create_time)
    .bind(c.update_time)
    .bind(c.version)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(err) if is_category_name_taken(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether `err` is the category name's unique violation.
pub fn is_category_name_taken(err: &sqlx::Error) -> bool {
    super::is_unique_violation(err, "staff_categories_name_unique")
}

/// Replaces a category whose version is still `expected_version`.
pub async fn update_category(
    conn: &mut PgConnection,
    c: &StaffCategory,
    expected_version: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE staff_categories SET name = $2, description = $3, update_time = $4, version = $5 \
         WHERE id = $1 AND version = $6",
    )
    .bind(c.id)
    .bind(&c.name)
    .bind(&c.description)
    .bind(c.update_time)
    .bind(c.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// One category.
pub async fn get_category(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<StaffCategory>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CATEGORY_COLUMNS} FROM staff_categories c WHERE c.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| category_of(&row))
    .transpose()
}

/// Which of `ids` are categories.
pub async fn existing_categories(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("SELECT id FROM staff_categories WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// A page of categories by lower(name), id after `after`.
pub async fn list_categories(
    conn: &mut PgConnection,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<StaffCategory>> {
    let (name, id) = after.cloned().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CATEGORY_COLUMNS} FROM staff_categories c \
         WHERE $1::text IS NULL OR (lower(c.name), c.id) > ($1, $2) \
         ORDER BY lower(c.name), c.id LIMIT $3"
    )))
    .bind(name)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(category_of)
    .collect()
}
