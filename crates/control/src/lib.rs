//! The control plane: everything an operator does to tenants, with no HTTP in sight.
//!
//! [`Control`] owns the catalog, the in-memory [`index::TenantIndex`], the tenant stores and
//! identity, and runs every control-plane operation on them: tenants and their lifecycle
//! (validation, optimistic concurrency, the state machine — [`tenants`]), the provisioning
//! pipeline ([`provisioning`]), placement of new tenants ([`placement`]), fleet migrations
//! ([`fleet`]), operators and their tokens, plans and the first operator at bootstrap
//! ([`operators`], [`tokens`]), usage against the plan, administrator reset and FHIR import
//! ([`tenant_ops`]). Every operation fails with a typed [`ControlError`]; the HTTP edge maps
//! it to problem+json.
//!
//! Audit events go to the [`tenantplane_audit::AuditLog`] and request counts to the
//! [`tenantplane_metering::RequestMeter`] that the composition hands in.

#![forbid(unsafe_code)]

use std::{collections::BTreeMap, sync::Arc};

use tenantplane_audit::AuditLog;
use tenantplane_catalog::Catalog;
use tenantplane_core::{IsolationMode, PlanName, Quotas, TenantId};
use tenantplane_identity::Identity;
use tenantplane_metering::RequestMeter;
use tenantplane_tenant_data::TenantData;
use time::OffsetDateTime;

pub mod alerts;
pub mod audit_ops;
pub mod audit_writer;
mod budgets;
pub mod costs;
mod error;
pub mod fleet;
pub mod health;
pub mod index;
pub mod kube;
pub mod operators;
pub mod placement;
mod probe;
pub mod provisioning;
mod recommendations;
pub mod standby;
mod statements;
pub mod tenant_ops;
pub mod tenants;
pub mod tokens;
mod usage;

pub use error::{ControlError, ControlResult};
pub use index::TenantIndex;
pub use tenants::{ListRequest, MAX_PAGE, apply_action};
pub use tokens::OperatorCache;

/// Number of per-tenant write locks (tenants hash onto them).
const STRIPES: usize = 64;

/// What the control plane needs of the configuration.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// The platform's base domain (tenant subdomains live under it).
    pub base_domain: String,
    /// The plan of a tenant created without one.
    pub default_plan: String,
    /// Hours a deleted tenant is kept before it is purged.
    pub deletion_grace_hours: u64,
    /// The PostgreSQL servers and the modes each accepts (placement of new tenants).
    pub servers: BTreeMap<String, Vec<IsolationMode>>,
    /// Standby pool size per isolation mode (per server for the PostgreSQL modes); a mode
    /// absent or at 0 has no pool.
    pub standby: BTreeMap<IsolationMode, usize>,
    /// The ages that bound custom meter events.
    pub event_window: tenantplane_metering::events::EventWindow,
    /// How budget alerts are delivered.
    pub alerting: alerts::AlertSettings,
    /// Kubernetes mode: the cluster whose namespaces are tenants too.
    pub kubernetes: Option<kube::KubeSettings>,
    /// Audit-log retention by profile, when a plan sets none.
    pub audit_retention: audit_ops::Retention,
}

/// The control plane.
pub struct Control {
    catalog: Catalog,
    index: Arc<TenantIndex>,
    operators: OperatorCache,
    settings: ControlSettings,
    data: Arc<TenantData>,
    identity: Arc<Identity>,
    audit: Arc<AuditLog>,
    meter: Arc<RequestMeter>,
    /// Quotas of every plan, refreshed with the tenant index.
    plans: Arc<PlanQuotas>,
    /// When this process started serving (tenants provisioning since then are its own).
    started_at: OffsetDateTime,
    /// Striped per-tenant write locks.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    /// Wakes the standby refill after a claim.
    standby_wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

/// Every plan, in memory (reloaded with the tenant index, and on every local plan change).
#[derive(Debug, Default)]
pub struct PlanQuotas(arc_swap::ArcSwap<std::collections::HashMap<String, tenantplane_core::Plan>>);

impl PlanQuotas {
    /// A plan's quotas.
    pub fn get(&self, plan: &PlanName) -> Option<Quotas> {
        self.0.load().get(plan.as_str()).map(|p| p.quotas)
    }

    /// A whole plan.
    pub(crate) fn plan(&self, plan: &PlanName) -> Option<tenantplane_core::Plan> {
        self.0.load().get(plan.as_str()).cloned()
    }

    fn replace(&self, plans: Vec<tenantplane_core::Plan>) {
        self.0.store(Arc::new(
            plans.into_iter().map(|p| (p.name.to_string(), p)).collect(),
        ));
    }
}

/// The parts a [`Control`] is built from.
pub struct Parts {
    /// The catalog store.
    pub catalog: Catalog,
    /// The tenant index (updated on every local write).
    pub index: Arc<TenantIndex>,
    /// Tenant data stores.
    pub data: Arc<TenantData>,
    /// Tenant users, keys and tokens.
    pub identity: Arc<Identity>,
    /// Where audit events go.
    pub audit: Arc<AuditLog>,
    /// Monthly request counts.
    pub meter: Arc<RequestMeter>,
}

/// Now, to the microsecond (what the stores keep).
pub(crate) fn now() -> OffsetDateTime {
    let n = OffsetDateTime::now_utc();
    n.replace_nanosecond(n.nanosecond() / 1000 * 1000)
        .unwrap_or(n)
}

impl Control {
    /// A control plane over `parts` with `settings`.
    pub fn new(parts: Parts, settings: ControlSettings) -> Self {
        Self {
            catalog: parts.catalog,
            index: parts.index,
            operators: OperatorCache::default(),
            settings,
            data: parts.data,
            identity: parts.identity,
            audit: parts.audit,
            meter: parts.meter,
            plans: Arc::new(PlanQuotas::default()),
            started_at: now(),
            write_locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            standby_wake: tokio::sync::Notify::new(),
        }
    }

    /// The catalog store.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The in-memory tenant index.
    pub fn index(&self) -> &Arc<TenantIndex> {
        &self.index
    }

    /// The tenant data stores.
    pub fn data(&self) -> &Arc<TenantData> {
        &self.data
    }

    /// Tenant users, keys and tokens.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The request meter.
    pub fn meter(&self) -> &Arc<RequestMeter> {
        &self.meter
    }

    /// The operator token cache.
    pub fn operator_cache(&self) -> &OperatorCache {
        &self.operators
    }

    /// The settings.
    pub fn settings(&self) -> &ControlSettings {
        &self.settings
    }

    /// The configured base domain.
    pub fn base_domain(&self) -> &str {
        &self.settings.base_domain
    }

    fn stripe(&self, id: &TenantId) -> &tokio::sync::Mutex<()> {
        let b = id.as_uuid().as_bytes();
        let h = b.iter().fold(0usize, |acc, x| {
            acc.wrapping_mul(31).wrapping_add(*x as usize)
        });
        &self.write_locks[h % self.write_locks.len()]
    }

    /// Reloads the plans' quotas from the catalog.
    pub async fn refresh_plans(&self) -> ControlResult<()> {
        let plans = self.catalog.list_plans().await?;
        self.data
            .set_plan_weights(plans.iter().map(|p| (p.name.to_string(), p.quotas.weight)));
        self.plans.replace(plans);
        Ok(())
    }

    /// A plan's quotas (from memory).
    pub fn quotas(&self, plan: &PlanName) -> Option<Quotas> {
        self.plans.get(plan)
    }

    /// The plans' quotas, as a handle that stays current (for the edge).
    pub fn plan_quotas(&self) -> &Arc<PlanQuotas> {
        &self.plans
    }

    /// Reads the catalog change feed into the index until it is drained; returns how many
    /// tenants changed.
    pub async fn sync_index(&self) -> Result<usize, tenantplane_catalog::CatalogError> {
        let mut n = 0;
        loop {
            let batch = self
                .catalog
                .changes_since(self.index.last_seq(), 5000)
                .await?;
            if batch.tenants.is_empty() {
                return Ok(n);
            }
            n += batch.tenants.len();
            self.index.apply(batch.tenants, Some(batch.last_seq));
        }
    }
}

/// The HTTP client of the control plane's outgoing calls (alert webhooks, Prometheus, the
/// uptime probe): 10 s timeout, no redirects followed.
pub(crate) fn http() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}
