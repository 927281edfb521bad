//! What each tenant request used reaches the catalog's usage ledger: one count per route
//! class, 4xx and 5xx answers, body bytes in and out exactly as sent, wall and CPU time —
//! each tenant's on its own rows.

use std::collections::BTreeMap;

use tenantplane_catalog::usage::UsageQuery;
use tenantplane_core::TenantId;

use super::*;

async fn ledger(s: &TestServer, t: TenantId) -> BTreeMap<String, i64> {
    s.control.meter().flush(s.control.catalog()).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sums = s
        .control
        .catalog()
        .usage(&UsageQuery {
            from: now - 3_600,
            to: now + 3_600,
            step: 7_200,
            tenant: Some(t),
        })
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for x in sums {
        assert_eq!(x.tenant, t, "only the tenant asked for");
        *out.entry(x.meter).or_default() += x.value;
    }
    out
}

fn delta(after: &BTreeMap<String, i64>, before: &BTreeMap<String, i64>, m: &str) -> i64 {
    after.get(m).copied().unwrap_or(0) - before.get(m).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_metered_for_its_tenant() {
    // The process-wide recorder, before any request (as `serve` does at start).
    tenantplane_server::app::install_metrics();
    let s = TestServer::start().await.unwrap();
    let (a, ta) = hospital(&s, "metered-a", IsolationMode::Sqlite).await;
    let (b, tb) = hospital(&s, "metered-b", IsolationMode::Sqlite).await;
    let (ia, ib) = (
        s.client.get_tenant("metered-a").await.unwrap().id,
        s.client.get_tenant("metered-b").await.unwrap().id,
    );
    let (a0, b0) = (ledger(&s, ia).await, ledger(&s, ib).await);
    let body = json!({"resourceType": "Patient", "name": [{"family": "Meter"}]}).to_string();
    let mut out_bytes = 0;
    let r = send(
        Method::POST,
        &a.url("/fhir/Patient"),
        Some(&ta["clinician"]),
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    out_bytes += r.text.len() as i64;
    let id = r.body["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/fhir/Patient/{id}"),
        "/fhir/Patient/nope".to_owned(),
        "/fhir/Patient?family=meter".to_owned(),
    ] {
        let r = send(
            Method::GET,
            &a.url(&path),
            Some(&ta["clinician"]),
            None,
            &[],
        )
        .await;
        out_bytes += r.text.len() as i64;
    }
    let r = send(
        Method::GET,
        &b.url("/fhir/Patient/nope"),
        Some(&tb["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    let b_bytes = r.text.len() as i64;
    let (a1, b1) = (ledger(&s, ia).await, ledger(&s, ib).await);
    assert_eq!(delta(&a1, &a0, "requests:fhir-write"), 1);
    assert_eq!(delta(&a1, &a0, "requests:fhir-read"), 2);
    assert_eq!(delta(&a1, &a0, "requests:fhir-search"), 1);
    assert_eq!(delta(&a1, &a0, "status:4xx"), 1);
    assert_eq!(delta(&a1, &a0, "status:5xx"), 0);
    assert_eq!(delta(&a1, &a0, "bytes_in"), body.len() as i64);
    assert_eq!(delta(&a1, &a0, "bytes_out"), out_bytes);
    assert!(delta(&a1, &a0, "wall_nanos") > 0);
    assert!(delta(&a1, &a0, "cpu_nanos") > 0);
    // B's one request is B's alone.
    assert_eq!(delta(&b1, &b0, "requests:fhir-read"), 1);
    assert_eq!(delta(&b1, &b0, "requests:fhir-write"), 0);
    assert_eq!(delta(&b1, &b0, "status:4xx"), 1);
    assert_eq!(delta(&b1, &b0, "bytes_out"), b_bytes);
    assert_eq!(delta(&b1, &b0, "bytes_in"), 0);
    // Flushing again adds nothing: each request is in the ledger once.
    assert_eq!(ledger(&s, ia).await, a1);
    // RED metrics: the tenant's requests by class and status, latency as classic
    // histograms (by class and plan; by tenant for the busiest).
    s.control.meter().top_tenants().refresh();
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", s.url()))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has("tenantplane_tenant_requests_total{") && has("tenant=\"metered-a\""),
        "{text}"
    );
    assert!(has("status=\"4xx\"") && has("class=\"fhir-write\""));
    assert!(has("tenantplane_request_duration_seconds_bucket{") && has("le=\"0.005\""));
    assert!(has("plan=\"small\""));
}
