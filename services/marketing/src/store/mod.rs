//! SQL for the marketing schema, one module per family of tables. Every query is a literal with
//! bound parameters (dynamic list filters use `QueryBuilder` with binds); the pool's
//! `search_path` is the service's own schema.

pub mod files;
mod partners;

pub use partners::*;
