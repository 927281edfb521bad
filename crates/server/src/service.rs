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

    /// Creates a tenant: validates everything, records it as `provisioning`, runs the
    /// provisioning steps, and activates it.
    pub async fn create(&self, req: CreateTenant) -> ApiResult<(Tenant, Option<AdminCredentials>)> {
        let mut errs = ValidationErrors::new();
        let admin_email = req
            .admin_email
            .as_deref()
            .and_then(|e| errs.check("/admin_email", e.parse::<tenantplane_core::Email>()));
        let slug = errs.check("/slug", req.slug.parse::<Slug>());
        validate_display_name("/display_name", &req.display_name, &mut errs);
        let plan_name = req
            .plan
            .clone()
            .unwrap_or_else(|| self.config.tenants.default_plan.clone());
        let plan = self.require_plan("/plan", &plan_name, &mut errs).await?;
        let mut domains: Vec<DomainName> = Vec::new();
        for (i, raw) in req.custom_domains.iter().enumerate() {
            let p = format!("/custom_domains/{i}");
            if let Some(d) = self.validate_custom_domain(&p, raw, &mut errs) {
                if domains.contains(&d) {
                    errs.push(p, "listed twice");
                } else {
                    domains.push(d);
                }
            }
        }
        if domains.len() > 20 {
            errs.push("/custom_domains", "at most 20 custom domains");
        }
        let branding = req.branding.unwrap_or_default();
        branding.validate("/branding", &mut errs);
        let settings = req.settings.unwrap_or_default();
        validate_settings("/settings", &settings, &mut errs);
        let departments = validate_departments(&req.departments, &mut errs);
        let isolation = req
            .isolation
            .or(plan.as_ref().map(|p| p.default_isolation))
            .unwrap_or(tenantplane_core::IsolationMode::Sqlite);
        let placement =
            match crate::data::place(&self.config, &self.index.placement_counts(), isolation) {
                Ok(p) => p,
                Err(msg) => {
                    errs.push("/isolation", msg);
                    None
                }
            };
        errs.clone().into_result()?;
        let (Some(slug), Some(plan)) = (slug, plan) else {
            return Err(ApiError::validation(errs));
        };
        let ts = now();
        let tenant = Tenant {
            custom_domains: domains,
            branding,
            settings,
            placement,
            seed: TenantSeed {
                departments,
                admin_email,
            },
            ..Tenant::new(
                slug,
                req.display_name.trim().to_owned(),
                req.profile.unwrap_or(Profile::Other),
                plan.name.clone(),
                isolation,
                ts,
            )
        };
        let stored = self.catalog.create_tenant(&tenant).await?;
        self.index.apply([stored.clone()], None);
        tracing::info!(tenant_id = %stored.id, slug = %stored.slug, isolation = %stored.isolation, placement = ?stored.placement, "tenant created");
        let mut admin = None;
        let t = self.provision_with_admin(stored, &mut admin).await?;
        Ok((t, admin))
    }

    /// The provisioning pipeline: create the store → run/verify migrations → seed → activate.
    /// Every step is recorded in the catalog and idempotent, so a tenant left in
    /// `provisioning` (a crash, a restart) is finished by running this again. A failing step
    /// moves the tenant to `failed` with the reason and answers 503 `provisioning-failed`.
    pub async fn provision(&self, t: Tenant) -> ApiResult<Tenant> {
        self.provision_with_admin(t, &mut None).await
    }

    /// Identity for a new tenant: roles, a signing key, and the first administrator when
    /// the seed names one and it does not exist yet (its one-time password is returned).
    async fn provision_identity(&self, t: &Tenant) -> Result<Option<AdminCredentials>, DataError> {
        let db = self.data.handle(t)?;
        let to_data = |e: tenantplane_identity::IdentityError| match e {
            tenantplane_identity::IdentityError::Data(d) => d,
            other => DataError::Db(other.to_string()),
        };
        self.identity
            .provision(t.id, t.profile, db)
            .await
            .map_err(to_data)?;
        let Some(email) = t.seed.admin_email.clone() else {
            return Ok(None);
        };
        if tenantplane_identity::users::by_email(db, &email)
            .await
            .map_err(to_data)?
            .is_some()
        {
            return Ok(None);
        }
        let admin_role: tenantplane_core::RoleName = tenantplane_core::identity::TENANT_ADMIN
            .parse()
            .map_err(|_| DataError::Db("built-in role name".into()))?;
        let (u, otp) = self
            .create_admin(db, email.clone(), admin_role, u64::MAX)
            .await
            .map_err(to_data)?;
        Ok(Some(AdminCredentials {
            tenant: t.id,
            user_id: u.id,
            email,
            created: true,
            one_time_password: otp,
        }))
    }

    /// A new tenant administrator with a one-time password, within `max_users`.
    async fn create_admin(
        &self,
        db: tenantplane_tenant_data::TenantDb<'_>,
        email: tenantplane_core::Email,
        role: tenantplane_core::RoleName,
        max_users: u64,
    ) -> Result<
        (tenantplane_identity::users::UserRecord, String),
        tenantplane_identity::IdentityError,
    > {
        self.identity
            .create_user(
                db,
                email,
                "Administrator".into(),
                vec![role],
                vec![],
                max_users,
            )
            .await
    }

    /// [`provision`](Self::provision), also returning the first administrator's one-time
    /// password when this run created it.
    pub async fn provision_with_admin(
        &self,
        t: Tenant,
        admin: &mut Option<AdminCredentials>,
    ) -> ApiResult<Tenant> {
        let started = std::time::Instant::now();
        let id = t.id.to_string();
        let need = self.data.schema_version();
        let mut t = t;
        if !(t.has_step(ProvisionStep::StoreCreated)
            && t.has_step(ProvisionStep::Migrated)
            && t.schema_version == need)
        {
            let report = match self.data.provision(&t).await {
                Ok(r) => r,
                Err(e) => return Err(self.fail_provisioning(&id, "store", e).await),
            };
            t = match self
                .modify(&id, None, |x| {
                    require_provisioning(x)?;
                    let at = now();
                    x.record_step(ProvisionStep::StoreCreated, at);
                    x.record_step(ProvisionStep::Migrated, at);
                    x.schema_version = report.schema_version;
                    Ok(())
                })
                .await
            {
                Ok(t) => t,
                Err(e) => return self.settled_elsewhere(&id, e).await,
            };
        }
        if !t.seed.departments.is_empty() && !t.has_step(ProvisionStep::Seeded) {
            let seeded = match self.data.handle(&t) {
                Ok(db) => directory::seed(db, &t.seed.departments).await,
                Err(e) => Err(e),
            };
            if let Err(e) = seeded {
                return Err(self.fail_provisioning(&id, "seed", e).await);
            }
        }
        if !t.has_step(ProvisionStep::IdentityReady) {
            match self.provision_identity(&t).await {
                Ok(a) => *admin = a,
                Err(e) => return Err(self.fail_provisioning(&id, "identity", e).await),
            }
        }
        let out = match self
            .modify(&id, None, |x| {
                require_provisioning(x)?;
                let at = now();
                if !x.seed.departments.is_empty() {
                    x.record_step(ProvisionStep::Seeded, at);
                }
                x.record_step(ProvisionStep::IdentityReady, at);
                apply_action(x, TenantAction::Activate, None, time::Duration::ZERO)?;
                x.record_step(ProvisionStep::Activated, at);
                Ok(())
            })
            .await
        {
            Ok(t) => t,
            Err(e) => return self.settled_elsewhere(&id, e).await,
        };
        metrics::histogram!("tenantplane_provision_seconds", "isolation" => out.isolation.as_str())
            .record(started.elapsed().as_secs_f64());
        tracing::info!(tenant_id = %out.id, ms = started.elapsed().as_millis() as u64, "tenant provisioned");
        Ok(out)
    }

    /// The pipeline may run twice for one tenant (the request that created it and a
    /// replica resuming interrupted provisioning at start); every step is idempotent, and
    /// whichever finishes second finds the tenant no longer `provisioning`. If the other
    /// run activated it, that is success; anything else is the original error.
    async fn settled_elsewhere(&self, id: &str, e: ApiError) -> ApiResult<Tenant> {
        if e.code == "not-provisioning"
            && let Ok(t) = self.get(id).await
            && t.status == TenantStatus::Active
        {
            return Ok(t);
        }
        Err(e)
    }

    /// Marks a tenant `failed` with the reason of a failed provisioning step; returns the
    /// problem to answer.
    async fn fail_provisioning(&self, id: &str, step: &str, e: DataError) -> ApiError {
        let reason = format!("provisioning step '{step}' failed: {e}");
        tracing::warn!(tenant_id = %id, step, error = %e, "provisioning failed");
        metrics::counter!("tenantplane_provision_failures_total").increment(1);
        let r = reason.clone();
        if let Err(err) = self
            .modify(id, None, move |x| {
                // Only a tenant still being provisioned fails (another run may have
                // finished it meanwhile).
                require_provisioning(x)?;
                apply_action(x, TenantAction::Fail, Some(r.clone()), time::Duration::ZERO)
            })
            .await
        {
            tracing::warn!(tenant_id = %id, code = err.code, "could not record the failure");
        }
        let mut p = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provisioning-failed",
            "Provisioning failed",
        )
        .detail(format!(
            "the tenant was recorded in status 'failed' ({reason}); fix the cause, then POST \
             /api/v1/tenants/{id}/retry"
        ));
        p.retry_after = Some(30);
        p
    }

    /// Creates or resets a tenant administrator (operator action): an existing account with
    /// `email` (or, without one, the tenant's first administrator) gets a new one-time
    /// password, is re-enabled, gains `tenant-admin` and loses its sessions; otherwise a new
    /// administrator is created within the plan's user quota.
    /// Processes a FHIR `batch` or `transaction` Bundle for a tenant on an operator's
    /// behalf (bulk imports; audited as the operator). The records module must be on.
    pub async fn fhir_import(
        &self,
        r: &str,
        operator: &str,
        body: &[u8],
    ) -> ApiResult<(
        tenantplane_core::TenantId,
        tenantplane_records::bundle::Kind,
        Vec<tenantplane_records::bundle::EntryResult>,
    )> {
        let t = self.get(r).await?;
        if t.status != TenantStatus::Active {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tenant-not-ready",
                "Tenant not ready",
            )
            .detail(format!(
                "the tenant is {}; imports need an active tenant",
                t.status
            )));
        }
        if !crate::fhir_api::records_enabled(&t) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "records-disabled",
                "Records module off",
            )
            .detail("this tenant has no FHIR records; an operator can switch them on with the setting records = true"));
        }
        let db = self.data.handle(&t)?;
        let limits = self
            .quotas(&t.plan)
            .map(|q| tenantplane_records::store::Limits {
                max_patients: q.max_patients,
                storage_bytes: q.storage_bytes,
            })
            .unwrap_or(tenantplane_records::store::Limits::NONE);
        use tenantplane_records::bundle::{BundleError, process};
        let (kind, results) = match process(db, body, limits).await {
            Ok(x) => x,
            Err(BundleError::Invalid(issues)) => {
                let mut e =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid-bundle", "Invalid bundle");
                e = e.detail(
                    issues
                        .iter()
                        .map(|i| format!("{}: {}", i.location, i.diagnostics))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                return Err(e);
            }
            Err(BundleError::Entry(i, status, _code, msg)) => {
                return Err(ApiError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    "bundle-entry-failed",
                    "Bundle entry failed",
                )
                .detail(format!("entry {i}: {msg}; nothing was written")));
            }
            Err(BundleError::Store(e)) => return Err(e.into()),
        };
        let mut accesses = Vec::new();
        for r in &results {
            if let Some(v) = &r.version {
                accesses.push(crate::audit::ClinicalAccess {
                    at: time::OffsetDateTime::now_utc(),
                    tenant_id: t.id,
                    user_id: None,
                    operator: Some(operator.to_owned()),
                    action: crate::audit::ClinicalAction::of_entry(r),
                    resource_type: v.rtype.as_str(),
                    resource_id: v.id.clone(),
                    status: r.status,
                    peer: None,
                    request_id: None,
                });
            }
        }
        self.audit.record_bulk(accesses);
        Ok((t.id, kind, results))
    }

    /// What a tenant uses of its plan: requests this month, users.
    pub async fn usage(&self, r: &str) -> ApiResult<tenantplane_core::api::TenantUsage> {
        let t = self.get(r).await?;
        let q = self
            .quotas(&t.plan)
            .ok_or_else(|| ApiError::internal(&"the tenant's plan is not loaded"))?;
        let month = crate::metering::current_month();
        let stored = self.catalog.requests_in(t.id, &month).await?;
        let (users, records) = match self.data.handle(&t) {
            Ok(db) => (
                tenantplane_identity::users::count(db)
                    .await
                    .map_err(ApiError::from)?,
                tenantplane_records::store::usage(db)
                    .await
                    .map_err(ApiError::from)?,
            ),
            // A store not provisioned yet holds nothing.
            Err(_) if !matches!(t.status, TenantStatus::Active | TenantStatus::Suspended) => {
                (0, Default::default())
            }
            Err(e) => return Err(e.into()),
        };
        Ok(tenantplane_core::api::TenantUsage {
            tenant: t.id,
            plan: t.plan.clone(),
            month,
            requests: stored.max(self.meter.used(t.id)),
            requests_limit: q.requests_per_month,
            users,
            users_limit: q.max_users,
            patients: records.patients,
            patients_limit: q.max_patients,
            storage_bytes: records.bytes,
            storage_limit: q.storage_bytes,
        })
    }

    pub async fn admin_reset(&self, r: &str, email: Option<String>) -> ApiResult<AdminCredentials> {
        use tenantplane_identity::users;
        let t = self.get(r).await?;
        if !matches!(t.status, TenantStatus::Active | TenantStatus::Suspended) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tenant-not-ready",
                "Tenant not ready",
            )
            .detail(format!(
                "the tenant is {}; administrators can be reset on active or suspended tenants",
                t.status
            )));
        }
        let email = match email {
            Some(e) => Some(
                e.parse::<tenantplane_core::Email>()
                    .map_err(|e| ApiError::field("/email", e.to_string()))?,
            ),
            None => None,
        };
        let db = self.data.handle(&t)?;
        let admin_role: tenantplane_core::RoleName = tenantplane_core::identity::TENANT_ADMIN
            .parse()
            .map_err(|_| ApiError::internal(&"built-in role name"))?;
        let existing = match &email {
            Some(e) => users::by_email(db, e)
                .await
                .map_err(ApiError::from)?
                .map(|x| x.0),
            None => {
                let mut found = None;
                let mut after = None;
                'pages: loop {
                    let page = users::list(db, after.clone(), 500)
                        .await
                        .map_err(ApiError::from)?;
                    for u in &page {
                        if u.roles.contains(&admin_role)
                            && found
                                .as_ref()
                                .is_none_or(|f: &users::UserRecord| u.created_at < f.created_at)
                        {
                            found = Some(u.clone());
                        }
                    }
                    match page.last() {
                        Some(l) if page.len() == 500 => after = Some(l.email.to_string()),
                        _ => break 'pages,
                    }
                }
                match found {
                    Some(f) => Some(f),
                    None => {
                        return Err(ApiError::field(
                            "/email",
                            "the tenant has no administrator yet; give the new administrator's e-mail",
                        ));
                    }
                }
            }
        };
        let creds = match existing {
            Some(u) => {
                let email = u.email.clone();
                let (u, otp) = self
                    .identity
                    .reset_password(t.id, db, u, std::slice::from_ref(&admin_role))
                    .await?;
                AdminCredentials {
                    tenant: t.id,
                    user_id: u.id,
                    email,
                    created: false,
                    one_time_password: otp,
                }
            }
            None => {
                let Some(email) = email else {
                    return Err(ApiError::field("/email", "required"));
                };
                let max = self
                    .quotas(&t.plan)
                    .map(|q| q.max_users)
                    .unwrap_or(u64::MAX);
                let (u, otp) = self
                    .create_admin(db, email.clone(), admin_role, max)
                    .await?;
                AdminCredentials {
                    tenant: t.id,
                    user_id: u.id,
                    email,
                    created: true,
                    one_time_password: otp,
                }
            }
        };
        tracing::info!(tenant_id = %t.id, user_id = %creds.user_id, created = creds.created, "tenant administrator reset by an operator");
        Ok(creds)
    }

    /// Records that the tenant's store is at schema version `v` (fleet migrations).
    pub async fn set_schema_version(&self, t: &Tenant, v: u32) -> ApiResult<Tenant> {
        self.modify(&t.id.to_string(), None, |x| {
            if x.schema_version < v {
                x.schema_version = v;
            }
            x.record_step(ProvisionStep::StoreCreated, now());
            x.record_step(ProvisionStep::Migrated, now());
            Ok(())
        })
        .await
    }

    /// Retries a `failed` tenant's provisioning: failed → provisioning → pipeline.
    pub async fn retry(&self, r: &str, if_match: Option<u64>) -> ApiResult<Tenant> {
        let t = self
            .transition(r, TenantAction::Retry, None, if_match)
            .await?;
        self.provision(t).await
    }

    /// Finishes (or fails) every tenant left in `provisioning`, e.g. by a crash. Returns how
    /// many were found.
    pub async fn resume_provisioning(&self) -> ApiResult<usize> {
        let mut after = None;
        let mut n = 0;
        loop {
            let page = self
                .catalog
                .list_tenants(&TenantQuery {
                    status: Some(TenantStatus::Provisioning),
                    after,
                    limit: 200,
                    ..Default::default()
                })
                .await?;
            for t in &page.items {
                // Only tenants left by an earlier process: those this one is creating are
                // finished by their own request (which also returns the first admin's
                // one-time password).
                if t.updated_at >= self.started_at {
                    continue;
                }
                n += 1;
                match self.provision(t.clone()).await {
                    Ok(_) => tracing::info!(tenant_id = %t.id, "interrupted provisioning finished"),
                    Err(e) => {
                        tracing::warn!(tenant_id = %t.id, code = e.code, "interrupted provisioning did not finish")
                    }
                }
            }
            after = page.items.last().map(|t| t.id);
            if !page.has_more {
                return Ok(n);
            }
        }
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

    /// All plans.
    pub async fn plans(&self) -> ApiResult<Vec<Plan>> {
        Ok(self.catalog.list_plans().await?)
    }

    /// Edits a plan.
    pub async fn update_plan(
        &self,
        name: &str,
        req: UpdatePlan,
        if_match: Option<u64>,
    ) -> ApiResult<Plan> {
        let name: PlanName = name.parse().map_err(|_| ApiError::not_found("plan"))?;
        let mut errs = ValidationErrors::new();
        if let Some(n) = &req.display_name {
            validate_display_name("/display_name", n, &mut errs);
        }
        if let Some(q) = &req.quotas {
            q.validate("/quotas", &mut errs);
        }
        errs.into_result()?;
        for _ in 0..CAS_ATTEMPTS {
            let mut plan = self
                .catalog
                .get_plan(&name)
                .await?
                .ok_or_else(|| ApiError::not_found("plan"))?;
            let expected = plan.version;
            if let Some(v) = if_match
                && v != expected
            {
                return Err(ApiError::version_mismatch(expected));
            }
            if let Some(n) = &req.display_name {
                plan.display_name = n.trim().to_owned();
            }
            if let Some(q) = req.quotas {
                plan.quotas = q;
            }
            if let Some(i) = req.default_isolation {
                plan.default_isolation = i;
            }
            match self.catalog.update_plan(&plan, expected).await {
                Ok(p) => {
                    tracing::info!(plan = %p.name, version = p.version, "plan updated");
                    if let Err(e) = self.refresh_plans().await {
                        tracing::warn!(code = e.code, "reloading plans failed");
                    }
                    return Ok(p);
                }
                Err(CatalogError::VersionMismatch { current }) if if_match.is_some() => {
                    return Err(ApiError::version_mismatch(current));
                }
                Err(CatalogError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "contention",
            "Too many concurrent changes",
        ))
    }

    /// All operators.
    pub async fn operators(&self) -> ApiResult<Vec<Operator>> {
        Ok(self.catalog.list_operators().await?)
    }

    /// Creates an operator and returns it with its token (shown once).
    pub async fn create_operator(&self, req: CreateOperator) -> ApiResult<(Operator, String)> {
        validate_operator_name(&req.name).map_err(|e| ApiError::field("/name", e))?;
        let token = auth::generate_token();
        let op = Operator {
            id: OperatorId::new(),
            name: req.name,
            role: req.role.unwrap_or(OperatorRole::PlatformAdmin),
            token_hash: auth::hash_token(&token),
            disabled: false,
            created_at: now(),
        };
        self.catalog.create_operator(&op).await?;
        self.operators.invalidate();
        tracing::info!(operator = %op.name, role = %op.role, "operator created");
        Ok((op, token))
    }

    /// Replaces an operator's token (and re-enables it); returns the new token.
    pub async fn reset_operator(&self, id_or_name: &str) -> ApiResult<(Operator, String)> {
        let mut op = self.find_operator(id_or_name).await?;
        let token = auth::generate_token();
        op.token_hash = auth::hash_token(&token);
        op.disabled = false;
        self.catalog.update_operator(&op).await?;
        self.operators.invalidate();
        tracing::info!(operator = %op.name, "operator token reset");
        Ok((op, token))
    }

    /// Disables an operator (its token stops working within seconds on every replica).
    pub async fn disable_operator(
        &self,
        id_or_name: &str,
        caller: &Operator,
    ) -> ApiResult<Operator> {
        let mut op = self.find_operator(id_or_name).await?;
        if op.id == caller.id {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "self-disable",
                "Cannot disable yourself",
            )
            .detail("another platform-admin must disable this operator"));
        }
        op.disabled = true;
        self.catalog.update_operator(&op).await?;
        self.operators.invalidate();
        Ok(op)
    }

    async fn find_operator(&self, id_or_name: &str) -> ApiResult<Operator> {
        let op = match id_or_name.parse::<OperatorId>() {
            Ok(id) => self.catalog.get_operator(id).await?,
            Err(_) => self.catalog.get_operator_by_name(id_or_name).await?,
        };
        op.ok_or_else(|| ApiError::not_found("operator"))
    }

    /// On first start (no operator exists): creates the first operator, from the token in
    /// `token_file` or with a generated token, which is returned so the caller can show it
    /// once. Returns `None` when operators already exist.
    pub async fn bootstrap(
        &self,
        token_file: Option<&Path>,
        name: &str,
    ) -> anyhow::Result<Option<String>> {
        let supplied = match token_file {
            Some(p) => {
                let raw = std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("cannot read bootstrap token file {}: {e}", p.display())
                })?;
                let t = raw.trim().to_owned();
                auth::validate_supplied_token(&t)
                    .map_err(|e| anyhow::anyhow!("bootstrap token file {}: {e}", p.display()))?;
                Some(t)
            }
            None => None,
        };
        if !self.catalog.list_operators().await?.is_empty() {
            if let Some(t) = &supplied {
                let h = auth::hash_token(t);
                if !self
                    .catalog
                    .list_operators()
                    .await?
                    .iter()
                    .any(|o| o.token_hash == h)
                {
                    tracing::warn!("bootstrap token file ignored: operators already exist");
                }
            }
            return Ok(None);
        }
        validate_operator_name(name)
            .map_err(|e| anyhow::anyhow!("bootstrap.operator_name: {e}"))?;
        let (token, show) = match supplied {
            Some(t) => (t, false),
            None => (auth::generate_token(), true),
        };
        let op = Operator {
            id: OperatorId::new(),
            name: name.to_owned(),
            role: OperatorRole::PlatformAdmin,
            token_hash: auth::hash_token(&token),
            disabled: false,
            created_at: now(),
        };
        match self.catalog.create_operator(&op).await {
            Ok(()) => {}
            // Another replica bootstrapped at the same moment.
            Err(CatalogError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.operators.invalidate();
        tracing::info!(operator = %op.name, from_file = !show, "first operator created");
        Ok(show.then_some(token))
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
