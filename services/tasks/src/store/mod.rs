//! SQL for the tasks schema, one module per family of tables. Every statement is a literal with
//! bound parameters (list filters use `QueryBuilder` with binds); the pool's `search_path` is
//! the service's own schema.

pub mod broadcasts;
pub mod reminders;
pub mod replies;
pub mod services;
pub mod settings;
pub mod staff;
pub mod tasks;
pub mod tracking;

pub use crm_platform::db::claim_request;

/// A stored value that no longer parses means the database was changed behind the service.
pub(crate) fn decode_error(column: &str, value: impl std::fmt::Debug) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}

/// Whether `err` is a unique violation of constraint or index `name`.
pub(crate) fn is_unique_violation(err: &sqlx::Error, name: &str) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(name))
}
