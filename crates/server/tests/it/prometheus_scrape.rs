//! A real Prometheus (Debian's `prometheus`) scraping a running server with its token and
//! evaluating the shipped rules (`deploy/prometheus/rules.yml`): the recording rules give the
//! tenant's series, the cross-tenant burst alert's query returns the attacked tenant, every
//! alert's query runs, and every query of the shipped Grafana dashboards (`deploy/grafana`)
//! parses and runs — the tenant drill-down's for the tenant that had traffic.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::Value;
use tenantplane_core::IsolationMode;
use tenantplane_testkit::{TestServer, prometheus::Prometheus};

use crate::fhir::{hospital, send};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs an instant query; panics unless Prometheus accepted it.
async fn query(prom: &str, q: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `q` until it returns a series (or 40 s pass).
async fn eventually(prom: &str, q: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = query(prom, q).await;
        if !r.is_empty() || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            for x in m.values() {
                exprs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_server_and_the_shipped_rules_and_dashboards_work() {
    tenantplane_server::app::install_metrics();
    let s = TestServer::start().await.unwrap();
    let (t, tok) = hospital(&s, "scraped", IsolationMode::Sqlite).await;
    let id = s.control.index().find("scraped").unwrap().id;
    // Its own latency histograms (as a top-N or pinned tenant would have).
    s.control.meter().top_tenants().pin([id]);
    let prom = Prometheus::start_with(
        &[s.addr.to_string()],
        Some(&s.token),
        &[root().join("deploy/prometheus/rules.yml")],
    )
    .unwrap();
    // Traffic: reads, refusals, and a burst of cross-tenant attempts against it — after a
    // first scrape has seen the counters (a rate needs two samples).
    let clin = Some(tok["clinician"].as_str());
    let body = r#"{"resourceType":"Patient","name":[{"family":"Scraped"}]}"#;
    let r = send(Method::POST, &t.url("/fhir/Patient"), clin, Some(body), &[]).await;
    assert_eq!(r.status, 201);
    let r = send(Method::GET, &t.url("/fhir/Patient/nope"), clin, None, &[]).await;
    assert_eq!(r.status, 404);
    let r = send(
        Method::GET,
        &t.url("/api/tenant"),
        None,
        None,
        &[("x-tenant-id", "elsewhere")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = eventually(
        &prom.url,
        "tenantplane_tenant_requests_total{tenant=\"scraped\",status=\"4xx\"}",
    )
    .await;
    assert!(!seen.is_empty(), "the first scrape never saw the tenant");
    for _ in 0..30 {
        let r = send(
            Method::GET,
            &t.url("/fhir/Patient?_count=1"),
            clin,
            None,
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        let r = send(Method::GET, &t.url("/fhir/Patient/nope"), clin, None, &[]).await;
        assert_eq!(r.status, 404);
    }
    for _ in 0..25 {
        let r = send(
            Method::GET,
            &t.url("/api/tenant"),
            None,
            None,
            &[("x-tenant-id", "elsewhere")],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    s.control.sample_stores().await.unwrap();

    // The recording rules give the tenant's series.
    let rps = eventually(&prom.url, "tenant:requests:rate5m{tenant=\"scraped\"}").await;
    assert!(!rps.is_empty(), "no request rate for the tenant");
    let deadline = Instant::now() + Duration::from_secs(40);
    let ratio = loop {
        let e4 = eventually(
            &prom.url,
            "tenant:errors4xx:ratio_rate5m{tenant=\"scraped\"}",
        )
        .await;
        let r: f64 = e4[0]["value"][1].as_str().unwrap().parse().unwrap();
        if (r.is_finite() && r > 0.0) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(ratio > 0.2 && ratio < 0.8, "{ratio}");
    let p95 = eventually(
        &prom.url,
        "tenant:latency_seconds:p95_5m{tenant=\"scraped\"}",
    )
    .await;
    assert!(!p95.is_empty(), "no p95 for the pinned tenant");
    let store = eventually(
        &prom.url,
        "tenantplane_tenant_store_bytes{tenant=\"scraped\"}",
    )
    .await;
    assert!(!store.is_empty());

    // The rules Prometheus loaded: every alert's query runs; the burst alert's names the
    // attacked tenant.
    let rules: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/rules", prom.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut alerts = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
            if r["type"] == "alerting" {
                alerts += 1;
                let q = r["query"].as_str().unwrap();
                let got = query(&prom.url, q).await;
                if r["name"] == "CrossTenantAttemptsBurst" {
                    assert!(
                        got.iter().any(|x| x["metric"]["tenant"] == "scraped"),
                        "{q}: {got:?}"
                    );
                }
            }
        }
    }
    assert!(alerts >= 15, "{alerts} alerts loaded");

    // Every dashboard query parses and runs; the drill-down's request rate has the tenant.
    for file in ["fleet.json", "tenant.json"] {
        let d: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("deploy/grafana").join(file)).unwrap(),
        )
        .unwrap();
        let mut qs = Vec::new();
        exprs(&d["panels"], &mut qs);
        assert!(qs.len() >= 7, "{file}: {qs:?}");
        for q in qs {
            let q = q
                .replace("$__rate_interval", "1m")
                .replace("$tenant", "scraped");
            let got = query(&prom.url, &q).await;
            if q.starts_with("sum(rate(tenantplane_tenant_requests_total[")
                || q.starts_with("sum(rate(tenantplane_tenant_requests_total{tenant=")
                || q.starts_with("(sum(rate(tenantplane_tenant_requests_total{status=")
            {
                assert!(!got.is_empty(), "{file}: {q} returned nothing");
            }
        }
    }
}
