//! A tenant's health at a glance (`GET /api/v1/tenants/{t}/health`): the last hour's
//! requests per second, error rates and latency percentiles, its uptime this month, its
//! store size and connection use — all replicas together, from the usage ledger (as of the
//! last flush) and the hourly samples; what the console will draw.

use tenantplane_catalog::usage::{HOUR, UsageQuery};
use tenantplane_core::{
    IsolationMode,
    api::{TenantConnections, TenantHealth},
};
use tenantplane_metering::usage::{LATENCY_BOUNDS_MS, latency_meter};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{Control, ControlResult};

/// The `q` quantile (0–1) of bucketed counts, interpolated linearly inside its bucket.
pub fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, n) in counts.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lo = if i == 0 {
                0.0
            } else {
                LATENCY_BOUNDS_MS[i - 1] as f64
            };
            let hi = LATENCY_BOUNDS_MS.get(i).map_or(lo * 2.0, |b| *b as f64);
            let within = (rank - seen as f64) / *n as f64;
            return Some(lo + (hi - lo) * within.clamp(0.0, 1.0));
        }
        seen += n;
    }
    None
}

impl Control {
    /// The health view of tenant `r`.
    pub async fn health(&self, r: &str) -> ControlResult<TenantHealth> {
        let t = self.get(r).await?;
        let now = OffsetDateTime::now_utc();
        let n = now.unix_timestamp();
        let hour_start = n - HOUR;
        let sums = self
            .catalog
            .usage(&UsageQuery {
                from: hour_start,
                to: n + 60,
                step: HOUR + 60,
                tenant: Some(t.id),
            })
            .await?;
        let get = |m: &str| -> u64 {
            sums.iter()
                .filter(|s| s.meter == m)
                .map(|s| s.value.max(0) as u64)
                .sum()
        };
        let requests: u64 = sums
            .iter()
            .filter(|s| s.meter.starts_with("requests:"))
            .map(|s| s.value.max(0) as u64)
            .sum();
        let buckets: Vec<u64> = (0..=LATENCY_BOUNDS_MS.len())
            .map(|i| get(&latency_meter(i)))
            .collect();
        let month_start = now
            .replace_day(1)
            .map(|d| d.replace_time(time::Time::MIDNIGHT))
            .unwrap_or(now)
            .unix_timestamp();
        let month = self
            .catalog
            .usage(&UsageQuery {
                from: month_start,
                to: n + 60,
                step: n + 60 - month_start,
                tenant: Some(t.id),
            })
            .await?;
        let probes = |m: &str| -> u64 {
            month
                .iter()
                .filter(|s| s.meter == m)
                .map(|s| s.value.max(0) as u64)
                .sum()
        };
        let (ok, fail) = (probes("probe:ok"), probes("probe:fail"));
        let gauges = self.catalog.gauges(n - 2 * HOUR, n + 1, Some(t.id)).await?;
        let store_bytes = gauges
            .iter()
            .filter(|g| g.measure == "store_bytes")
            .max_by_key(|g| g.hour)
            .map(|g| g.value.max(0) as u64);
        let connections = match (&t.isolation, &t.placement) {
            (IsolationMode::Sqlite, _) | (_, None) => None,
            (_, Some(server)) => self.data.server(server).map(|s| {
                let u = s.usage();
                TenantConnections {
                    server: server.clone(),
                    in_use: u.open.saturating_sub(u.idle) as u64,
                    budget: u.budget as u64,
                }
            }),
        };
        let rate = |x: u64| {
            if requests == 0 {
                0.0
            } else {
                x as f64 / requests as f64
            }
        };
        Ok(TenantHealth {
            tenant: t.id,
            as_of: now.format(&Rfc3339).unwrap_or_default(),
            requests_last_hour: requests,
            rps: requests as f64 / HOUR as f64,
            error_rate_4xx: rate(get("status:4xx")),
            error_rate_5xx: rate(get("status:5xx")),
            latency_p50_ms: quantile_ms(&buckets, 0.50),
            latency_p95_ms: quantile_ms(&buckets, 0.95),
            latency_p99_ms: quantile_ms(&buckets, 0.99),
            uptime_ratio_month: (ok + fail > 0).then(|| ok as f64 / (ok + fail) as f64),
            probes_month: ok + fail,
            store_bytes,
            connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_buckets() {
        // 100 requests: 90 under 5 ms, 10 between 100 and 250 ms.
        let b = [90, 0, 0, 10, 0, 0, 0, 0];
        assert!(quantile_ms(&b, 0.5).unwrap() < 5.0);
        let p95 = quantile_ms(&b, 0.95).unwrap();
        assert!((100.0..=250.0).contains(&p95), "{p95}");
        assert_eq!(quantile_ms(&[0; 8], 0.5), None);
    }
}
