//! The server's background tasks: the tenant index and plan refresh, the purge of deleted
//! tenants and the release of idle memory, interrupted provisioning and fleet migrations at
//! start, rate-limit housekeeping, the metering flush, and the sampling of store sizes.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::Server;

impl Server {
    pub(super) fn spawn_background(
        &self,
        cancel: CancellationToken,
        probe_base: Option<String>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let svc = self.state.control.clone();
        let poll = Duration::from_millis(self.config.catalog.poll_interval_ms);
        let c1 = cancel.clone();
        let c3 = cancel.clone();
        let c4 = cancel.clone();
        let c5 = cancel.clone();
        let c6 = cancel.clone();
        let poller = tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = c1.cancelled() => break,
                    _ = tick.tick() => {
                        match svc.sync_index().await {
                            Ok(n) if n > 0 => tracing::debug!(changed = n, "tenant index refreshed"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "tenant index refresh failed"),
                        }
                        metrics::gauge!("tenantplane_tenants_indexed").set(svc.index().len() as f64);
                        if let Err(e) = svc.refresh_plans().await {
                            tracing::warn!(error = %e, "plan refresh failed");
                        }
                    }
                }
            }
        });
        let svc = self.state.control.clone();
        let every = Duration::from_secs(self.config.tenants.purge_interval_secs.max(1));
        let idle_every =
            Duration::from_secs((self.config.data.sqlite_idle_close_secs / 2).clamp(1, 10));
        let purger = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut idle_tick = tokio::time::interval(idle_every);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = svc.purge_due().await {
                            tracing::warn!(error = %e, "purge run failed");
                        }
                    }
                    _ = idle_tick.tick() => {
                        let freed = svc.identity().hasher().trim(Duration::from_secs(10));
                        if freed > 0 {
                            tracing::debug!(bytes = freed, "freed idle Argon2 memory");
                        }
                        match svc.data().sqlite().close_idle().await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(closed = n, "closed idle tenant databases"),
                            Err(e) => tracing::warn!(error = %e, "closing idle tenant databases failed"),
                        }
                    }
                }
            }
        });
        // At start: finish tenants left mid-provisioning, then (if configured) bring every
        // tenant store to this binary's schema version. Tenants are served as soon as their
        // own store is at the version (the handle checks), not after the whole fleet.
        let svc = self.state.control.clone();
        let migrate = self.config.data.migrate_on_start;
        let concurrency = self.config.data.migrate_concurrency;
        // Compile the FHIR schema validators of the common types off the request path.
        tokio::task::spawn_blocking(|| {
            tenantplane_records::validate::warm_up(tenantplane_records::validate::COMMON_TYPES)
        });
        let startup = tokio::spawn(async move {
            match svc.resume_provisioning().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tenants = n, "resumed interrupted provisioning"),
                Err(e) => tracing::warn!(error = %e, "resuming provisioning failed"),
            }
            if migrate {
                let opts = tenantplane_control::fleet::RunOptions {
                    canary: 0,
                    tenants: None,
                    concurrency,
                };
                let log: tenantplane_control::fleet::ProgressFn = Arc::new(|p| {
                    if let tenantplane_control::fleet::Progress::Done {
                        migrated,
                        failed,
                        ms,
                        ..
                    } = p
                        && (*migrated > 0 || *failed > 0)
                    {
                        tracing::info!(migrated, failed, ms, "tenant stores migrated at start");
                    }
                });
                if let Err(e) = tenantplane_control::fleet::run(&svc, opts, log).await {
                    tracing::warn!(error = %e, "migrating tenant stores at start failed");
                }
            }
        });
        let limits = self.state.limits.clone();
        let housekeeping = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = c3.cancelled() => break,
                    _ = tick.tick() => {
                        limits.housekeeping();
                        metrics::gauge!("tenantplane_rate_limit_tracked_ips").set(limits.tracked_ips() as f64);
                    }
                }
            }
        });
        let svc = self.state.control.clone();
        let m = &self.config.metering;
        let policy = tenantplane_metering::LedgerPolicy {
            every: Duration::from_secs(m.flush_interval_secs.max(1)),
            minute_rows_for: Duration::from_secs(m.minute_rows_hours.max(1) * 3_600),
            event_keys_for: Duration::from_secs(m.event_key_days.max(1) * 86_400),
        };
        let metering = tokio::spawn(tenantplane_metering::flush_loop(
            svc.meter().clone(),
            svc.catalog().clone(),
            policy,
            c4,
        ));
        let svc = self.state.control.clone();
        let every = Duration::from_secs(self.config.tenants.standby_refill_secs.max(1));
        let standby = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = c5.cancelled() => break,
                    _ = tick.tick() => {}
                    _ = svc.standby_wanted() => {}
                }
                if let Err(e) = svc.refill_standby().await {
                    tracing::warn!(code = e.label(), error = %e, "standby refill failed");
                }
            }
        });
        let sampler = self.sampler(c6.clone());
        let alerting = self.alerting(c6.clone());
        let red = self.red_top_tenants(c6.clone());
        let probe = self.uptime_probe(c6.clone(), probe_base);
        let pruner = self.audit_pruner(c6.clone());
        let saturation = self.saturation(c6);
        vec![
            pruner,
            poller,
            purger,
            startup,
            housekeeping,
            metering,
            standby,
            sampler,
            alerting,
            red,
            probe,
            saturation,
        ]
    }

    /// Prunes the tenants' audit logs past their retention every
    /// `audit.prune_interval_secs` (the first pass ten minutes after start).
    fn audit_pruner(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let svc = self.state.control.clone();
        let every = self.config.audit.prune_interval_secs;
        tokio::spawn(async move {
            if every == 0 {
                return;
            }
            let start = tokio::time::Instant::now() + Duration::from_secs(600.min(every));
            let mut tick = tokio::time::interval_at(start, Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        let r = svc.prune_audit_due().await;
                        tracing::info!(pruned = r.pruned, broken = r.broken, failed = r.failed,
                            "audit retention pass");
                    }
                }
            }
        })
    }

    /// Samples every tenant's store size and counts each `metering.sample_interval_secs`
    /// (the first pass a minute after start).
    fn sampler(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let svc = self.state.control.clone();
        let every = self.config.metering.sample_interval_secs;
        tokio::spawn(async move {
            if every == 0 {
                return;
            }
            let first = tokio::time::Instant::now() + Duration::from_secs(60.min(every));
            let mut tick = tokio::time::interval_at(first, Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match svc.sample_stores().await {
                    Ok(n) => tracing::debug!(tenants = n, "store sizes sampled"),
                    Err(e) => {
                        tracing::warn!(code = e.label(), error = %e, "store sizes not sampled")
                    }
                }
                if let Err(e) = svc.export_daily_costs().await {
                    tracing::warn!(code = e.label(), error = %e, "daily costs not exported");
                }
            }
        })
    }

    /// Evaluates budgets every `costs.budget_interval_secs` and sends due alerts every
    /// second.
    fn alerting(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let svc = self.state.control.clone();
        let every = self.config.costs.budget_interval_secs;
        tokio::spawn(async move {
            let mut evaluate = tokio::time::interval(Duration::from_secs(every.max(1)));
            evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut deliver = tokio::time::interval(Duration::from_secs(1));
            deliver.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = evaluate.tick(), if every > 0 => {
                        if let Err(e) = svc.evaluate_budgets(time::OffsetDateTime::now_utc()).await {
                            tracing::warn!(code = e.label(), error = %e, "budgets not evaluated");
                        }
                    }
                    _ = deliver.tick() => {
                        if let Err(e) = svc.deliver_alerts().await {
                            tracing::warn!(code = e.label(), error = %e, "alerts not delivered");
                        }
                    }
                }
            }
        })
    }

    /// Every minute: which tenants get latency histograms of their own (the busiest
    /// `metering.top_tenants` and the pinned ones).
    fn red_top_tenants(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let svc = self.state.control.clone();
        let pinned = self.config.metering.pinned_tenants.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let top = svc.meter().top_tenants();
                top.pin(
                    pinned
                        .iter()
                        .filter_map(|s| svc.index().find(s))
                        .map(|t| t.id),
                );
                top.refresh();
                metrics::gauge!("tenantplane_red_detailed_tenants").set(top.detailed_len() as f64);
            }
        })
    }

    /// Every `metering.probe_interval_secs`, each active tenant through the main listener.
    fn uptime_probe(
        &self,
        cancel: CancellationToken,
        base: Option<String>,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.state.control.clone();
        let every = self.config.metering.probe_interval_secs;
        tokio::spawn(async move {
            let Some(base) = base.filter(|_| every > 0) else {
                return;
            };
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (n, failed) = svc
                    .probe_tenants(
                        &base,
                        crate::usage_meter::PROBE_HEADER,
                        crate::usage_meter::probe_key(),
                    )
                    .await;
                tracing::debug!(tenants = n, failed, "uptime probe done");
            }
        })
    }

    /// Every 10 s: saturation gauges — connections per database server (in use, idle,
    /// waiting, refusals), the SQLite pool's queue and open files, tenants behind the
    /// binary's schema, the runtime's workers, tasks and queue, the process's CPU, memory and
    /// descriptors.
    fn saturation(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let svc = self.state.control.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The workers' busy time at the last tick, for the share of the interval they
            // were busy.
            let mut last_busy: Option<(std::time::Instant, Duration)> = None;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let data = svc.data();
                for s in data.servers() {
                    let u = s.usage();
                    let name = s.name().to_owned();
                    metrics::gauge!("tenantplane_db_connections", "server" => name.clone(), "state" => "in_use")
                        .set(u.open.saturating_sub(u.idle) as f64);
                    metrics::gauge!("tenantplane_db_connections", "server" => name.clone(), "state" => "idle")
                        .set(u.idle as f64);
                    metrics::gauge!("tenantplane_db_connection_budget", "server" => name.clone())
                        .set(u.budget as f64);
                    let q = s.share_use();
                    metrics::gauge!("tenantplane_db_waiting", "server" => name.clone())
                        .set(q.waiting as f64);
                    metrics::counter!("tenantplane_db_busy_refusals_total", "server" => name)
                        .absolute(q.refused);
                }
                let q = data.sqlite().share_use();
                metrics::gauge!("tenantplane_sqlite_queue_waiting").set(q.waiting as f64);
                metrics::gauge!("tenantplane_sqlite_jobs_running").set(q.in_use as f64);
                metrics::counter!("tenantplane_db_busy_refusals_total", "server" => "sqlite")
                    .absolute(q.refused);
                // Fleet migrations: tenants whose store is behind this binary's schema.
                let need = data.schema_version();
                let mut behind: std::collections::BTreeMap<&'static str, u64> = Default::default();
                for t in svc.index().all() {
                    let e = behind.entry(t.isolation.as_str()).or_default();
                    if t.schema_version < need {
                        *e += 1;
                    }
                }
                for (iso, n) in behind {
                    metrics::gauge!("tenantplane_tenants_behind_schema", "isolation" => iso)
                        .set(n as f64);
                }
                metrics::gauge!("tenantplane_sqlite_open_files")
                    .set(data.sqlite().open_count() as f64);
                metrics::gauge!("tenantplane_sqlite_max_open_files")
                    .set(data.sqlite().max_open() as f64);
                let rt = tokio::runtime::Handle::current().metrics();
                metrics::gauge!("tenantplane_runtime_workers").set(rt.num_workers() as f64);
                metrics::gauge!("tenantplane_runtime_alive_tasks").set(rt.num_alive_tasks() as f64);
                metrics::gauge!("tenantplane_runtime_global_queue_depth")
                    .set(rt.global_queue_depth() as f64);
                let busy: Duration = (0..rt.num_workers())
                    .map(|w| rt.worker_total_busy_duration(w))
                    .sum();
                let now = std::time::Instant::now();
                if let Some((then, before)) = last_busy {
                    let wall = now.duration_since(then).as_secs_f64() * rt.num_workers() as f64;
                    if wall > 0.0 {
                        metrics::gauge!("tenantplane_runtime_workers_busy_ratio")
                            .set((busy.saturating_sub(before).as_secs_f64() / wall).min(1.0));
                    }
                }
                last_busy = Some((now, busy));
                if let Some(p) = process_stats() {
                    metrics::gauge!("process_cpu_seconds_total").set(p.0);
                    metrics::gauge!("process_resident_memory_bytes").set(p.1);
                    metrics::gauge!("process_open_fds").set(p.2);
                }
            }
        })
    }
}

/// (CPU seconds, resident bytes, open descriptors) of this process, from /proc (Linux).
fn process_stats() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let rss_pages: f64 = f.get(21)?.parse().ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    // USER_HZ is 100 and pages 4 KiB on the Linux targets served.
    Some((ticks / 100.0, rss_pages * 4_096.0, fds))
}
