//! Per-tenant monitoring (issue 16): the synthetic uptime probe goes through the full edge
//! path to each active tenant's store, is recorded per tenant, and is never charged to the
//! tenant nor counted by its limits.

use reqwest::Method;
use tenantplane_catalog::usage::UsageQuery;
use tenantplane_server::usage_meter::{PROBE_HEADER, probe_key};
use tenantplane_testkit::TestServer;

use crate::{new_tenant, raw};

async fn metrics_text(s: &TestServer) -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", s.url()))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uptime_probe_sees_each_tenant_and_costs_it_nothing() {
    tenantplane_server::app::install_metrics();
    let s = TestServer::start_with(tenantplane_testkit::TestServerOptions {
        poll_interval_ms: Some(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let up = s
        .client
        .create_tenant(&new_tenant("probed-up"))
        .await
        .unwrap();
    let down = s
        .client
        .create_tenant(&new_tenant("probed-down"))
        .await
        .unwrap();
    // B's store is recorded at an older schema version than the binary serves: every
    // request to it is refused (503, store upgrading) until a migration runs.
    let c = s.control.catalog();
    let mut t = c
        .get_tenant(&tenantplane_core::TenantRef::Id(down.id))
        .await
        .unwrap()
        .unwrap();
    let v = t.version;
    t.schema_version -= 1;
    c.update_tenant(&t, v).await.unwrap();
    for _ in 0..100 {
        let (st, ..) = raw(s
            .anonymous()
            .request(Method::GET, "/t/probed-down/api/tenant/departments"))
        .await;
        if st == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.control.meter().flush(s.control.catalog()).await.unwrap();
    let (n, failed) = s
        .control
        .probe_tenants(&s.url(), PROBE_HEADER, probe_key())
        .await;
    assert!(n >= 2 && failed >= 1, "{n} probed, {failed} failed");
    let text = metrics_text(&s).await;
    let line = |needle: &[&str]| {
        text.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("{needle:?} in {text}"))
            .to_owned()
    };
    assert!(line(&["tenantplane_tenant_up{", "tenant=\"probed-up\""]).ends_with(" 1"));
    assert!(line(&["tenantplane_tenant_up{", "tenant=\"probed-down\""]).ends_with(" 0"));
    line(&[
        "tenantplane_tenant_probe_total{",
        "tenant=\"probed-down\"",
        "result=\"fail\"",
    ]);
    line(&[
        "tenantplane_tenant_probe_total{",
        "tenant=\"probed-up\"",
        "result=\"ok\"",
    ]);
    // Not the tenant's usage: nothing in its ledger.
    s.control.meter().flush(s.control.catalog()).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sums = s
        .control
        .catalog()
        .usage(&UsageQuery {
            from: now - 3_600,
            to: now + 3_600,
            step: 7_200,
            tenant: Some(up.id),
        })
        .await
        .unwrap();
    assert!(
        sums.iter().all(|x| !x.meter.starts_with("requests:")),
        "{sums:?}"
    );
    // A wrong key is an ordinary request (and is charged).
    let (st, ..) = raw(s
        .anonymous()
        .request(Method::GET, "/t/probed-up/api/tenant/departments")
        .header(PROBE_HEADER, "not-the-key"))
    .await;
    assert_eq!(st, 200);
    s.control.meter().flush(s.control.catalog()).await.unwrap();
    let sums = s
        .control
        .catalog()
        .usage(&UsageQuery {
            from: now - 3_600,
            to: now + 3_600,
            step: 7_200,
            tenant: Some(up.id),
        })
        .await
        .unwrap();
    assert!(
        sums.iter().any(|x| x.meter == "requests:tenant-admin"),
        "{sums:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_view_of_a_tenant() {
    let s = TestServer::start().await.unwrap();
    let t = s
        .client
        .create_tenant(&new_tenant("healthy-hospital"))
        .await
        .unwrap();
    for path in [
        "/t/healthy-hospital/api/tenant",
        "/t/healthy-hospital/api/tenant/departments",
        "/t/healthy-hospital/nothing-here",
    ] {
        raw(s.anonymous().request(Method::GET, path)).await;
    }
    s.control
        .probe_tenants(&s.url(), PROBE_HEADER, probe_key())
        .await;
    s.control.sample_stores().await.unwrap();
    s.control.meter().flush(s.control.catalog()).await.unwrap();
    let (st, _, _, h) = raw(s
        .client
        .request(Method::GET, "/api/v1/tenants/healthy-hospital/health"))
    .await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["tenant"], t.id.to_string());
    assert_eq!(
        h["requests_last_hour"], 3,
        "the probe is not a request: {h}"
    );
    assert!(
        (h["error_rate_4xx"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
        "{h}"
    );
    assert_eq!(h["error_rate_5xx"], 0.0);
    let (p50, p99) = (
        h["latency_p50_ms"].as_f64().unwrap(),
        h["latency_p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{h}");
    assert_eq!(h["uptime_ratio_month"], 1.0);
    assert!(h["probes_month"].as_u64().unwrap() >= 1);
    assert!(h["store_bytes"].as_u64().unwrap() > 0);
    assert!(
        h["connections"].is_null(),
        "a SQLite tenant has no connection budget"
    );
    let (st, ..) = raw(s
        .client
        .request(Method::GET, "/api/v1/tenants/nobody/health"))
    .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_gauges_are_exported() {
    tenantplane_server::app::install_metrics();
    let s = TestServer::start_with_pg_data(4).await.unwrap();
    s.control.meter().flush(s.control.catalog()).await.unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        text = metrics_text(&s).await;
        if text.contains("process_resident_memory_bytes") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for series in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "tenantplane_sqlite_open_files",
        "tenantplane_sqlite_max_open_files",
        "tenantplane_runtime_workers",
        "tenantplane_runtime_global_queue_depth",
        "tenantplane_db_connection_budget{server=\"pg1\"}",
        "tenantplane_db_connections{",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
    let rss: f64 = text
        .lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss > 10e6, "{rss}");
}
