//! `/metrics` at 10,000 tenants with traffic spread over all of them: how many series the
//! RED metrics make (per-tenant histograms only for the top N and the pinned), how long
//! rendering takes and how big it is — with the other per-tenant families a real server
//! also exports (the probe's `tenant_up` and `probe_total`, the sampler's `store_bytes` and
//! `cost_daily`; cross-tenant attempts and rate-limit refusals against 1 % of tenants).
//!
//! `cargo bench -p tenantplane-metering --bench series` (`TP_SERIES_TENANTS`, `TP_SERIES_TOP`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tenantplane_core::TenantId;
use tenantplane_metering::{
    RouteClass, Served,
    red::{LATENCY_BUCKETS, TopTenants, record},
};

fn main() {
    let n: usize = std::env::var("TP_SERIES_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let top_n: usize = std::env::var("TP_SERIES_TOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &LATENCY_BUCKETS)
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let top = TopTenants::new(top_n);
    let tenants: Vec<(TenantId, String, &str)> = (0..n)
        .map(|i| {
            (
                TenantId::new(),
                format!("tenant-{i:05}"),
                ["small", "medium", "large"][i % 3],
            )
        })
        .collect();
    top.pin(tenants.iter().take(2).map(|t| t.0));
    let classes = [
        RouteClass::FhirRead,
        RouteClass::FhirSearch,
        RouteClass::Auth,
    ];
    let statuses = [200u16, 201, 404, 500];
    let t0 = Instant::now();
    let mut requests = 0u64;
    metrics::with_local_recorder(&recorder, || {
        for round in 0..2 {
            for (i, (id, slug, plan)) in tenants.iter().enumerate() {
                // Some tenants are busier: the top N is real.
                let k = 1 + (i % 97 == 0) as usize * 50;
                for j in 0..k {
                    let s = Served {
                        class: classes[(i + j) % 3],
                        status: statuses[(i * 7 + j) % 4],
                        bytes_in: 0,
                        bytes_out: 100,
                        wall_nanos: 1_000_000 * ((i + j) % 40) as u64,
                        cpu_nanos: 100_000,
                    };
                    record(&top, *id, slug, plan, &s);
                    requests += 1;
                }
            }
            if round == 0 {
                top.refresh();
            }
        }
        for (i, (_, slug, _)) in tenants.iter().enumerate() {
            metrics::gauge!("tenantplane_tenant_up", "tenant" => slug.clone()).set(1.0);
            metrics::counter!("tenantplane_tenant_probe_total", "tenant" => slug.clone(),
                "result" => "ok")
            .increment(60);
            metrics::gauge!("tenantplane_tenant_store_bytes", "tenant" => slug.clone())
                .set((i * 4096) as f64);
            metrics::gauge!("tenantplane_tenant_cost_daily", "tenant" => slug.clone(),
                "currency" => "BRL")
            .set(i as f64 / 10.0);
            if i % 100 == 0 {
                metrics::counter!("tenantplane_cross_tenant_attempts_total",
                    "tenant" => slug.clone(), "kind" => "foreign-token")
                .increment(3);
                metrics::counter!("tenantplane_rate_limited_total", "policy" => "tenant",
                    "tenant" => slug.clone())
                .increment(5);
            }
        }
    });
    let recording = t0.elapsed();
    let t1 = Instant::now();
    let text = handle.render();
    let render = t1.elapsed();
    let mut per: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count")
            .to_owned();
        *per.entry(family).or_default() += 1;
    }
    let total: usize = per.values().sum();
    println!(
        "{n} tenants, top {top_n} + 2 pinned detailed ({} detailed), {requests} requests recorded in {:.0} ms ({:.2} us each)",
        top.detailed_len(),
        recording.as_secs_f64() * 1e3,
        recording.as_secs_f64() * 1e6 / requests as f64
    );
    for (family, count) in &per {
        println!("  {family}: {count} series");
    }
    println!(
        "  total {total} series; /metrics {} KiB rendered in {:.0} ms",
        text.len() / 1024,
        render.as_secs_f64() * 1e3
    );
}
