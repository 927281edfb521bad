//! Tenant data: where each tenant's data lives and how code reaches it.
//!
//! - [`data`]: [`TenantData`], the one entry point — it routes a tenant (mode + placement)
//!   to its store and hands out a [`TenantDb`] bound to that tenant, refusing tenants whose
//!   store is not at the schema version the binary needs;
//! - [`directory`]: the first component stored per tenant (departments);
//! - [`audit_log`]: the tenant's hash-chained audit log (append, seal, verify, search,
//!   prune behind signed checkpoints);
//! - [`pgpool`]: the application connection pool of a PostgreSQL server — one budget for
//!   all its tenant databases, LRU eviction of idle connections, bounded waits;
//! - [`migrate`]: versioned, per-component, per-dialect migrations embedded in the binary and
//!   a runner that applies them to one tenant database atomically, recording a checksum per
//!   step in the tenant's own `tp_migrations` table;
//! - [`pg`]: the `pg-database`, `pg-schema` and `pg-shared` modes — owner connections for
//!   DDL and migrations (tenant databases cloned from a pre-migrated template), and an
//!   application role without ownership or BYPASSRLS whose transactions set the tenant with
//!   transaction-scoped statements only; tables carry `tenant_id` with forced row-level
//!   security (ADR 003);
//! - [`sqlite`]: the registry of per-tenant SQLite files — an LRU of open databases capped from
//!   the file-descriptor limit, all SQLite work on a bounded blocking pool (threads are
//!   O(cores), never O(tenants)), WAL mode, checkpoint on eviction.
//!
//! A tenant database handle is obtained only from a [`tenantplane_core::Tenant`] record, which
//! the edge hands out only for a resolved tenant.

pub mod audit_log;
pub mod data;
pub mod directory;
pub mod fair;
pub mod literal;
pub mod migrate;
pub mod pg;
pub mod pgpool;
pub mod sqlite;
mod workers;

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
    /// The store exists and holds data Tenantplane did not create; it is not adopted.
    #[error("{0}")]
    Foreign(String),
    /// A uniqueness conflict in tenant data (e.g. a department name that is taken).
    #[error("{0}")]
    Conflict(String),
    /// A statement was refused by a named check constraint of the store (e.g. the usage
    /// counters' `fhir_usage_within_plan`): the transaction rolled back, nothing changed.
    #[error("refused by constraint {constraint}")]
    Refused {
        /// The constraint's name.
        constraint: String,
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

pub use data::{PgTenant, SqliteTenant, TenantData, TenantDb};

/// The migrations of every component built into this crate (the binary adds the others').
pub fn builtin_migrations() -> Vec<migrate::Migration> {
    let mut all = directory::MIGRATIONS.to_vec();
    all.extend_from_slice(audit_log::MIGRATIONS);
    all
}

/// Result alias.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
