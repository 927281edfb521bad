//! Control-plane operations: validation, the lifecycle state machine, optimistic
//! concurrency and cache invalidation around the catalog store.

use std::{path::Path, sync::Arc};

use axum::http::StatusCode;
use base64::Engine as _;
use tenantplane_catalog::{Catalog, CatalogError, TenantQuery};
use tenantplane_core::{
    DomainName, Operator, OperatorId, OperatorRole, Plan, PlanName, Profile, ProvisionStep, Slug,
    Tenant, TenantId, TenantRef, TenantSeed, TenantStatus, ValidationErrors,
    api::{CreateOperator, CreateTenant, UpdatePlan, UpdateTenant},
    identity::AdminCredentials,
    lifecycle::{TenantAction, target_status},
    operator::validate_operator_name,
    tenant::{validate_display_name, validate_settings},
};
use tenantplane_tenant_data::{DataError, TenantData, directory};
use time::OffsetDateTime;

mod operators;
mod provisioning;
mod tenant_ops;

use crate::{
    auth::{self, OperatorCache},
    config::Config,
    problem::{ApiError, ApiResult},
    resolver::TenantIndex,
};

/// Attempts of a read-modify-write when the caller sent no `If-Match`.
const CAS_ATTEMPTS: usize = 16;
/// Number of per-tenant write locks (tenants hash onto them).
const STRIPES: usize = 64;
/// Largest page of a tenant listing.
pub const MAX_PAGE: usize = 200;

/// The control-plane service.
pub struct Service {
    /// The catalog store.
    pub catalog: Catalog,
    /// The in-memory tenant index (updated on every local write).
    pub index: Arc<TenantIndex>,
    /// Operator token cache.
    pub operators: OperatorCache,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Tenant data stores.
    pub data: Arc<TenantData>,
    /// Tenant users, keys and tokens.
    pub identity: Arc<tenantplane_identity::Identity>,
    /// Security events (cross-tenant attempts, replays, lockouts).
    pub events: Arc<crate::events::SecurityEvents>,
    /// Rate limits.
    pub limits: Arc<crate::limits::Limits>,
    /// Clinical record accesses (for the audit log).
    pub audit: Arc<crate::audit::AuditEvents>,
    /// Monthly request counts.
    pub meter: Arc<crate::metering::RequestMeter>,
    /// Quotas of every plan, refreshed with the tenant index.
    plans: arc_swap::ArcSwap<std::collections::HashMap<String, tenantplane_core::Quotas>>,
    /// When this process started serving (tenants provisioning since then are its own).
    started_at: OffsetDateTime,
    /// Striped per-tenant write locks.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    /// The platform's external URL (scheme, host, port) that tenant links are built on.
    public: arc_swap::ArcSwap<crate::config::PublicUrl>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    let n = OffsetDateTime::now_utc();
    n.replace_nanosecond(n.nanosecond() / 1000 * 1000)
        .unwrap_or(n)
}

/// Listing parameters as the API receives them.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Filter by status.
    pub status: Option<TenantStatus>,
    /// Filter by profile.
    pub profile: Option<Profile>,
    /// Filter by plan name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")]
    pub plan: Option<String>,
    /// Filter by isolation mode.
    pub isolation: Option<tenantplane_core::IsolationMode>,
    /// Slug prefix or display-name substring (case-insensitive).
    pub q: Option<String>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Cursor from a previous page's `next_cursor` (opaque; others are refused).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

fn encode_cursor(id: TenantId) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("t1:{id}"))
}

fn decode_cursor(c: &str) -> Option<TenantId> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("t1:")?.parse().ok()
}

impl Service {
    /// A service over `catalog` and `index` with `config`.
    pub fn new(
        catalog: Catalog,
        index: Arc<TenantIndex>,
        config: Arc<Config>,
        data: Arc<TenantData>,
        identity: Arc<tenantplane_identity::Identity>,
    ) -> Self {
        Self {
            catalog,
            index,
            operators: OperatorCache::default(),
            limits: Arc::new(crate::limits::Limits::new(config.limits.clone())),
            meter: Arc::new(crate::metering::RequestMeter::new()),
            audit: Arc::new(crate::audit::AuditEvents::default()),
            data,
            identity,
            events: Arc::new(crate::events::SecurityEvents::default()),
            plans: arc_swap::ArcSwap::from_pointee(Default::default()),
            started_at: now(),
            write_locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            public: arc_swap::ArcSwap::from_pointee(config.server.public()),
            config,
        }
    }

    /// The platform's external URL.
    pub fn public(&self) -> Arc<crate::config::PublicUrl> {
        self.public.load_full()
    }

    /// Sets the platform's external URL (the listener's real port when none is configured).
    pub fn set_public(&self, p: crate::config::PublicUrl) {
        self.public.store(Arc::new(p));
    }

    fn stripe(&self, id: &TenantId) -> &tokio::sync::Mutex<()> {
        let b = id.as_uuid().as_bytes();
        let h = b.iter().fold(0usize, |acc, x| {
            acc.wrapping_mul(31).wrapping_add(*x as usize)
        });
        &self.write_locks[h % self.write_locks.len()]
    }

    /// Reloads the plans' quotas from the catalog.
    pub async fn refresh_plans(&self) -> ApiResult<()> {
        let plans = self.catalog.list_plans().await?;
        self.plans.store(Arc::new(
            plans
                .into_iter()
                .map(|p| (p.name.to_string(), p.quotas))
                .collect(),
        ));
        Ok(())
    }

    /// A plan's quotas (from memory).
    pub fn quotas(&self, plan: &PlanName) -> Option<tenantplane_core::Quotas> {
        self.plans.load().get(plan.as_str()).copied()
    }

    /// The configured base domain.
    pub fn base_domain(&self) -> &str {
        &self.config.server.base_domain
    }

    fn parse_ref(&self, r: &str) -> ApiResult<TenantRef> {
        r.parse::<TenantRef>()
            .map_err(|_| ApiError::not_found("tenant"))
    }

    /// A tenant by id or slug.
    pub async fn get(&self, r: &str) -> ApiResult<Tenant> {
        let r = self.parse_ref(r)?;
        self.catalog
            .get_tenant(&r)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant"))
    }

    fn validate_custom_domain(
        &self,
        pointer: &str,
        raw: &str,
        errs: &mut ValidationErrors,
    ) -> Option<DomainName> {
        let d = errs.check(pointer, raw.parse::<DomainName>())?;
        let bd = self.base_domain();
        if d.as_str() == bd || d.as_str().ends_with(&format!(".{bd}")) {
            errs.push(
                pointer,
                format!("domains under the platform base domain '{bd}' are reserved for tenant subdomains"),
            );
            return None;
        }
        Some(d)
    }

    async fn require_plan(
        &self,
        pointer: &str,
        name: &str,
        errs: &mut ValidationErrors,
    ) -> ApiResult<Option<Plan>> {
        let Some(p) = errs.check(pointer, name.parse::<PlanName>()) else {
            return Ok(None);
        };
        let plan = self.catalog.get_plan(&p).await?;
        if plan.is_none() {
            errs.push(pointer, format!("unknown plan '{p}'"));
        }
        Ok(plan)
    }

    /// Lists tenants.
    pub async fn list(&self, p: ListParams) -> ApiResult<(Vec<Tenant>, Option<String>)> {
        let mut errs = ValidationErrors::new();
        let limit = p.limit.unwrap_or(50);
        if limit == 0 || limit > MAX_PAGE {
            errs.push("?limit", format!("must be between 1 and {MAX_PAGE}"));
        }
        let after = match p.cursor.as_deref() {
            Some(c) => {
                let id = decode_cursor(c);
                if id.is_none() {
                    errs.push("?cursor", "not a cursor returned by this API");
                }
                id
            }
            None => None,
        };
        let plan = p
            .plan
            .as_deref()
            .and_then(|s| errs.check("?plan", s.parse::<PlanName>()));
        if p.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
            errs.push("?q", "at most 200 characters");
        }
        errs.into_result()?;
        let page = self
            .catalog
            .list_tenants(&TenantQuery {
                status: p.status,
                profile: p.profile,
                plan,
                isolation: p.isolation,
                q: p.q,
                after,
                limit,
                schema_below: None,
            })
            .await?;
        let next = if page.has_more {
            page.items.last().map(|t| encode_cursor(t.id))
        } else {
            None
        };
        Ok((page.items, next))
    }

    /// Read-modify-write of one tenant with optimistic concurrency. With `if_match` the
    /// caller's version must be current (else 412); without, the change is re-applied on the
    /// latest state until it lands, so concurrent updates never overwrite each other.
    async fn modify<F>(&self, r: &str, if_match: Option<u64>, mut f: F) -> ApiResult<Tenant>
    where
        F: FnMut(&mut Tenant) -> ApiResult<()>,
    {
        let r = self.parse_ref(r)?;
        // Writers of one tenant in this process queue on a striped lock instead of spinning
        // on version conflicts; writers on other replicas are handled by compare-and-swap.
        let id = match &r {
            TenantRef::Id(id) => *id,
            TenantRef::Slug(_) => {
                self.catalog
                    .get_tenant(&r)
                    .await?
                    .ok_or_else(|| ApiError::not_found("tenant"))?
                    .id
            }
        };
        let _guard = self.stripe(&id).lock().await;
        let r = TenantRef::Id(id);
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 0 {
                let jitter = rand::random::<u64>() % (5 * attempt as u64);
                tokio::time::sleep(std::time::Duration::from_millis(1 + jitter)).await;
            }
            let mut t = self
                .catalog
                .get_tenant(&r)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant"))?;
            let expected = t.version;
            if let Some(v) = if_match
                && v != expected
            {
                return Err(ApiError::version_mismatch(expected));
            }
            f(&mut t)?;
            t.updated_at = now();
            match self.catalog.update_tenant(&t, expected).await {
                Ok(stored) => {
                    self.index.apply([stored.clone()], None);
                    return Ok(stored);
                }
                Err(CatalogError::VersionMismatch { current }) => {
                    if if_match.is_some() {
                        return Err(ApiError::version_mismatch(current));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "contention",
            "Too many concurrent changes",
        )
        .detail("the tenant is being changed concurrently; retry"))
    }

    /// Applies a partial update.
    pub async fn update(
        &self,
        r: &str,
        req: UpdateTenant,
        if_match: Option<u64>,
    ) -> ApiResult<Tenant> {
        let mut errs = ValidationErrors::new();
        if let Some(n) = &req.display_name {
            validate_display_name("/display_name", n, &mut errs);
        }
        let plan = match &req.plan {
            Some(p) => self.require_plan("/plan", p, &mut errs).await?,
            None => None,
        };
        if let Some(b) = &req.branding {
            b.validate("/branding", &mut errs);
        }
        if let Some(s) = &req.settings {
            validate_settings("/settings", s, &mut errs);
        }
        errs.into_result()?;
        self.modify(r, if_match, |t| {
            if matches!(t.status, TenantStatus::Deleted) {
                return Err(gone());
            }
            if let Some(n) = &req.display_name {
                t.display_name = n.trim().to_owned();
            }
            if let Some(p) = req.profile {
                t.profile = p;
            }
            if let Some(p) = &plan {
                t.plan = p.name.clone();
            }
            if let Some(b) = &req.branding {
                t.branding = b.clone();
            }
            if let Some(s) = &req.settings {
                t.settings = s.clone();
            }
            Ok(())
        })
        .await
    }

    /// Moves a tenant through its lifecycle.
    pub async fn transition(
        &self,
        r: &str,
        action: TenantAction,
        reason: Option<String>,
        if_match: Option<u64>,
    ) -> ApiResult<Tenant> {
        if let Some(reason) = &reason
            && (reason.chars().count() > 500 || reason.chars().any(char::is_control))
        {
            return Err(ApiError::field(
                "/reason",
                "at most 500 characters, no control characters",
            ));
        }
        let grace =
            time::Duration::hours(self.config.tenants.deletion_grace_hours.min(24 * 3650) as i64);
        let stored = self
            .modify(r, if_match, |t| {
                apply_action(t, action, reason.clone(), grace)
            })
            .await?;
        tracing::info!(tenant_id = %stored.id, action = action.as_str(), status = %stored.status, "tenant transition");
        Ok(stored)
    }

    /// Adds a custom domain.
    pub async fn add_domain(
        &self,
        r: &str,
        domain: &str,
        if_match: Option<u64>,
    ) -> ApiResult<Tenant> {
        let mut errs = ValidationErrors::new();
        let d = self.validate_custom_domain("/domain", domain, &mut errs);
        errs.into_result()?;
        let Some(d) = d else {
            return Err(ApiError::field("/domain", "invalid domain"));
        };
        self.modify(r, if_match, |t| {
            if matches!(t.status, TenantStatus::Deleted | TenantStatus::Deleting) {
                return Err(gone());
            }
            if t.custom_domains.contains(&d) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "domain-taken",
                    "Domain already in use",
                )
                .detail(format!("domain '{d}' is already assigned to this tenant")));
            }
            if t.custom_domains.len() >= 20 {
                return Err(ApiError::field(
                    "/domain",
                    "a tenant may have at most 20 custom domains",
                ));
            }
            t.custom_domains.push(d.clone());
            Ok(())
        })
        .await
    }

    /// Removes a custom domain.
    pub async fn remove_domain(
        &self,
        r: &str,
        domain: &str,
        if_match: Option<u64>,
    ) -> ApiResult<Tenant> {
        let d: DomainName = domain.parse().map_err(|_| ApiError::not_found("domain"))?;
        self.modify(r, if_match, |t| {
            let before = t.custom_domains.len();
            t.custom_domains.retain(|x| x != &d);
            if t.custom_domains.len() == before {
                return Err(ApiError::not_found("domain"));
            }
            Ok(())
        })
        .await
    }

    /// Moves every `deleting` tenant whose grace period ended to `deleted`, releasing its
    /// custom domains. Returns how many were purged.
    pub async fn purge_due(&self) -> ApiResult<usize> {
        let due = self
            .catalog
            .due_for_purge(OffsetDateTime::now_utc(), 100)
            .await?;
        let mut n = 0;
        for t in due {
            // Drop the store first (idempotent); the catalog records that it did. If dropping
            // fails, the tenant stays `deleting` and is retried on the next round.
            if !t.has_step(ProvisionStep::StoreDropped)
                && let Err(e) = self.data.drop_tenant(&t).await
            {
                tracing::warn!(tenant_id = %t.id, error = %e, "dropping the tenant's store failed; will retry");
                continue;
            }
            let res = self
                .modify(&t.id.to_string(), None, |t| {
                    apply_action(t, TenantAction::Purge, None, time::Duration::ZERO)?;
                    t.custom_domains.clear();
                    t.record_step(ProvisionStep::StoreDropped, now());
                    Ok(())
                })
                .await;
            match res {
                Ok(t) => {
                    n += 1;
                    tracing::info!(tenant_id = %t.id, "tenant purged after grace period");
                }
                Err(e) => tracing::warn!(tenant_id = %t.id, code = e.code, "purge skipped"),
            }
        }
        Ok(n)
    }
}

fn gone() -> ApiError {
    ApiError::new(StatusCode::GONE, "tenant-gone", "Tenant deleted")
        .detail("the tenant has been deleted")
}

fn require_provisioning(t: &Tenant) -> ApiResult<()> {
    if t.status == TenantStatus::Provisioning {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-provisioning",
            "Tenant is not being provisioned",
        )
        .detail(format!("the tenant is {} now", t.status)))
    }
}

/// Checks the departments of a creation request: at most 200, names of 1–100 characters
/// without control characters, unique (after trimming).
fn validate_departments(raw: &[String], errs: &mut ValidationErrors) -> Vec<String> {
    if raw.len() > 200 {
        errs.push("/departments", "at most 200 departments");
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let p = format!("/departments/{i}");
        let name = d.trim();
        let len = name.chars().count();
        if len == 0 || len > 100 || name.chars().any(char::is_control) {
            errs.push(p, "1-100 characters, no control characters");
        } else if out.iter().any(|o| o == name) {
            errs.push(p, "listed twice");
        } else {
            out.push(name.to_owned());
        }
    }
    out
}

/// Applies a lifecycle action to a tenant record (pure; used inside read-modify-write).
pub fn apply_action(
    t: &mut Tenant,
    action: TenantAction,
    reason: Option<String>,
    grace: time::Duration,
) -> ApiResult<()> {
    let to = target_status(t.status, action, t.restore_to)
        .map_err(|e| ApiError::illegal_transition(&e))?;
    let from = t.status;
    t.status = to;
    match to {
        TenantStatus::Deleting => {
            t.restore_to = Some(from);
            t.delete_after = Some(now() + grace);
        }
        _ => {
            if from == TenantStatus::Deleting && to != TenantStatus::Deleted {
                t.delete_after = None;
                t.restore_to = None;
            }
        }
    }
    t.status_reason = match to {
        TenantStatus::Active => None,
        _ => reason.or_else(|| t.status_reason.take()),
    };
    Ok(())
}
