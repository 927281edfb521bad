//! The standby pool: tenant stores provisioned ahead of demand, so a sign-up claims a ready
//! store instead of creating one.
//!
//! Per isolation mode and server (`[tenants.standby]` sizes), a background pass keeps the
//! configured number of stores `ready`: created, migrated to the binary's schema version,
//! given a signing key and the roles every profile has, under a tenant id minted for the
//! tenant that will claim it. [`Control::create`](crate::Control::create) claims one in the
//! same catalog transaction that records the tenant (see `tenantplane_catalog::StandbyStore`),
//! so a store is never handed out twice and never claimed without its tenant; when none is
//! ready it falls back to the cold path.
//!
//! The pass also finishes what a crash left: a store recorded `preparing` by an earlier
//! process is prepared again (every step is idempotent), a `retiring` one is dropped; stores
//! at an older schema version are migrated like tenants (and only stores at the binary's
//! version are claimable, so an unmigrated one is never handed out); stores beyond the
//! configured size, or of a mode or server no longer configured, are retired.

use std::collections::{BTreeMap, HashMap};

use tenantplane_catalog::{StandbyState, StandbyStore};
use tenantplane_core::{IsolationMode, PlanName, Profile, Slug, Tenant, api::StandbyPool};
use tenantplane_tenant_data::DataError;

use crate::{Control, ControlError, ControlResult, now};

/// What one pass of [`Control::refill_standby`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StandbyPass {
    /// Stores created (or finished after a crash) and now ready.
    pub prepared: usize,
    /// Stores brought to the binary's schema version.
    pub migrated: usize,
    /// Stores dropped (pool shrank, mode or server gone, or retirement resumed).
    pub retired: usize,
    /// Stores whose preparation, migration or retirement failed (retried next pass).
    pub failed: usize,
}

/// The pool a store belongs to.
type PoolKey = (IsolationMode, Option<String>);

/// The roles standby stores are prepared with: those of every profile. A tenant whose
/// profile has more gets them at claim time.
const STANDBY_PROFILE: Profile = Profile::Other;

/// Whether a tenant of `profile` needs roles beyond those a standby store has.
pub(crate) fn needs_more_roles(profile: Profile) -> bool {
    tenantplane_core::identity::builtin_roles_for(profile).len()
        > tenantplane_core::identity::builtin_roles_for(STANDBY_PROFILE).len()
}

impl Control {
    /// Configured pool sizes: sqlite once, each PostgreSQL mode once per server taking it.
    pub fn standby_targets(&self) -> BTreeMap<PoolKey, usize> {
        let size = |m: IsolationMode| self.settings.standby.get(&m).copied().unwrap_or(0);
        let mut out = BTreeMap::new();
        if size(IsolationMode::Sqlite) > 0 {
            out.insert((IsolationMode::Sqlite, None), size(IsolationMode::Sqlite));
        }
        for (server, modes) in &self.settings.servers {
            for m in modes {
                if *m != IsolationMode::Sqlite && size(*m) > 0 {
                    out.insert((*m, Some(server.clone())), size(*m));
                }
            }
        }
        out
    }

    /// Wakes the background refill (after a claim or a miss).
    pub(crate) fn wake_standby(&self) {
        self.standby_wake.notify_one();
    }

    /// Waits until a claim asks for a refill (the background task's trigger).
    pub async fn standby_wanted(&self) {
        self.standby_wake.notified().await;
    }

    /// Claims a ready standby store for `tenant` (validated, placed, not yet recorded) and
    /// records it: `None` when the pool of its mode and server is empty or not configured
    /// (the caller takes the cold path). A tenant with nothing more to set up (no seeded
    /// departments, no first administrator, no profile roles beyond the common ones) is
    /// recorded `active` in that same transaction — ready to serve.
    pub(crate) async fn claim_standby(&self, tenant: &Tenant) -> ControlResult<Option<Tenant>> {
        let key = (tenant.isolation, tenant.placement.clone());
        if !self.standby_targets().contains_key(&key) {
            return Ok(None);
        }
        let at = tenant.created_at;
        let mut t = tenant.clone();
        t.schema_version = self.data.schema_version();
        t.record_step(tenantplane_core::ProvisionStep::StoreCreated, at);
        t.record_step(tenantplane_core::ProvisionStep::Migrated, at);
        let complete = t.seed.departments.is_empty()
            && t.seed.admin_email.is_none()
            && !needs_more_roles(t.profile);
        if complete {
            t.record_step(tenantplane_core::ProvisionStep::IdentityReady, at);
            crate::apply_action(
                &mut t,
                tenantplane_core::lifecycle::TenantAction::Activate,
                None,
                time::Duration::ZERO,
            )?;
            t.record_step(tenantplane_core::ProvisionStep::Activated, at);
        }
        let claimed = self.catalog.create_tenant_on_standby(&t).await?;
        self.wake_standby();
        let outcome = if claimed.is_some() { "hit" } else { "miss" };
        metrics::counter!("tenantplane_standby_claims_total", "isolation" => t.isolation.as_str(), "outcome" => outcome)
            .increment(1);
        Ok(claimed)
    }

    /// One pass over the pools: finish interrupted work, migrate outdated stores, retire
    /// extra ones and prepare missing ones. Failures are logged and counted; the pass goes on.
    pub async fn refill_standby(&self) -> ControlResult<StandbyPass> {
        let need = self.data.schema_version();
        let targets = self.standby_targets();
        let mut pass = StandbyPass::default();
        let mut live: HashMap<PoolKey, usize> = HashMap::new();
        for m in self.catalog.list_standby().await? {
            let key = (m.isolation, m.placement.clone());
            let keep = targets.get(&key).copied().unwrap_or(0);
            let result = match m.state {
                StandbyState::Retiring => self.retire(&m).await.map(|()| pass.retired += 1),
                // Left by an earlier process (one preparing now is another replica's).
                StandbyState::Preparing if m.updated_at < self.started_at => {
                    *live.entry(key).or_default() += 1;
                    self.prepare(&m).await.map(|()| pass.prepared += 1)
                }
                StandbyState::Preparing => {
                    *live.entry(key).or_default() += 1;
                    Ok(())
                }
                StandbyState::Ready if live.get(&key).copied().unwrap_or(0) >= keep => {
                    if self
                        .catalog
                        .set_standby(
                            m.id,
                            StandbyState::Ready,
                            StandbyState::Retiring,
                            m.schema_version,
                        )
                        .await?
                    {
                        self.retire(&m).await.map(|()| pass.retired += 1)
                    } else {
                        Ok(()) // claimed meanwhile
                    }
                }
                StandbyState::Ready => {
                    *live.entry(key).or_default() += 1;
                    if m.schema_version < need {
                        self.migrate_standby(&m).await.map(|()| pass.migrated += 1)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(e) = result {
                pass.failed += 1;
                tracing::warn!(store = %m.id, isolation = %m.isolation, error = %e, "standby store maintenance failed");
            }
        }
        for (key, size) in targets {
            let mut have = live.get(&key).copied().unwrap_or(0);
            while have < size {
                let m = StandbyStore::new(key.0, key.1.clone(), now());
                if !self.catalog.add_standby(&m, size).await? {
                    break; // another replica filled it
                }
                have += 1;
                match self.prepare(&m).await {
                    Ok(()) => pass.prepared += 1,
                    Err(e) => {
                        pass.failed += 1;
                        tracing::warn!(store = %m.id, isolation = %m.isolation, error = %e, "standby store preparation failed");
                        break; // the row stays `preparing`; the next process resumes it
                    }
                }
            }
        }
        if pass != StandbyPass::default() {
            tracing::info!(?pass, "standby pool refilled");
        }
        Ok(pass)
    }

    /// The pools for `placement list`: per mode and server, the target and the stores by
    /// state (`outdated`: ready but not at this binary's schema version).
    pub async fn standby_pools(&self) -> ControlResult<Vec<(Option<String>, StandbyPool)>> {
        let need = self.data.schema_version();
        let mut pools: BTreeMap<PoolKey, StandbyPool> = self
            .standby_targets()
            .into_iter()
            .map(|((m, p), target)| ((m, p), StandbyPool::new(m, target as u64)))
            .collect();
        for s in self.catalog.list_standby().await? {
            let p = pools
                .entry((s.isolation, s.placement.clone()))
                .or_insert_with(|| StandbyPool::new(s.isolation, 0));
            match s.state {
                StandbyState::Ready if s.schema_version == need => p.ready += 1,
                StandbyState::Ready => p.outdated += 1,
                StandbyState::Preparing => p.preparing += 1,
                StandbyState::Retiring => p.retiring += 1,
            }
        }
        Ok(pools.into_iter().map(|((_, p), v)| (p, v)).collect())
    }

    /// Creates, migrates and sets up a store (idempotent), then marks it ready.
    async fn prepare(&self, m: &StandbyStore) -> Result<(), PassError> {
        let report = self.data.provision(&self.member(m, 0)?).await?;
        let t = self.member(m, report.schema_version)?;
        let db = self.data.handle(&t)?;
        self.identity
            .provision(t.id, STANDBY_PROFILE, db)
            .await
            .map_err(crate::provisioning::identity_to_data)?;
        self.catalog
            .set_standby(
                m.id,
                StandbyState::Preparing,
                StandbyState::Ready,
                report.schema_version,
            )
            .await?;
        Ok(())
    }

    /// Brings a ready store to the binary's schema version.
    async fn migrate_standby(&self, m: &StandbyStore) -> Result<(), PassError> {
        let report = self
            .data
            .migrate(&self.member(m, m.schema_version)?)
            .await?;
        self.catalog
            .set_standby(
                m.id,
                StandbyState::Ready,
                StandbyState::Ready,
                report.schema_version,
            )
            .await?;
        Ok(())
    }

    /// Drops a retiring store, then forgets it.
    async fn retire(&self, m: &StandbyStore) -> Result<(), PassError> {
        self.data
            .drop_tenant(&self.member(m, m.schema_version)?)
            .await?;
        self.catalog.remove_standby(m.id).await?;
        Ok(())
    }

    /// Fleet migrations: brings every ready store to the binary's schema version; returns
    /// how many were migrated and how many failed.
    pub async fn migrate_standby_pool(&self) -> ControlResult<(usize, usize)> {
        let need = self.data.schema_version();
        let (mut done, mut failed) = (0, 0);
        for m in self.catalog.list_standby().await? {
            if m.state == StandbyState::Ready && m.schema_version < need {
                match self.migrate_standby(&m).await {
                    Ok(()) => done += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(store = %m.id, error = %e, "standby store migration failed");
                    }
                }
            }
        }
        Ok((done, failed))
    }

    /// The tenant record a store is reached through (it has no tenant yet).
    fn member(&self, m: &StandbyStore, schema_version: u32) -> Result<Tenant, PassError> {
        let slug: Slug = "standby-store"
            .parse()
            .map_err(|_| PassError::Internal("standby slug"))?;
        let plan: PlanName = self
            .settings
            .default_plan
            .parse()
            .map_err(|_| PassError::Internal("default plan name"))?;
        let mut t = Tenant::new(
            slug,
            "standby".into(),
            STANDBY_PROFILE,
            plan,
            m.isolation,
            now(),
        );
        t.id = m.id;
        t.placement = m.placement.clone();
        t.schema_version = schema_version;
        Ok(t)
    }
}

/// Why maintaining one store failed (logged; the pass goes on).
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Internal(&'static str),
}

impl From<tenantplane_catalog::CatalogError> for PassError {
    fn from(e: tenantplane_catalog::CatalogError) -> Self {
        Self::Control(e.into())
    }
}
