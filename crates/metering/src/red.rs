//! RED metrics per tenant with a bounded number of series (issue 16).
//!
//! Every answered tenant request adds to `tenantplane_tenant_requests_total{tenant, class,
//! status}` (a counter per tenant, route class and status class) and to the latency
//! histogram `tenantplane_request_duration_seconds{class, plan}` shared by everyone. Only
//! the top-N tenants by recent traffic, plus the tenants an operator pins, also get their
//! own histogram `tenantplane_tenant_request_duration_seconds{tenant, class}`: with 10,000
//! tenants the histograms stay at N + pinned tenants' worth of series. The top N are
//! recomputed every [`TopTenants::refresh`] from decayed request counts, so a tenant that
//! stops being busy leaves the set and its histogram stops growing.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use tenantplane_core::TenantId;

use crate::usage::{RouteClass, Served};

/// Latency buckets, seconds (classic histogram buckets Grafana can use).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// The status class label of a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Which tenants get a latency histogram of their own.
#[derive(Debug)]
pub struct TopTenants {
    n: usize,
    counts: Mutex<HashMap<TenantId, u64>>,
    pinned: ArcSwap<HashSet<TenantId>>,
    detailed: ArcSwap<HashSet<TenantId>>,
}

impl TopTenants {
    /// The `n` busiest tenants get their own histograms (0: none but the pinned).
    pub fn new(n: usize) -> Self {
        Self {
            n,
            counts: Mutex::new(HashMap::new()),
            pinned: ArcSwap::from_pointee(HashSet::new()),
            detailed: ArcSwap::from_pointee(HashSet::new()),
        }
    }

    /// Tenants that always get their own histograms.
    pub fn pin(&self, tenants: impl IntoIterator<Item = TenantId>) {
        let pinned: HashSet<TenantId> = tenants.into_iter().collect();
        let mut detailed: HashSet<TenantId> = (**self.detailed.load()).clone();
        detailed.extend(pinned.iter().copied());
        self.pinned.store(Arc::new(pinned));
        self.detailed.store(Arc::new(detailed));
    }

    /// Whether `t` has its own histograms now.
    pub fn is_detailed(&self, t: TenantId) -> bool {
        self.detailed.load().contains(&t)
    }

    /// How many tenants have their own histograms now.
    pub fn detailed_len(&self) -> usize {
        self.detailed.load().len()
    }

    fn count(&self, t: TenantId) {
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *g.entry(t).or_default() += 1;
    }

    /// Recomputes the set: the `n` tenants with the most requests (each period's counts
    /// halved into the next, so recent traffic weighs most), plus the pinned ones.
    pub fn refresh(&self) {
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut ranked: Vec<(TenantId, u64)> = g.iter().map(|(t, c)| (*t, *c)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut detailed: HashSet<TenantId> = ranked.iter().take(self.n).map(|(t, _)| *t).collect();
        detailed.extend(self.pinned.load().iter().copied());
        g.retain(|_, c| {
            *c /= 2;
            *c > 0
        });
        drop(g);
        self.detailed.store(Arc::new(detailed));
    }
}

impl Default for TopTenants {
    /// The 20 busiest tenants (`metering.top_tenants`' default).
    fn default() -> Self {
        Self::new(20)
    }
}

/// Records one answered request's RED metrics.
pub fn record(top: &TopTenants, tenant: TenantId, slug: &str, plan: &str, s: &Served) {
    top.count(tenant);
    let class = s.class.as_str();
    let secs = s.wall_nanos as f64 / 1e9;
    metrics::counter!("tenantplane_tenant_requests_total",
        "tenant" => slug.to_owned(), "class" => class, "status" => status_class(s.status))
    .increment(1);
    metrics::histogram!("tenantplane_request_duration_seconds",
        "class" => class, "plan" => plan.to_owned())
    .record(secs);
    if top.is_detailed(tenant) {
        metrics::histogram!("tenantplane_tenant_request_duration_seconds",
            "tenant" => slug.to_owned(), "class" => class)
        .record(secs);
    }
}

/// Every route class label (for dashboards and tests).
pub fn classes() -> impl Iterator<Item = &'static str> {
    RouteClass::ALL.iter().map(|c| c.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_and_the_pinned_get_histograms() {
        let top = TopTenants::new(2);
        let t: Vec<TenantId> = (0..5).map(|_| TenantId::new()).collect();
        for (i, tenant) in t.iter().enumerate() {
            for _ in 0..(i + 1) * 10 {
                top.count(*tenant);
            }
        }
        top.pin([t[0]]);
        top.refresh();
        assert!(top.is_detailed(t[4]) && top.is_detailed(t[3]));
        assert!(top.is_detailed(t[0]), "pinned");
        assert!(!top.is_detailed(t[1]) && !top.is_detailed(t[2]));
        assert_eq!(top.detailed_len(), 3);
        // Traffic moves: t1 becomes the busiest; the old counts decay.
        for _ in 0..500 {
            top.count(t[1]);
        }
        top.refresh();
        assert!(top.is_detailed(t[1]));
        assert_eq!(top.detailed_len(), 3);
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(classes().count(), 7);
    }

    #[test]
    fn per_tenant_histograms_stay_bounded() {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &LATENCY_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let top = TopTenants::new(5);
        let tenants: Vec<(TenantId, String)> = (0..2_000)
            .map(|i| (TenantId::new(), format!("t{i}")))
            .collect();
        metrics::with_local_recorder(&recorder, || {
            for round in 0..2 {
                for (id, slug) in &tenants {
                    let s = Served {
                        class: RouteClass::FhirRead,
                        status: 200,
                        bytes_in: 0,
                        bytes_out: 0,
                        wall_nanos: 3_000_000,
                        cpu_nanos: 0,
                    };
                    record(&top, *id, slug, "small", &s);
                }
                if round == 0 {
                    top.refresh();
                }
            }
        });
        let text = handle.render();
        let series = |name: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#') && l.starts_with(name))
                .count()
        };
        // Five tenants × one class × (14 buckets + +Inf + sum + count).
        assert_eq!(
            series("tenantplane_tenant_request_duration_seconds"),
            5 * 17
        );
        assert_eq!(series("tenantplane_request_duration_seconds"), 17);
        assert_eq!(series("tenantplane_tenant_requests_total"), 2_000);
    }
}
