//! Request metering: each tenant's requests per calendar month (UTC), and the plan's
//! `requests_per_month` quota.
//!
//! Every request that reaches a servable tenant is counted in memory; every
//! `[metering] flush_interval_secs` the counts are added to the catalog
//! (`usage_monthly`, one transaction, upserts in tenant order) and each tenant's total —
//! with every replica's counts — comes back. The quota is checked against
//! `total at the last flush + this replica's requests since`, so with N replicas a tenant
//! can overshoot by at most what the other replicas served in one flush interval. A failed
//! flush keeps the counts for the next one; the last flush runs at shutdown
//! ([`flush_loop`]).
//!
//! Per-tenant costs start here: the meter is where a request's resource use is attributed to
//! its tenant ([`usage`]: route class, status, bytes, wall and CPU time per tenant and
//! minute), flushed with the request counts into the catalog's usage ledger, whose minute
//! rows the flush loop rolls up to hours after [`LedgerPolicy::minute_rows_for`].

#![forbid(unsafe_code)]

pub mod events;
pub mod red;
pub mod usage;

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tenantplane_catalog::Catalog;
use tenantplane_core::TenantId;
use time::OffsetDateTime;
pub use usage::{RouteClass, Served, UsageMeter};

/// `YYYY-MM` of now (UTC).
pub fn current_month() -> String {
    let now = OffsetDateTime::now_utc();
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

fn month_key(at: OffsetDateTime) -> u32 {
    at.year().max(0) as u32 * 100 + u32::from(u8::from(at.month()))
}

fn month_label(key: u32) -> String {
    format!("{:04}-{:02}", key / 100, key % 100)
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    /// The month's total at the last flush (all replicas).
    known: u64,
    /// This replica's requests since.
    pending: u64,
}

/// The per-replica meter.
#[derive(Debug, Default)]
pub struct RequestMeter {
    counts: Mutex<HashMap<(u32, TenantId), Count>>,
    usage: UsageMeter,
    top: red::TopTenants,
}

/// A request refused by the monthly quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    /// The plan's limit.
    pub limit: u64,
    /// Requests this month.
    pub current: u64,
}

impl RequestMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request of `tenant` unless the month's `limit` is reached.
    pub fn admit(&self, tenant: TenantId, limit: u64) -> Result<u64, OverQuota> {
        let key = (month_key(OffsetDateTime::now_utc()), tenant);
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = g.entry(key).or_default();
        let used = c.known.saturating_add(c.pending);
        if used >= limit {
            return Err(OverQuota {
                limit,
                current: used,
            });
        }
        c.pending += 1;
        Ok(used + 1)
    }

    /// This replica's view of `tenant`'s requests this month.
    pub fn used(&self, tenant: TenantId) -> u64 {
        let key = (month_key(OffsetDateTime::now_utc()), tenant);
        let g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&key).map(|c| c.known + c.pending).unwrap_or(0)
    }

    /// Records what an answered request of `tenant` used.
    pub fn record(&self, tenant: TenantId, served: &Served) {
        self.usage.record(tenant, served);
    }

    /// Records what an answered request used, and its RED metrics (`slug` and `plan` label
    /// them).
    pub fn record_served(&self, tenant: TenantId, slug: &str, plan: &str, served: &Served) {
        self.usage.record(tenant, served);
        red::record(&self.top, tenant, slug, plan, served);
    }

    /// Which tenants get latency histograms of their own.
    pub fn top_tenants(&self) -> &red::TopTenants {
        &self.top
    }

    /// A meter whose `top_n` busiest tenants get latency histograms of their own.
    pub fn with_top_tenants(top_n: usize) -> Self {
        Self {
            top: red::TopTenants::new(top_n),
            ..Self::default()
        }
    }

    /// The usage gathered since the last flush.
    pub fn usage(&self) -> &UsageMeter {
        &self.usage
    }

    /// Adds the pending counts and usage to the catalog and learns the totals. On failure
    /// they stay pending. Entries of past months are dropped once flushed.
    pub async fn flush(
        &self,
        catalog: &Catalog,
    ) -> Result<usize, tenantplane_catalog::CatalogError> {
        let rows = self.usage.take();
        if let Err(e) = catalog.add_usage(&rows).await {
            self.usage.give_back(rows);
            return Err(e);
        }
        let now = month_key(OffsetDateTime::now_utc());
        let batches: HashMap<u32, Vec<(TenantId, u64)>> = {
            let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let mut out: HashMap<u32, Vec<(TenantId, u64)>> = HashMap::new();
            for ((m, t), c) in g.iter_mut() {
                if c.pending > 0 {
                    out.entry(*m).or_default().push((*t, c.pending));
                    c.pending = 0;
                }
            }
            out
        };
        let mut flushed = 0;
        for (month, batch) in batches {
            match catalog.add_requests(&month_label(month), &batch).await {
                Ok(totals) => {
                    flushed += batch.len();
                    let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                    for (t, total) in totals {
                        let c = g.entry((month, t)).or_default();
                        // Requests counted while the flush ran stay pending on top.
                        c.known = total;
                    }
                }
                Err(e) => {
                    let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                    for (t, n) in batch {
                        g.entry((month, t)).or_default().pending += n;
                    }
                    return Err(e);
                }
            }
        }
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|(m, _), c| *m >= now || c.pending > 0);
        Ok(flushed)
    }
}

/// How the ledger is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerPolicy {
    /// How often a replica flushes.
    pub every: Duration,
    /// Minute rows older than this are rolled up into hours.
    pub minute_rows_for: Duration,
    /// Idempotency keys of meter events are kept this long (older events are refused).
    pub event_keys_for: Duration,
}

impl LedgerPolicy {
    /// Rolls up minute rows past their age and forgets old event keys.
    pub async fn maintain(&self, catalog: &Catalog, now: i64) {
        let age = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        // Only whole hours are rolled up, so an hour is never half minutes, half hour.
        let cutoff = now.saturating_sub(age(self.minute_rows_for));
        let cutoff = cutoff - cutoff.rem_euclid(tenantplane_catalog::usage::HOUR);
        match catalog.roll_up(cutoff).await {
            Ok(n) if n > 0 => tracing::debug!(rows = n, "usage minutes rolled up to hours"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "usage roll-up failed; retried later"),
        }
        if let Err(e) = catalog
            .prune_events(now.saturating_sub(age(self.event_keys_for)))
            .await
        {
            tracing::warn!(error = %e, "meter event keys not pruned; retried later");
        }
    }
}

/// Flushes `meter` into `catalog` every `policy.every` until `cancel`, then once more;
/// every ten minutes, rolls up and prunes the ledger.
pub async fn flush_loop(
    meter: std::sync::Arc<RequestMeter>,
    catalog: Catalog,
    policy: LedgerPolicy,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(policy.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut upkeep = tokio::time::interval(Duration::from_secs(600));
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tick.tick() => false,
            _ = upkeep.tick() => {
                policy.maintain(&catalog, OffsetDateTime::now_utc().unix_timestamp()).await;
                continue;
            }
        };
        match meter.flush(&catalog).await {
            Ok(_) => metrics::gauge!("tenantplane_metering_last_flush_timestamp_seconds")
                .set(OffsetDateTime::now_utc().unix_timestamp() as f64),
            Err(e) => tracing::warn!(error = %e, "usage not flushed; kept for the next try"),
        }
        if last {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit() {
        let m = RequestMeter::new();
        let t = TenantId::new();
        assert_eq!(m.admit(t, 3), Ok(1));
        assert_eq!(m.admit(t, 3), Ok(2));
        assert_eq!(m.admit(t, 3), Ok(3));
        assert_eq!(
            m.admit(t, 3),
            Err(OverQuota {
                limit: 3,
                current: 3
            })
        );
        assert_eq!(m.used(t), 3, "refused requests are not counted");
        assert_eq!(m.admit(TenantId::new(), 3), Ok(1));
    }

    #[test]
    fn month_labels() {
        let at = time::macros::datetime!(2026-12-31 23:59 UTC);
        assert_eq!(month_label(month_key(at)), "2026-12");
        let at = time::macros::datetime!(2027-01-01 00:00 UTC);
        assert_eq!(month_label(month_key(at)), "2027-01");
    }
}
