//! Operator actions on one tenant's data: FHIR import, usage against the plan's quotas
//! and the administrator reset.

use tenantplane_core::{Tenant, TenantStatus, identity::AdminCredentials};

use crate::{Control, ControlError, ControlResult};

/// Whether the tenant has the FHIR records module: the setting `records` (or
/// `modules.records`), on by default for hospitals.
pub fn records_enabled(t: &Tenant) -> bool {
    t.settings
        .get("records")
        .or_else(|| t.settings.get("modules").and_then(|m| m.get("records")))
        .and_then(|v| v.as_bool())
        .unwrap_or(t.profile == tenantplane_core::Profile::Hospital)
}

impl Control {
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
    ) -> ControlResult<(
        tenantplane_core::TenantId,
        tenantplane_records::bundle::Kind,
        Vec<tenantplane_records::bundle::EntryResult>,
    )> {
        let t = self.get(r).await?;
        if t.status != TenantStatus::Active {
            return Err(ControlError::TenantNotReady(format!(
                "the tenant is {}; imports need an active tenant",
                t.status
            )));
        }
        if !records_enabled(&t) {
            return Err(ControlError::RecordsDisabled);
        }
        let db = self.data.handle(&t)?;
        let limits = tenantplane_records::store::Limits::of(self.quotas(&t.plan));
        use tenantplane_records::bundle::{BundleError, process};
        let who = tenantplane_records::store::Actor {
            agent: format!("operator/{}", operator.chars().take(64).collect::<String>()),
            peer: None,
            request_id: None,
        };
        let (kind, results) = match process(db, body, limits, &who).await {
            Ok(x) => x,
            Err(BundleError::Invalid(issues)) => {
                return Err(ControlError::InvalidBundle(BundleError::issues_detail(
                    &issues,
                )));
            }
            Err(BundleError::Entry(i, status, _code, msg)) => {
                return Err(ControlError::BundleEntryFailed {
                    index: i,
                    status,
                    message: msg,
                });
            }
            Err(BundleError::Store(e)) => return Err(e.into()),
        };
        let mut accesses = Vec::new();
        for r in &results {
            if let Some(v) = &r.version {
                accesses.push(tenantplane_audit::ClinicalAccess {
                    at: time::OffsetDateTime::now_utc(),
                    tenant_id: t.id,
                    user_id: None,
                    operator: Some(operator.to_owned()),
                    action: tenantplane_audit::ClinicalAction::of_entry(r.wrote, r.status),
                    resource_type: v.rtype.as_str(),
                    resource_id: v.id.clone(),
                    status: r.status,
                    peer: None,
                    request_id: None,
                    // A write's entry committed with it.
                    in_store: r.wrote,
                });
            }
        }
        self.audit.accesses(accesses);
        self.audit_operator(
            &t,
            operator,
            "import",
            serde_json::json!({"entries": results.len()}),
            (None, None),
        );
        Ok((t.id, kind, results))
    }

    /// CPU nanoseconds in the usage ledger for `tenant` this month (every replica's
    /// flushes).
    async fn cpu_this_month(&self, tenant: tenantplane_core::TenantId) -> ControlResult<u64> {
        use tenantplane_catalog::usage::UsageQuery;
        let now = time::OffsetDateTime::now_utc();
        let start = now
            .replace_day(1)
            .map(|d| d.replace_time(time::Time::MIDNIGHT))
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .unix_timestamp();
        let to = now.unix_timestamp() + 3_600;
        let sums = self
            .catalog
            .usage(&UsageQuery {
                from: start,
                to,
                step: to - start,
                tenant: Some(tenant),
            })
            .await?;
        Ok(sums
            .iter()
            .filter(|s| s.meter == "cpu_nanos")
            .map(|s| s.value.max(0) as u64)
            .sum())
    }

    /// What a tenant uses of its plan: requests this month, users.
    pub async fn usage(&self, r: &str) -> ControlResult<tenantplane_core::api::TenantUsage> {
        let t = self.get(r).await?;
        let q = self
            .quotas(&t.plan)
            .ok_or_else(|| ControlError::Internal("the tenant's plan is not loaded".into()))?;
        let month = tenantplane_metering::current_month();
        let stored = self.catalog.requests_in(t.id, &month).await?;
        let cpu_flushed = self.cpu_this_month(t.id).await?;
        let (users, records) = match self.data.handle(&t) {
            Ok(db) => (
                tenantplane_identity::users::count(db).await?,
                tenantplane_records::store::usage(db).await?,
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
            cpu_nanos: cpu_flushed.saturating_add(self.meter.usage().pending_cpu(t.id)),
        })
    }

    pub async fn admin_reset(
        &self,
        r: &str,
        email: Option<String>,
    ) -> ControlResult<AdminCredentials> {
        use tenantplane_identity::users;
        let t = self.get(r).await?;
        if !matches!(t.status, TenantStatus::Active | TenantStatus::Suspended) {
            return Err(ControlError::TenantNotReady(format!(
                "the tenant is {}; administrators can be reset on active or suspended tenants",
                t.status
            )));
        }
        let email = match email {
            Some(e) => Some(
                e.parse::<tenantplane_core::Email>()
                    .map_err(|e| ControlError::field("/email", e.to_string()))?,
            ),
            None => None,
        };
        let db = self.data.handle(&t)?;
        let admin_role: tenantplane_core::RoleName = tenantplane_core::identity::TENANT_ADMIN
            .parse()
            .map_err(|_| ControlError::Internal("built-in role name".into()))?;
        let existing = match &email {
            Some(e) => users::by_email(db, e).await?.map(|x| x.0),
            None => {
                let mut found = None;
                let mut after = None;
                'pages: loop {
                    let page = users::list(db, after.clone(), 500).await?;
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
                        return Err(ControlError::field(
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
                    return Err(ControlError::field("/email", "required"));
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
}
