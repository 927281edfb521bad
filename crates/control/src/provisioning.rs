//! Tenant creation and the provisioning pipeline: validation, the recorded steps, the
//! first administrator, failure, retry and resumption after a crash.

use tenantplane_catalog::TenantQuery;
use tenantplane_core::{
    DomainName, Profile, ProvisionStep, Slug, Tenant, TenantSeed, TenantStatus, ValidationErrors,
    api::CreateTenant,
    identity::AdminCredentials,
    lifecycle::TenantAction,
    tenant::{validate_display_name, validate_settings},
};
use tenantplane_tenant_data::{DataError, directory};

use crate::{
    Control, ControlError, ControlResult, now,
    tenants::{apply_action, require_provisioning, validate_departments},
};

impl Control {
    /// Creates a tenant: validates everything, records it as `provisioning`, runs the
    /// provisioning steps, and activates it.
    pub async fn create(
        &self,
        req: CreateTenant,
    ) -> ControlResult<(Tenant, Option<AdminCredentials>)> {
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
            .unwrap_or_else(|| self.settings.default_plan.clone());
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
        let labels = req.labels.unwrap_or_default();
        tenantplane_core::tenant::validate_labels("/labels", &labels, &mut errs);
        let departments = validate_departments(&req.departments, &mut errs);
        let isolation = req
            .isolation
            .or(plan.as_ref().map(|p| p.default_isolation))
            .unwrap_or(tenantplane_core::IsolationMode::Sqlite);
        let placement = match crate::placement::place(
            &self.settings.servers,
            &self.index.placement_counts(),
            isolation,
        ) {
            Ok(p) => p,
            Err(msg) => {
                errs.push("/isolation", msg);
                None
            }
        };
        errs.clone().into_result()?;
        let (Some(slug), Some(plan)) = (slug, plan) else {
            return Err(ControlError::Invalid(errs));
        };
        let ts = now();
        let tenant = Tenant {
            custom_domains: domains,
            branding,
            settings,
            labels,
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
        let started = std::time::Instant::now();
        if let Some(t) = self.claim_standby(&tenant).await? {
            self.index.apply([t.clone()], None);
            tracing::info!(tenant_id = %t.id, slug = %t.slug, isolation = %t.isolation, placement = ?t.placement, "tenant created on a standby store");
            if t.status == TenantStatus::Active {
                metrics::histogram!("tenantplane_provision_seconds", "isolation" => t.isolation.as_str())
                    .record(started.elapsed().as_secs_f64());
                return Ok((t, None));
            }
            let mut admin = None;
            let t = self.provision_with_admin(t, &mut admin).await?;
            return Ok((t, admin));
        }
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
    pub async fn provision(&self, t: Tenant) -> ControlResult<Tenant> {
        self.provision_with_admin(t, &mut None).await
    }

    /// Identity for a new tenant: roles, a signing key, and the first administrator when
    /// the seed names one and it does not exist yet (its one-time password is returned).
    pub(crate) async fn provision_identity(
        &self,
        t: &Tenant,
    ) -> Result<Option<AdminCredentials>, DataError> {
        let db = self.data.handle(t)?;
        let to_data = identity_to_data;
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
    pub(crate) async fn create_admin(
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
    ) -> ControlResult<Tenant> {
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
    pub(crate) async fn settled_elsewhere(
        &self,
        id: &str,
        e: ControlError,
    ) -> ControlResult<Tenant> {
        if matches!(e, ControlError::NotProvisioning(_))
            && let Ok(t) = self.get(id).await
            && t.status == TenantStatus::Active
        {
            return Ok(t);
        }
        Err(e)
    }

    /// Marks a tenant `failed` with the reason of a failed provisioning step; returns the
    /// problem to answer.
    pub(crate) async fn fail_provisioning(
        &self,
        id: &str,
        step: &str,
        e: DataError,
    ) -> ControlError {
        let reason = format!("provisioning step '{step}' failed: {}", what_failed(&e));
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
            tracing::warn!(tenant_id = %id, code = err.label(), "could not record the failure");
        }
        ControlError::ProvisioningFailed {
            id: id.to_owned(),
            reason,
        }
    }

    /// Records that the tenant's store is at schema version `v` (fleet migrations).
    pub async fn set_schema_version(&self, t: &Tenant, v: u32) -> ControlResult<Tenant> {
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
    pub async fn retry(&self, r: &str, if_match: Option<u64>) -> ControlResult<Tenant> {
        let t = self
            .transition(r, TenantAction::Retry, None, if_match)
            .await?;
        self.provision(t).await
    }

    /// Finishes (or fails) every tenant left in `provisioning`, e.g. by a crash. Returns how
    /// many were found.
    pub async fn resume_provisioning(&self) -> ControlResult<usize> {
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
                        tracing::warn!(tenant_id = %t.id, code = e.label(), "interrupted provisioning did not finish")
                    }
                }
            }
            after = page.items.last().map(|t| t.id);
            if !page.has_more {
                return Ok(n);
            }
        }
    }
}

/// An identity failure while provisioning, as the store failure it is.
pub(crate) fn identity_to_data(e: tenantplane_identity::IdentityError) -> DataError {
    match e {
        tenantplane_identity::IdentityError::Data(d) => d,
        other => DataError::Db(other.to_string()),
    }
}

/// What an operator is told of a failed step: the kind of failure in our words, never the
/// driver's text (that is logged with the tenant id).
fn what_failed(e: &DataError) -> String {
    match e {
        DataError::Unavailable(_) => "the tenant's store cannot be reached".into(),
        DataError::Busy => "the tenant's store is busy".into(),
        DataError::Migration {
            component, version, ..
        } => format!("migration {component}/{version} failed"),
        DataError::ChecksumMismatch { .. } | DataError::Outdated { .. } => e.to_string(),
        DataError::Foreign(_) => {
            "the store exists and holds data Tenantplane did not create".into()
        }
        DataError::Conflict(_) => "a conflict in the tenant's data".into(),
        DataError::Refused { .. } | DataError::Db(_) => {
            "a database error (see the server log)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_told_the_kind_never_the_driver_text() {
        let secret = "password authentication failed for user \"tp\" at 10.0.0.7";
        for e in [
            DataError::Unavailable(secret.into()),
            DataError::Db(secret.into()),
            DataError::Foreign(secret.into()),
            DataError::Conflict(secret.into()),
            DataError::Migration {
                component: "records".into(),
                version: 3,
                message: secret.into(),
            },
        ] {
            let told = what_failed(&e);
            assert!(!told.contains("10.0.0.7"), "{told}");
        }
        assert_eq!(
            what_failed(&DataError::Migration {
                component: "records".into(),
                version: 3,
                message: String::new()
            }),
            "migration records/3 failed"
        );
    }
}
