//! The control-plane catalog: tenants, their domains, plans and operators.
//!
//! One [`CatalogStore`] trait, two backends — embedded SQLite ([`SqliteCatalog`]) and
//! PostgreSQL ([`PgCatalog`]) — and one conformance suite (see `tests/it/conformance.rs`)
//! that runs the same behavioural tests against both.
//!
//! The store is deliberately dumb: validation and the lifecycle state machine live in
//! `tenantplane-core` and the service layer; the store guarantees uniqueness (slugs,
//! custom domains, operator names), optimistic concurrency (compare-and-swap on `version`)
//! and a monotonically increasing change sequence that replicas poll to keep their
//! in-memory tenant indexes fresh.

pub mod budgets;
mod migrations;
mod pg_budgets;
mod pg_platform_audit;
mod pg_usage;
pub mod platform_audit;
mod postgres;
mod sqlite;
mod sqlite_budgets;
mod sqlite_platform_audit;
mod sqlite_usage;
mod standby;
pub mod usage;

use std::sync::Arc;

use async_trait::async_trait;
use tenantplane_core::{
    IsolationMode, Operator, OperatorId, Plan, PlanName, Profile, Tenant, TenantId, TenantRef,
    TenantStatus,
};
use time::OffsetDateTime;

pub use budgets::BudgetStore;
pub use platform_audit::PlatformAuditStore;
pub use postgres::PgCatalog;
pub use sqlite::SqliteCatalog;
pub use standby::{StandbyState, StandbyStore};
pub use usage::UsageStore;

/// What a uniqueness conflict was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The slug is taken.
    Slug(String),
    /// A custom domain belongs to another tenant.
    Domain(String),
    /// An operator name is taken.
    OperatorName(String),
    /// The id exists already.
    Id,
}

/// Errors of catalog operations.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The addressed record does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint was violated.
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    /// Compare-and-swap failed: the record is at `current`, not at the expected version.
    #[error("version mismatch (current version {current})")]
    VersionMismatch {
        /// The version the record is at now.
        current: u64,
    },
    /// The backend cannot be reached.
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt row, driver bug). The message is for logs only.
    #[error("catalog internal error: {0}")]
    Internal(String),
}

/// Result alias for catalog operations.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Filters and paging for tenant listings.
#[derive(Debug, Clone, Default)]
pub struct TenantQuery {
    /// Only tenants in this status.
    pub status: Option<TenantStatus>,
    /// Only tenants with this profile.
    pub profile: Option<Profile>,
    /// Only tenants on this plan.
    pub plan: Option<PlanName>,
    /// Only tenants with this isolation mode.
    pub isolation: Option<IsolationMode>,
    /// Slug prefix or case-insensitive display-name substring.
    pub q: Option<String>,
    /// Return tenants created after this one (exclusive), in creation order.
    pub after: Option<TenantId>,
    /// Only tenants whose recorded schema version is below this.
    pub schema_below: Option<u32>,
    /// Page size (the caller bounds it).
    pub limit: usize,
}

/// Number of tenants per (isolation, status, schema version, placement): fleet status and
/// placement answered from the catalog alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCounts {
    /// Isolation mode.
    pub isolation: IsolationMode,
    /// Status.
    pub status: TenantStatus,
    /// Recorded schema version.
    pub schema_version: u32,
    /// Server, if any.
    pub placement: Option<String>,
    /// How many tenants.
    pub count: u64,
}

impl TenantCounts {
    pub(crate) fn parse(
        isolation: &str,
        status: &str,
        schema_version: i64,
        placement: Option<String>,
        count: i64,
    ) -> Result<Self> {
        Ok(Self {
            isolation: isolation.parse().map_err(CatalogError::Internal)?,
            status: status.parse().map_err(CatalogError::Internal)?,
            schema_version: schema_version.max(0) as u32,
            placement,
            count: count.max(0) as u64,
        })
    }
}

/// One page of tenants.
#[derive(Debug, Clone)]
pub struct TenantPage {
    /// The tenants, in creation order.
    pub items: Vec<Tenant>,
    /// Whether more tenants match after the last one.
    pub has_more: bool,
}

/// Tenants changed after a sequence number, for cache invalidation.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The changed tenants, in change order (each at its latest state).
    pub tenants: Vec<Tenant>,
    /// The highest change sequence included (or the input when nothing changed).
    pub last_seq: u64,
}

/// The control-plane store (its usage ledger is the [`UsageStore`] part, budgets and alerts
/// the [`BudgetStore`] part, the platform audit log the [`PlatformAuditStore`] part).
#[async_trait]
pub trait CatalogStore:
    UsageStore + BudgetStore + PlatformAuditStore + Send + Sync + 'static
{
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Brings the catalog schema up to date and seeds built-in plans when none exist.
    async fn migrate(&self) -> Result<()>;

    /// Cheap liveness check of the backend.
    async fn ping(&self) -> Result<()>;

    /// Inserts a new tenant (its `version` must be 1).
    async fn create_tenant(&self, tenant: &Tenant) -> Result<Tenant>;

    /// Looks a tenant up by id or slug.
    async fn get_tenant(&self, r: &TenantRef) -> Result<Option<Tenant>>;

    /// Lists tenants in creation order.
    async fn list_tenants(&self, q: &TenantQuery) -> Result<TenantPage>;

    /// Replaces a tenant if it is still at `expected_version`; stores it at
    /// `expected_version + 1` and returns what was stored.
    async fn update_tenant(&self, tenant: &Tenant, expected_version: u64) -> Result<Tenant>;

    /// Tenants changed after `seq`, at most `limit`.
    async fn changes_since(&self, seq: u64, limit: usize) -> Result<ChangeBatch>;

    /// Tenants in `deleting` whose grace period ended at or before `now`.
    async fn due_for_purge(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Tenant>>;

    /// Number of tenants per status.
    async fn count_by_status(&self) -> Result<Vec<(TenantStatus, u64)>>;

    /// Tenants counted by isolation, status, schema version and placement.
    async fn tenant_counts(&self) -> Result<Vec<TenantCounts>>;

    /// All plans, by name.
    async fn list_plans(&self) -> Result<Vec<Plan>>;

    /// One plan.
    async fn get_plan(&self, name: &PlanName) -> Result<Option<Plan>>;

    /// Replaces a plan if it is at `expected_version` (stored at `expected_version + 1`).
    async fn update_plan(&self, plan: &Plan, expected_version: u64) -> Result<Plan>;

    /// Inserts an operator.
    async fn create_operator(&self, op: &Operator) -> Result<()>;

    /// One operator by id.
    async fn get_operator(&self, id: OperatorId) -> Result<Option<Operator>>;

    /// One operator by name.
    async fn get_operator_by_name(&self, name: &str) -> Result<Option<Operator>>;

    /// All operators, by name.
    async fn list_operators(&self) -> Result<Vec<Operator>>;

    /// Replaces an operator record (token rotation, disabling).
    async fn update_operator(&self, op: &Operator) -> Result<()>;

    /// Adds request counts for `month` (`YYYY-MM`, UTC) in one transaction and returns each
    /// tenant's total for the month after the addition (other replicas' counts included).
    async fn add_requests(
        &self,
        month: &str,
        counts: &[(TenantId, u64)],
    ) -> Result<Vec<(TenantId, u64)>>;

    /// A tenant's request count for `month` (0 when none was recorded).
    async fn requests_in(&self, tenant: TenantId, month: &str) -> Result<u64>;

    /// Records a standby store to prepare, if fewer than `max` (not retiring) exist for its
    /// isolation mode and placement; returns whether it was recorded. Replicas adding at
    /// once never exceed `max`.
    async fn add_standby(&self, s: &StandbyStore, max: usize) -> Result<bool>;

    /// Moves a standby store from state `from` to `to` at `schema_version`; returns whether
    /// it was in `from` (a claimed or retired store is not).
    async fn set_standby(
        &self,
        id: TenantId,
        from: StandbyState,
        to: StandbyState,
        schema_version: u32,
    ) -> Result<bool>;

    /// Every standby store, oldest first.
    async fn list_standby(&self) -> Result<Vec<StandbyStore>>;

    /// Forgets a standby store (its store has been dropped).
    async fn remove_standby(&self, id: TenantId) -> Result<()>;

    /// Claims a `ready` standby store of the tenant's isolation mode, placement and schema
    /// version, and records `tenant` under the store's id — in one transaction: the store
    /// is handed out once, and only with its tenant recorded. `None` (nothing written) when
    /// no store is ready; a conflict (slug, domain) leaves the store unclaimed.
    async fn create_tenant_on_standby(&self, tenant: &Tenant) -> Result<Option<Tenant>>;
}

/// A shared catalog handle.
pub type Catalog = Arc<dyn CatalogStore>;

/// Opens the catalog named by `url`: `postgres://…`/`postgresql://…` or a path to a
/// SQLite file (created if missing).
pub async fn open(url: &str, pg_pool_size: usize) -> Result<Catalog> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgCatalog::connect(url, pg_pool_size).await?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(
            SqliteCatalog::open(std::path::Path::new(path)).await?,
        ))
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| CatalogError::Internal(format!("encode: {e}")))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| CatalogError::Internal(format!("decode: {e}")))
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| CatalogError::Internal(format!("time: {e}")))
}
