//! Kubernetes mode against a real Prometheus (Debian package) scraping a metrics fixture
//! this test serves (cAdvisor and kube-state-metrics series): namespaces charged the
//! OpenCost way — max(request, usage) — mapped to tenants by a namespace label, the
//! cluster's nodes priced by instance type, its idle apart, in the same report as the
//! in-process tenants; Prometheus down → 502, nothing invented.

use std::time::{Duration, Instant};

use axum::{Router, extract::State, routing::get};
use reqwest::Method;
use serde_json::Value;
use tenantplane_server::config::KubernetesConfig;
use tenantplane_testkit::{TestServer, TestServerOptions, prometheus::Prometheus};

use super::report::{costs_config, micros};
use crate::{new_tenant, raw};

async fn fixture(State(start): State<Instant>) -> String {
    let s = start.elapsed().as_secs_f64();
    // kube-hospital: uses 0.5 core, requests 1; other-ns: uses 2 cores, requests 0.5.
    format!(
        "# TYPE container_cpu_usage_seconds_total counter\n\
container_cpu_usage_seconds_total{{namespace=\"kube-hospital\",pod=\"api-0\",container=\"app\"}} {a}\n\
container_cpu_usage_seconds_total{{namespace=\"other-ns\",pod=\"batch-0\",container=\"job\"}} {b}\n\
container_cpu_usage_seconds_total{{namespace=\"other-ns\",pod=\"batch-0\",container=\"POD\"}} {b}\n\
# TYPE container_memory_working_set_bytes gauge\n\
container_memory_working_set_bytes{{namespace=\"kube-hospital\",pod=\"api-0\",container=\"app\"}} 1073741824\n\
container_memory_working_set_bytes{{namespace=\"other-ns\",pod=\"batch-0\",container=\"job\"}} 268435456\n\
# TYPE kube_pod_container_resource_requests gauge\n\
kube_pod_container_resource_requests{{namespace=\"kube-hospital\",pod=\"api-0\",container=\"app\",resource=\"cpu\",unit=\"core\"}} 1\n\
kube_pod_container_resource_requests{{namespace=\"kube-hospital\",pod=\"api-0\",container=\"app\",resource=\"memory\",unit=\"byte\"}} 536870912\n\
kube_pod_container_resource_requests{{namespace=\"other-ns\",pod=\"batch-0\",container=\"job\",resource=\"cpu\",unit=\"core\"}} 0.5\n\
# TYPE kube_node_status_capacity gauge\n\
kube_node_status_capacity{{node=\"node-1\",resource=\"cpu\",unit=\"core\"}} 8\n\
# TYPE kube_node_labels gauge\n\
kube_node_labels{{node=\"node-1\",label_node_kubernetes_io_instance_type=\"n1-standard-8\"}} 1\n\
# TYPE kube_namespace_labels gauge\n\
kube_namespace_labels{{namespace=\"kube-hospital\",label_tenantplane_io_tenant=\"kube-hospital\"}} 1\n\
kube_namespace_labels{{namespace=\"other-ns\"}} 1\n",
        a = 1_000.0 + 0.5 * s,
        b = 5_000.0 + 2.0 * s,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_charged_like_opencost_in_the_same_report() {
    let app = Router::new()
        .route("/metrics", get(fixture))
        .with_state(Instant::now());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let prom = tokio::task::spawn_blocking(move || Prometheus::start(&[target]))
        .await
        .unwrap()
        .unwrap();
    let mut costs = costs_config();
    costs.kubernetes = Some(KubernetesConfig {
        prometheus_url: prom.url.clone(),
        cluster: "gke-sp".into(),
        tenant_label: Some("label_tenantplane_io_tenant".into()),
        resolution_secs: 5,
    });
    let s = TestServer::start_with(TestServerOptions {
        costs: Some(costs),
        ..Default::default()
    })
    .await
    .unwrap();
    s.client
        .create_tenant(&new_tenant("kube-hospital"))
        .await
        .unwrap();
    // Enough samples for rate() (1 s scrapes).
    let mut report = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (st, _, _, v) = raw(s
            .client
            .request(Method::GET, "/api/v1/costs?window=10m&aggregate=tenant"))
        .await;
        assert_eq!(st, 200, "{v}");
        let hours = |k: &str| {
            v["data"][0]["allocations"][k]["cpuCoreHours"]
                .as_f64()
                .unwrap_or(0.0)
        };
        // Until rate() has samples, other-ns shows only its request (0.5 core).
        let (a, b) = (hours("kube-hospital"), hours("__unmapped__/other-ns"));
        if a > 0.0 && b / a >= 1.5 {
            report = v;
            break;
        }
    }
    assert!(
        !report.is_null(),
        "no cluster samples with usage within a minute"
    );
    let rows = &report["data"][0]["allocations"];
    let (a, b) = (&rows["kube-hospital"], &rows["__unmapped__/other-ns"]);
    // max(request 1, usage 0.5) = 1 core vs max(request 0.5, usage 2) = 2 cores.
    let ratio = b["cpuCoreHours"].as_f64().unwrap() / a["cpuCoreHours"].as_f64().unwrap();
    assert!((1.5..=2.5).contains(&ratio), "cpu {ratio}: {rows}");
    assert!(
        micros(&a["ramCost"]) > micros(&b["ramCost"]),
        "max(1 GiB used, 0.5 requested) vs 0.25 GiB"
    );
    // The cluster's idle is its own, and every cent is accounted for.
    assert!(
        micros(&report["data"][0]["idle"]["__idle__"]["totalCost"]) > 0,
        "{report}"
    );
    let step = &report["data"][0];
    let sum = |k: &str| {
        step[k]
            .as_object()
            .unwrap()
            .values()
            .map(|r| micros(&r["totalCost"]))
            .sum::<i64>()
    };
    assert_eq!(
        sum("allocations")
            + sum("idle")
            + micros(&step["unallocatedCost"])
            + micros(&step["filteredOutCost"]),
        micros(&step["totalCost"])
    );
    // The same report, by source and by namespace.
    let (_, _, _, by) = raw(s.client.request(
        Method::GET,
        "/api/v1/costs?window=10m&aggregate=source,namespace",
    ))
    .await;
    assert!(
        by["data"][0]["allocations"]
            .get("kubernetes/kube-hospital")
            .is_some(),
        "{by}"
    );
    let (_, _, _, only) = raw(s.client.request(
        Method::GET,
        "/api/v1/costs?window=10m&aggregate=tenant&filter=cluster:gke-sp",
    ))
    .await;
    assert!(
        only["data"][0]["allocations"]
            .get("kube-hospital")
            .is_some()
    );
    // Prometheus gone: 502, no invented numbers.
    drop(prom);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, _, p, _) = raw(s.client.request(Method::GET, "/api/v1/costs?window=10m")).await;
    assert_eq!(st, 502);
    assert_eq!(
        p.unwrap().kind,
        "urn:tenantplane:problem:upstream-unavailable"
    );
}
