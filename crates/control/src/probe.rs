//! The synthetic uptime probe: each active tenant's public route that reads its store
//! (`/t/{slug}/api/tenant/departments`), requested through this server's own listener —
//! the whole edge path, resolution and store included — and recorded as
//! `tenantplane_tenant_probe_total{tenant, result}` and `tenantplane_tenant_up{tenant}`, so
//! "99.9 % per tenant, monthly" is a Prometheus query (`deploy/prometheus/rules.yml`).

use std::time::Duration;

use futures_util::StreamExt as _;
use tenantplane_core::TenantStatus;

use crate::Control;

impl Control {
    /// Probes every active tenant once through `base` (`http://127.0.0.1:<port>`) with the
    /// probe `key` header; returns (probed, failed).
    pub async fn probe_tenants(&self, base: &str, header: &str, key: &str) -> (usize, usize) {
        let tenants: Vec<_> = self
            .index
            .all()
            .into_iter()
            .filter(|t| t.status == TenantStatus::Active)
            .collect();
        let results: Vec<bool> = futures_util::stream::iter(tenants)
            .map(|t| async move {
                let url = format!("{base}/t/{}/api/tenant/departments", t.slug);
                let ok = crate::http()
                    .get(&url)
                    .header(header, key)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                self.meter.usage().record_probe(t.id, ok);
                let slug = t.slug.to_string();
                metrics::counter!("tenantplane_tenant_probe_total",
                    "tenant" => slug.clone(), "result" => if ok { "ok" } else { "fail" })
                .increment(1);
                metrics::gauge!("tenantplane_tenant_up", "tenant" => slug).set(if ok {
                    1.0
                } else {
                    0.0
                });
                if !ok {
                    tracing::warn!(tenant = %t.id, "uptime probe failed");
                }
                ok
            })
            .buffer_unordered(8)
            .collect()
            .await;
        (results.len(), results.iter().filter(|ok| !**ok).count())
    }
}
