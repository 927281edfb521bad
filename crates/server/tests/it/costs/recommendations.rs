//! `GET /api/v1/recommendations`: each kind raised from measured usage, with its saving
//! from the price sheet and its method; bad windows and missing prices refused.

use reqwest::Method;
use serde_json::Value;
use tenantplane_catalog::usage::{GaugeRow, HOUR, UsageRow};
use tenantplane_core::{IsolationMode, TenantId, api::CreateTenant};
use tenantplane_testkit::{TestServer, TestServerOptions, server::pg_data_server};

use super::report::costs_config;
use crate::{new_tenant, raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_from_measured_usage() {
    let s = TestServer::start_with(TestServerOptions {
        costs: Some(costs_config()),
        data_servers: pg_data_server("pg1", 8).await.unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let create = |slug: &'static str, plan: &str, mode: IsolationMode| {
        let req = CreateTenant {
            plan: Some(plan.into()),
            isolation: Some(mode),
            ..new_tenant(slug)
        };
        let c = s.client.clone();
        async move { c.create_tenant(&req).await.unwrap().id }
    };
    let idle = create("idle-clinic", "small", IsolationMode::Sqlite).await;
    let quiet = create("quiet-hospital", "medium", IsolationMode::Sqlite).await;
    let busy = create("busy-hospital", "small", IsolationMode::Sqlite).await;
    let noisy = create("noisy-hospital", "small", IsolationMode::Sqlite).await;
    let light = create("light-dedicated", "small", IsolationMode::PgDatabase).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let hour = now - now % HOUR - 2 * HOUR;
    let row = |t: TenantId, meter: &str, value: i64| UsageRow {
        tenant: t,
        bucket: hour,
        span: HOUR,
        meter: meter.into(),
        value,
    };
    s.control
        .catalog()
        .add_usage(&[
            row(quiet, "requests:fhir-read", 10),
            row(quiet, "cpu_nanos", 1_000_000_000),
            row(busy, "requests:fhir-read", 100),
            row(busy, "cpu_nanos", 1_000_000_000),
            row(noisy, "requests:fhir-search", 5_000),
            row(noisy, "cpu_nanos", 360_000_000_000_000),
            row(light, "requests:fhir-read", 20),
            row(light, "cpu_nanos", 1_000_000_000),
        ])
        .await
        .unwrap();
    let g = |t: TenantId, m: &str, v: i64| GaugeRow {
        tenant: t,
        hour,
        measure: m.into(),
        value: v,
    };
    s.control
        .catalog()
        .set_gauges(&[
            g(idle, "store_bytes", 1 << 20),
            g(quiet, "users", 2),
            g(busy, "users", 48),
            g(light, "store_bytes", 9 << 20),
            g(light, "record_bytes", 1 << 20),
            g(quiet, "cold_bytes", 1 << 30),
        ])
        .await
        .unwrap();
    let (st, _, _, v) = raw(s.client.request(Method::GET, "/api/v1/recommendations")).await;
    assert_eq!(st, 200, "{v}");
    let find = |kind: &str, tenant: &str| -> Value {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && r["tenant"] == tenant)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} for {tenant}: {v}"))
    };
    let down = find("plan-downsize", "quiet-hospital");
    assert_eq!(down["monthly_saving"], "200.000000", "299 - 99");
    assert!(down["action"].as_str().unwrap().contains("small"));
    let up = find("plan-upsize", "busy-hospital");
    assert_eq!(up["monthly_saving"], "-200.000000");
    assert_eq!(up["evidence"]["users"]["used"], 48.0);
    find("idle-tenant", "idle-clinic");
    let dedicated = find("isolation-dedicated", "noisy-hospital");
    assert!(
        dedicated["monthly_saving"]
            .as_str()
            .unwrap()
            .starts_with('-')
    );
    // 8 MiB of footprint at 730 per GiB-month.
    assert_eq!(
        find("isolation-shared", "light-dedicated")["monthly_saving"],
        "5.703125"
    );
    // 1 GiB cold: (730 - 146) per GiB-month.
    assert_eq!(
        find("cold-storage", "quiet-hospital")["monthly_saving"],
        "584.000000"
    );
    for r in v["items"].as_array().unwrap() {
        assert!(!r["method"].as_str().unwrap().is_empty());
    }
    // Largest saving first.
    let savings: Vec<f64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["monthly_saving"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(savings.windows(2).all(|w| w[0] >= w[1]), "{savings:?}");
    let (st, ..) = raw(s
        .client
        .request(Method::GET, "/api/v1/recommendations?window=fortnight"))
    .await;
    assert_eq!(st, 400);
    let bare = TestServer::start().await.unwrap();
    let (st, ..) = raw(bare.client.request(Method::GET, "/api/v1/recommendations")).await;
    assert_eq!(st, 409);
}
