//! Fleet migrations: every tenant store brought to the binary's schema version.
//!
//! The catalog records each tenant's schema version, so `status` and a no-op `run` read the
//! catalog only (one indexed query), never the tenant stores. A run migrates the tenants
//! behind — a canary wave first (halting on any failure), then the rest with bounded
//! concurrency (at most `concurrency` at once, and at most half of each server's connection
//! budget on that server). Each tenant's migration is transactional per step with a ledger in
//! the tenant's store, and the catalog is updated after it: a run killed at any point is
//! completed by the next one, with no tenant skipped or any step applied twice. One tenant's
//! failure is reported and retried by the next run; it never stops the others.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use serde::Serialize;
use tenantplane_catalog::TenantQuery;
use tenantplane_core::{IsolationMode, ProvisionStep, Tenant, TenantRef, TenantStatus};
use tokio::sync::Semaphore;

use crate::{Control, ControlError, ControlResult};

/// One line of `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRow {
    /// Isolation mode.
    pub isolation: IsolationMode,
    /// Recorded schema version.
    pub schema_version: u32,
    /// Tenants.
    pub tenants: u64,
}

/// `migrate status`: versions × tenant counts, from the catalog alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// The version this binary serves.
    pub target: u32,
    /// Tenants per mode and version (deleted and still-provisioning tenants excluded).
    pub rows: Vec<StatusRow>,
    /// Tenants at the target.
    pub up_to_date: u64,
    /// Tenants below it (what `migrate run` would migrate).
    pub behind: u64,
    /// Tenants above it (migrated by a newer binary; not served by this one).
    pub ahead: u64,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tenants in the canary wave (migrated first; any failure halts the run).
    pub canary: usize,
    /// Only these tenants (ids or slugs).
    pub tenants: Option<Vec<String>>,
    /// Most tenants migrated at once.
    pub concurrency: usize,
}

/// Progress events (JSON lines when not on a terminal).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress {
    /// What the run will do.
    Plan {
        /// Target schema version.
        target: u32,
        /// Tenants to migrate.
        total: u64,
        /// Of which in the canary wave.
        canary: u64,
    },
    /// One tenant finished (or failed).
    Tenant {
        /// Tenant id.
        id: String,
        /// Slug.
        slug: String,
        /// Whether it was in the canary wave.
        canary: bool,
        /// Version before.
        from: u32,
        /// Version after (unchanged on failure).
        to: u32,
        /// Steps applied, as `component/version`.
        applied: Vec<String>,
        /// The error, on failure.
        error: Option<String>,
        /// Milliseconds taken.
        ms: u64,
        /// Tenants finished so far.
        done: u64,
        /// Tenants in the run.
        total: u64,
    },
    /// The canary wave failed; nothing else was touched.
    Halted {
        /// Why.
        reason: String,
    },
    /// The run ended.
    Done {
        /// Tenants migrated.
        migrated: u64,
        /// Tenants that failed (retried by the next run).
        failed: u64,
        /// Whether the run halted after the canary wave.
        halted: bool,
        /// Milliseconds taken.
        ms: u64,
    },
}

/// A run's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Tenants considered.
    pub total: u64,
    /// Migrated.
    pub migrated: u64,
    /// Failed: (slug, error).
    pub failed: Vec<(String, String)>,
    /// Halted after a failing canary wave.
    pub halted: bool,
    /// Standby stores brought to the binary's version (whole-fleet runs that did not halt).
    pub standby_migrated: u64,
}

/// A progress sink.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

const MIGRATABLE: [TenantStatus; 4] = [
    TenantStatus::Active,
    TenantStatus::Suspended,
    TenantStatus::Deleting,
    TenantStatus::Failed,
];

/// Fleet status from the catalog.
pub async fn status(svc: &Control) -> ControlResult<FleetStatus> {
    let target = svc.data().schema_version();
    let mut rows: HashMap<(IsolationMode, u32), u64> = HashMap::new();
    let (mut up, mut behind, mut ahead) = (0, 0, 0);
    for c in svc.catalog().tenant_counts().await? {
        if matches!(c.status, TenantStatus::Deleted | TenantStatus::Provisioning) {
            continue;
        }
        *rows.entry((c.isolation, c.schema_version)).or_default() += c.count;
        match c.schema_version.cmp(&target) {
            std::cmp::Ordering::Equal => up += c.count,
            std::cmp::Ordering::Less => behind += c.count,
            std::cmp::Ordering::Greater => ahead += c.count,
        }
    }
    let mut rows: Vec<StatusRow> = rows
        .into_iter()
        .map(|((isolation, schema_version), tenants)| StatusRow {
            isolation,
            schema_version,
            tenants,
        })
        .collect();
    rows.sort_by_key(|r| (r.isolation.as_str(), r.schema_version));
    Ok(FleetStatus {
        target,
        rows,
        up_to_date: up,
        behind,
        ahead,
    })
}

async fn candidates(svc: &Control, opts: &RunOptions, target: u32) -> ControlResult<Vec<Tenant>> {
    let mut out = Vec::new();
    if let Some(names) = &opts.tenants {
        for n in names {
            let r: TenantRef = n.parse().map_err(|_| {
                ControlError::field("/tenants", format!("'{n}' is not a tenant id or slug"))
            })?;
            let t = svc
                .catalog()
                .get_tenant(&r)
                .await?
                .ok_or_else(|| ControlError::NoSuchTenant(n.clone()))?;
            if t.schema_version < target && MIGRATABLE.contains(&t.status) && !out.contains(&t) {
                out.push(t);
            }
        }
        return Ok(out);
    }
    let mut after = None;
    loop {
        let page = svc
            .catalog
            .list_tenants(&TenantQuery {
                schema_below: Some(target),
                after,
                limit: 500,
                ..Default::default()
            })
            .await?;
        after = page.items.last().map(|t| t.id);
        out.extend(
            page.items
                .into_iter()
                .filter(|t| MIGRATABLE.contains(&t.status)),
        );
        if !page.has_more {
            return Ok(out);
        }
    }
}

/// Migrates one tenant and records its new version in the catalog.
async fn migrate_one(svc: &Control, t: &Tenant) -> Result<Vec<String>, String> {
    // Tenants recorded before they had a store (older releases) get one now.
    let res = if t.has_step(ProvisionStep::StoreCreated) {
        svc.data().migrate(t).await
    } else {
        svc.data().provision(t).await
    };
    let report = res.map_err(|e| e.to_string())?;
    let v = report.schema_version;
    svc.set_schema_version(t, v)
        .await
        .map_err(|e| format!("recording version {v} in the catalog: {}", e.label()))?;
    Ok(report.applied)
}

/// Runs a fleet migration.
pub async fn run(
    svc: &Arc<Control>,
    opts: RunOptions,
    progress: ProgressFn,
) -> ControlResult<RunReport> {
    let started = Instant::now();
    let target = svc.data().schema_version();
    let tenants = candidates(svc, &opts, target).await?;
    let total = tenants.len() as u64;
    let canary_n = opts.canary.min(tenants.len());
    progress(&Progress::Plan {
        target,
        total,
        canary: canary_n as u64,
    });
    let mut report = RunReport {
        total,
        ..Default::default()
    };
    let done = Arc::new(AtomicU64::new(0));
    let (canary, rest) = tenants.split_at(canary_n);
    let waves: [(&[Tenant], bool); 2] = [(canary, true), (rest, false)];
    for (wave, is_canary) in waves {
        let failed = run_wave(
            svc,
            wave,
            is_canary,
            &opts,
            total,
            &done,
            &progress,
            &mut report,
        )
        .await;
        if is_canary && failed > 0 {
            report.halted = true;
            progress(&Progress::Halted {
                reason: format!(
                    "{failed} of {canary_n} canary tenants failed; the rest were not touched"
                ),
            });
            break;
        }
    }
    // The standby pool is part of the fleet: its stores are migrated like tenants (and a store
    // not at the binary's version is never claimed meanwhile).
    if !report.halted && opts.tenants.is_none() {
        let (n, failed) = svc.migrate_standby_pool().await?;
        report.standby_migrated = n as u64;
        if failed > 0 {
            tracing::warn!(
                failed,
                "standby stores not migrated (retried by the refill)"
            );
        }
    }
    progress(&Progress::Done {
        migrated: report.migrated,
        failed: report.failed.len() as u64,
        halted: report.halted,
        ms: started.elapsed().as_millis() as u64,
    });
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_wave(
    svc: &Arc<Control>,
    wave: &[Tenant],
    is_canary: bool,
    opts: &RunOptions,
    total: u64,
    done: &Arc<AtomicU64>,
    progress: &ProgressFn,
    report: &mut RunReport,
) -> usize {
    let global = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let per_server: HashMap<String, Arc<Semaphore>> = svc
        .data
        .servers()
        .map(|s| {
            let budget = s.usage().budget;
            (
                s.name().to_owned(),
                Arc::new(Semaphore::new((budget / 2).max(1))),
            )
        })
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for t in wave.iter().cloned() {
        let (svc, global, done, progress) =
            (svc.clone(), global.clone(), done.clone(), progress.clone());
        let server = t
            .placement
            .as_ref()
            .and_then(|p| per_server.get(p))
            .cloned();
        set.spawn(async move {
            let _g = global.acquire_owned().await;
            let _s = match server {
                Some(s) => Some(s.acquire_owned().await),
                None => None,
            };
            let t0 = Instant::now();
            let res = migrate_one(&svc, &t).await;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            let (to, applied, error) = match &res {
                Ok(applied) => (svc.data().schema_version(), applied.clone(), None),
                Err(e) => (t.schema_version, Vec::new(), Some(e.clone())),
            };
            if let Some(e) = &error {
                tracing::warn!(tenant_id = %t.id, error = %e, "tenant migration failed");
                metrics::counter!("tenantplane_fleet_migration_failures_total",
                    "isolation" => t.isolation.as_str())
                .increment(1);
            } else {
                metrics::counter!("tenantplane_fleet_migrations_total",
                    "isolation" => t.isolation.as_str())
                .increment(1);
            }
            progress(&Progress::Tenant {
                id: t.id.to_string(),
                slug: t.slug.to_string(),
                canary: is_canary,
                from: t.schema_version,
                to,
                applied,
                error,
                ms: t0.elapsed().as_millis() as u64,
                done: n,
                total,
            });
            (t.slug.to_string(), res)
        });
    }
    let mut failed = 0;
    while let Some(j) = set.join_next().await {
        match j {
            Ok((_, Ok(_))) => report.migrated += 1,
            Ok((slug, Err(e))) => {
                failed += 1;
                report.failed.push((slug, e));
            }
            Err(e) => {
                failed += 1;
                report
                    .failed
                    .push(("?".into(), format!("task failed: {e}")));
            }
        }
    }
    failed
}
