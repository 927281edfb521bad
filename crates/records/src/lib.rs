//! Medical records: a generic FHIR R4 resource store in each tenant's own store.
//!
//! - [`resource`]: the R4 resource types, lossless parsing of incoming resources (top-level
//!   elements kept as the exact JSON sent), the server's `id` and `meta`;
//! - [`store`]: the current version and the full history of every resource, usage counters
//!   (patients, bytes) checked against the plan inside each write's transaction;
//! - [`index`]: the search parameters and the index rows extracted from each version;
//! - [`search`]: search queries over those rows, with cursor paging bound to the tenant;
//! - [`bundle`]: `batch` and `transaction` Bundles (atomic transactions, `urn:uuid` and
//!   conditional references, `ifNoneExist`);
//! - [`schema`]: the `records` component's migrations (SQLite and PostgreSQL with forced
//!   row-level security).
//!
//! Every operation takes a [`TenantDb`], which only exists for a resolved tenant; ids are
//! minted by the tenant (`tenantplane_core::id_tags`), so a foreign id can be recognised.

pub mod bundle;
pub mod index;
pub mod resource;
pub mod response_bundle;
pub mod schema;
pub mod search;
pub mod store;
pub mod validate;

pub use tenantplane_tenant_data::DataError;
pub use tenantplane_tenant_data::TenantDb;

/// Errors of record operations.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The tenant store failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// No such resource.
    #[error("resource not found")]
    NotFound,
    /// `If-Match` named another version.
    #[error("version conflict (current {current})")]
    VersionConflict {
        /// The current version.
        current: u64,
    },
    /// A plan quota would be exceeded.
    #[error("{quota} quota exceeded ({current} of {limit})")]
    QuotaExceeded {
        /// Which quota.
        quota: &'static str,
        /// The limit.
        limit: u64,
        /// Usage now.
        current: u64,
    },
    /// The resource does not conform to the R4 schema of its type.
    #[error("the resource does not conform to its R4 schema")]
    Invalid(Vec<resource::Issue>),
    /// A bug or corrupted data.
    #[error("records internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for RecordsError {
    fn from(e: rusqlite::Error) -> Self {
        RecordsError::Data(DataError::from(e))
    }
}

/// Result alias.
pub type Result<T, E = RecordsError> = std::result::Result<T, E>;
