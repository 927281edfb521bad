//! The tenants' audit logs as the operator sees them: verification of a tenant's chain,
//! retention (per plan, else per profile) and pruning behind signed checkpoints, and the
//! recording of operators' actions on a tenant into that tenant's log.

use tenantplane_audit::{Activity, Category, Entry, chain::CheckpointKey};
use tenantplane_core::{Profile, Tenant};
use tenantplane_tenant_data::audit_log::{self, Verification};

use crate::{Control, ControlError, ControlResult};

/// Retention by profile when the tenant's plan sets none, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Hospitals.
    pub hospital_days: u32,
    /// Every other profile.
    pub other_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            hospital_days: 7_305,
            other_days: 2_557,
        }
    }
}

/// What a pruning pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Tenants whose log was pruned.
    pub pruned: u64,
    /// Tenants whose chain is broken (never pruned; reported).
    pub broken: u64,
    /// Tenants whose store could not be reached.
    pub failed: u64,
}

impl Control {
    /// The platform's checkpoint signing key (derived from the platform key).
    pub fn audit_key(&self) -> CheckpointKey {
        CheckpointKey::from_seed(self.identity().derived_key("audit-checkpoints"))
    }

    /// Days `t`'s audit log keeps entries: its plan's `audit_retention_days`, else the
    /// deployment's default for its profile.
    pub fn audit_retention_days(&self, t: &Tenant) -> u32 {
        self.quotas(&t.plan)
            .and_then(|q| q.audit_retention_days)
            .unwrap_or(match t.profile {
                Profile::Hospital => self.settings().audit_retention.hospital_days,
                _ => self.settings().audit_retention.other_days,
            })
    }

    /// Seals what is pending in the tenant's log, then walks its whole chain.
    pub async fn verify_audit(&self, r: &str) -> ControlResult<(Tenant, Verification)> {
        let t = self.get(r).await?;
        let db = self.data().handle(&t)?;
        while audit_log::seal(db).await? > 0 {}
        let v = audit_log::verify(db, &self.audit_key()).await?;
        Ok((t, v))
    }

    /// Prunes `t`'s entries older than its retention (at `now_ms`). `Ok(None)`: nothing to
    /// prune; a broken chain is not pruned and is an error naming the break.
    pub async fn prune_audit(&self, t: &Tenant, now_ms: i64) -> ControlResult<Option<i64>> {
        let days = i64::from(self.audit_retention_days(t));
        let before = now_ms.saturating_sub(days * 86_400_000);
        let db = self.data().handle(t)?;
        match audit_log::prune(db, before, &self.audit_key()).await? {
            Ok(seq) => {
                if let Some(seq) = seq {
                    tracing::info!(tenant_id = %t.id, through = seq, days, "audit log pruned behind a checkpoint");
                }
                Ok(seq)
            }
            Err(b) => Err(ControlError::Internal(format!(
                "the audit chain is broken ({b:?}); not pruned"
            ))),
        }
    }

    /// Prunes every active tenant's log past its retention.
    pub async fn prune_audit_due(&self) -> PruneReport {
        let now = tenantplane_audit::now_ms();
        let mut rep = PruneReport::default();
        for t in self.index().all() {
            if t.status != tenantplane_core::TenantStatus::Active
                && t.status != tenantplane_core::TenantStatus::Suspended
            {
                continue;
            }
            match self.prune_audit(&t, now).await {
                Ok(Some(_)) => rep.pruned += 1,
                Ok(None) => {}
                Err(ControlError::Internal(m)) => {
                    tracing::error!(tenant_id = %t.id, problem = %m, "audit chain broken");
                    metrics::counter!("tenantplane_audit_chain_broken_total").increment(1);
                    rep.broken += 1;
                }
                Err(e) => {
                    tracing::warn!(tenant_id = %t.id, error = %e, "audit pruning failed");
                    rep.failed += 1;
                }
            }
        }
        rep
    }

    /// Walks the platform audit log's chain (operators' actions) and reports the first break.
    pub async fn verify_platform_audit(&self) -> ControlResult<Verification> {
        use tenantplane_audit::chain::{ChainCheck, hex, platform_genesis};
        let (head_seq, head_hash) = self
            .catalog()
            .platform_audit_head()
            .await?
            .unwrap_or((0, platform_genesis().to_vec()));
        let mut walk = ChainCheck::start(0, platform_genesis());
        let mut after = 0;
        'pages: loop {
            let page = self.catalog().platform_audit_after(after, 10_000).await?;
            let n = page.len();
            for r in &page {
                after = r.seq;
                if !walk.next(r.seq, &r.entry, &r.hash) {
                    break 'pages;
                }
            }
            if n < 10_000 {
                break;
            }
        }
        let v = walk.finish(head_seq, &head_hash);
        Ok(Verification {
            checked: v.checked,
            head_seq,
            head_hash: hex(&head_hash),
            checkpoint_seq: 0,
            unsealed: 0,
            broken: v.broken,
        })
    }

    /// Records an operator's action on tenant `t` in the tenant's own log; `origin` is the
    /// request's (client address, request id) when it came over the API.
    pub fn audit_operator(
        &self,
        t: &Tenant,
        operator: &str,
        action: &str,
        detail: serde_json::Value,
        origin: (Option<String>, Option<String>),
    ) {
        let entry = Entry::now(
            Category::Operator,
            action,
            "E",
            format!("operator/{}", operator.chars().take(64).collect::<String>()),
        )
        .entity("Tenant")
        .detail(&detail)
        .origin(origin.0, origin.1);
        self.audit().activity(Activity {
            tenant_id: t.id,
            entry,
            in_store: false,
        });
    }
}
