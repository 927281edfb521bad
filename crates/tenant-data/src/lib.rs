//! Tenant data: where each tenant's data lives and how code reaches it.
//!
//! This crate is being built in steps (issue 3). Present so far:
//!
//! - [`migrate`]: versioned, per-component, per-dialect migrations embedded in the binary and
//!   a runner that applies them to one tenant database atomically, recording a checksum per
//!   step in the tenant's own `tp_migrations` table;
//! - [`pg`]: the `pg-schema` and `pg-shared` modes — an owner pool for DDL and an
//!   application pool (a role without ownership or BYPASSRLS, sized by the server's connection
//!   budget) whose transactions set the tenant with transaction-scoped statements only;
//!   tables carry `tenant_id` with forced row-level security (ADR 003);
//! - [`sqlite`]: the registry of per-tenant SQLite files — an LRU of open databases capped from
//!   the file-descriptor limit, all SQLite work on a bounded blocking pool (threads are
//!   O(cores), never O(tenants)), WAL mode, checkpoint on eviction.
//!
//! A tenant database handle is obtained only from a [`tenantplane_core::Tenant`] record, which
//! the edge hands out only for a resolved tenant.

pub mod migrate;
pub mod pg;
pub mod sqlite;

/// Errors of tenant-data operations.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The tenant's store cannot be opened or reached.
    #[error("tenant store unavailable: {0}")]
    Unavailable(String),
    /// The blocking pool is saturated and the wait timed out.
    #[error("tenant store busy")]
    Busy,
    /// A migration failed; nothing of that migration was applied.
    #[error("migration {component}/{version} failed: {message}")]
    Migration {
        /// Component that owns the migration.
        component: String,
        /// Its version.
        version: u32,
        /// Driver message (for logs).
        message: String,
    },
    /// A migration already applied differs from the one in this binary.
    #[error("migration {component}/{version} was changed after it was applied")]
    ChecksumMismatch {
        /// Component.
        component: String,
        /// Version.
        version: u32,
    },
    /// The tenant's database is not at the schema version this binary needs.
    #[error("tenant schema at version {have}, this binary needs {need}")]
    Outdated {
        /// Version found.
        have: u32,
        /// Version needed.
        need: u32,
    },
    /// A database error.
    #[error("tenant store error: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for DataError {
    fn from(e: rusqlite::Error) -> Self {
        DataError::Db(e.to_string())
    }
}

/// Result alias.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
