//! Tenants: reading and listing them, validation, optimistic concurrency (read-modify-write
//! with compare-and-swap), the lifecycle state machine, custom domains and the purge of
//! tenants whose deletion grace period ended.

use tenantplane_catalog::{CatalogError, TenantQuery};
use tenantplane_core::{
    DomainName, Plan, PlanName, Profile, ProvisionStep, Tenant, TenantId, TenantRef, TenantStatus,
    ValidationErrors,
    api::UpdateTenant,
    cursor,
    lifecycle::{TenantAction, target_status},
    tenant::{validate_display_name, validate_settings},
};
use time::OffsetDateTime;

use crate::{Control, ControlError, ControlResult, now};

/// Attempts of a read-modify-write when the caller sent no `If-Match`.
pub(crate) const CAS_ATTEMPTS: usize = 16;
/// Largest page of a tenant listing.
pub const MAX_PAGE: usize = 200;

/// A listing request: filters, page size and cursor.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Filter by status.
    pub status: Option<TenantStatus>,
    /// Filter by profile.
    pub profile: Option<Profile>,
    /// Filter by plan name.
    pub plan: Option<String>,
    /// Filter by isolation mode.
    pub isolation: Option<tenantplane_core::IsolationMode>,
    /// Slug prefix or display-name substring (case-insensitive).
    pub q: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<usize>,
    /// Cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn encode_cursor(id: TenantId) -> String {
    cursor::seal(cursor::Scope::Platform, "tenants", &id)
}

fn decode_cursor(c: &str) -> Option<TenantId> {
    cursor::open(cursor::Scope::Platform, "tenants", c)
}

impl Control {
    fn parse_ref(&self, r: &str) -> ControlResult<TenantRef> {
        r.parse::<TenantRef>()
            .map_err(|_| ControlError::NotFound("tenant"))
    }

    /// A tenant by id or slug.
    pub async fn get(&self, r: &str) -> ControlResult<Tenant> {
        let r = self.parse_ref(r)?;
        self.catalog
            .get_tenant(&r)
            .await?
            .ok_or(ControlError::NotFound("tenant"))
    }

    pub(crate) fn validate_custom_domain(
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

    pub(crate) async fn require_plan(
        &self,
        pointer: &str,
        name: &str,
        errs: &mut ValidationErrors,
    ) -> ControlResult<Option<Plan>> {
        let Some(p) = errs.check(pointer, name.parse::<PlanName>()) else {
            return Ok(None);
        };
        // From memory when known (plans change rarely and are refreshed with the index); a
        // plan created on another replica since is read from the catalog.
        let plan = match self.plans.plan(&p) {
            Some(plan) => Some(plan),
            None => self.catalog.get_plan(&p).await?,
        };
        if plan.is_none() {
            errs.push(pointer, format!("unknown plan '{p}'"));
        }
        Ok(plan)
    }

    /// Lists tenants.
    pub async fn list(&self, p: ListRequest) -> ControlResult<(Vec<Tenant>, Option<String>)> {
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
    pub(crate) async fn modify<F>(
        &self,
        r: &str,
        if_match: Option<u64>,
        mut f: F,
    ) -> ControlResult<Tenant>
    where
        F: FnMut(&mut Tenant) -> ControlResult<()>,
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
                    .ok_or(ControlError::NotFound("tenant"))?
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
                .ok_or(ControlError::NotFound("tenant"))?;
            let expected = t.version;
            if let Some(v) = if_match
                && v != expected
            {
                return Err(ControlError::VersionMismatch { current: expected });
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
                        return Err(ControlError::VersionMismatch { current });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ControlError::Contention { tenant: true })
    }

    /// Applies a partial update.
    pub async fn update(
        &self,
        r: &str,
        req: UpdateTenant,
        if_match: Option<u64>,
    ) -> ControlResult<Tenant> {
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
        if let Some(l) = &req.labels {
            tenantplane_core::tenant::validate_labels("/labels", l, &mut errs);
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
            if let Some(l) = &req.labels {
                t.labels = l.clone();
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
    ) -> ControlResult<Tenant> {
        if let Some(reason) = &reason
            && (reason.chars().count() > 500 || reason.chars().any(char::is_control))
        {
            return Err(ControlError::field(
                "/reason",
                "at most 500 characters, no control characters",
            ));
        }
        let grace = time::Duration::hours(self.settings.deletion_grace_hours.min(24 * 3650) as i64);
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
    ) -> ControlResult<Tenant> {
        let mut errs = ValidationErrors::new();
        let d = self.validate_custom_domain("/domain", domain, &mut errs);
        errs.into_result()?;
        let Some(d) = d else {
            return Err(ControlError::field("/domain", "invalid domain"));
        };
        self.modify(r, if_match, |t| {
            if matches!(t.status, TenantStatus::Deleted | TenantStatus::Deleting) {
                return Err(gone());
            }
            if t.custom_domains.contains(&d) {
                return Err(ControlError::DomainAlreadyAssigned(d.clone()));
            }
            if t.custom_domains.len() >= 20 {
                return Err(ControlError::field(
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
    ) -> ControlResult<Tenant> {
        let d: DomainName = domain
            .parse()
            .map_err(|_| ControlError::NotFound("domain"))?;
        self.modify(r, if_match, |t| {
            let before = t.custom_domains.len();
            t.custom_domains.retain(|x| x != &d);
            if t.custom_domains.len() == before {
                return Err(ControlError::NotFound("domain"));
            }
            Ok(())
        })
        .await
    }

    /// Moves every `deleting` tenant whose grace period ended to `deleted`, releasing its
    /// custom domains. Returns how many were purged.
    pub async fn purge_due(&self) -> ControlResult<usize> {
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
                Err(e) => tracing::warn!(tenant_id = %t.id, code = e.label(), "purge skipped"),
            }
        }
        Ok(n)
    }
}

fn gone() -> ControlError {
    ControlError::TenantGone
}

pub(crate) fn require_provisioning(t: &Tenant) -> ControlResult<()> {
    if t.status == TenantStatus::Provisioning {
        Ok(())
    } else {
        Err(ControlError::NotProvisioning(t.status))
    }
}

/// Checks the departments of a creation request: at most 200, names of 1–100 characters
/// without control characters, unique (after trimming).
pub(crate) fn validate_departments(raw: &[String], errs: &mut ValidationErrors) -> Vec<String> {
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
) -> ControlResult<()> {
    let to =
        target_status(t.status, action, t.restore_to).map_err(ControlError::IllegalTransition)?;
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
