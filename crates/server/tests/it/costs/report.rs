//! `GET /api/v1/costs` and `/api/v1/prices` over real HTTP: a fixed ledger priced to the
//! micro-unit (JSON and CSV contracts as snapshots), conservation in every step and
//! aggregation, filters that never change the rows they keep, measured traffic priced,
//! bad input refused, prices changed from a date on.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use tenantplane_catalog::usage::{GaugeRow, HOUR, MINUTE, UsageRow};
use tenantplane_core::TenantId;
use tenantplane_costs::Money;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::{new_tenant, raw};

pub(super) fn costs_config() -> tenantplane_server::config::CostsConfig {
    serde_json::from_value(json!({
        "currency": "BRL",
        "valid_from": "2026-01-01T00:00:00Z",
        "prices": {
            "cpu_core_hour": "0.36",
            "ram_gib_hour": "0.01",
            "storage_gib_month": {"standard": "730", "coldline": "146"},
            "egress_gib": "1",
            "requests_per_thousand": {"fhir-read": "2", "fhir-search": "5"},
            "meters": {"inference-tokens": {"category": "ai", "per_unit": "0.002"}},
            "nodes": [{"name": "n1-standard-8", "hourly": "1", "count": 3}],
            "database_month": "730",
            "load_balancer_month": "73",
            "overhead_month": "146",
            "plan_month": {"small": "99", "medium": "299", "large": "999"}
        }
    }))
    .unwrap()
}

pub(super) async fn costs_server() -> TestServer {
    TestServer::start_with(TestServerOptions {
        costs: Some(costs_config()),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// 2026-11-02T00:00:00Z.
const T0: i64 = 1_793_577_600;

fn row(t: TenantId, bucket: i64, span: i64, meter: &str, value: i64) -> UsageRow {
    UsageRow {
        tenant: t,
        bucket,
        span,
        meter: meter.into(),
        value,
    }
}

/// A known ledger: two hours of two tenants.
async fn fixed_ledger(s: &TestServer) -> (TenantId, TenantId) {
    let a = s
        .client
        .create_tenant(&new_tenant("alpha-hospital"))
        .await
        .unwrap()
        .id;
    let b = s
        .client
        .create_tenant(&new_tenant("bravo-clinic"))
        .await
        .unwrap()
        .id;
    let c = s.control.catalog();
    c.add_usage(&[
        // A: half a core-hour of CPU and 1,000 reads in the first hour; 2,000 searches and
        // 500,000 tokens in the second (an hour row, as after a roll-up).
        row(a, T0, MINUTE, "cpu_nanos", 1_800_000_000_000),
        row(a, T0 + 60, MINUTE, "requests:fhir-read", 1_000),
        row(a, T0 + HOUR, HOUR, "requests:fhir-search", 2_000),
        row(
            a,
            T0 + HOUR,
            HOUR,
            "meter:inference-tokens",
            500_000_000_000,
        ),
        // B: a tenth of a core-hour, 1 GiB sent, in the first hour.
        row(b, T0 + 120, MINUTE, "cpu_nanos", 360_000_000_000),
        row(b, T0 + 120, MINUTE, "bytes_out", 1 << 30),
    ])
    .await
    .unwrap();
    c.set_gauges(&[
        GaugeRow {
            tenant: a,
            hour: T0,
            measure: "store_bytes".into(),
            value: 1 << 30,
        },
        GaugeRow {
            tenant: a,
            hour: T0 + HOUR,
            measure: "store_bytes".into(),
            value: 1 << 30,
        },
    ])
    .await
    .unwrap();
    (a, b)
}

pub(super) fn micros(v: &Value) -> i64 {
    v.as_str().unwrap().parse::<Money>().unwrap().micros()
}

/// Every step: rows + idle + shared apart + unallocated + filtered out = total.
fn assert_conserved(report: &Value) {
    for step in report["data"].as_array().unwrap() {
        let sum_rows = |k: &str| -> i64 {
            step[k]
                .as_object()
                .unwrap()
                .values()
                .map(|r| micros(&r["totalCost"]))
                .sum()
        };
        let shared = step
            .get("shared")
            .map(|r| micros(&r["totalCost"]))
            .unwrap_or(0);
        let parts = sum_rows("allocations")
            + sum_rows("idle")
            + shared
            + micros(&step["unallocatedCost"])
            + micros(&step["filteredOutCost"]);
        assert_eq!(parts, micros(&step["totalCost"]), "{step}");
    }
}

async fn get(s: &TestServer, query: &str) -> (u16, Value) {
    let (st, _, _, v) = raw(s
        .client
        .request(Method::GET, &format!("/api/v1/costs?{query}")))
    .await;
    (st, v)
}

const WINDOW: &str = "window=2026-11-02T00:00:00Z,2026-11-02T02:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_ledger_is_priced_exactly() {
    let s = costs_server().await;
    fixed_ledger(&s).await;
    let (st, v) = get(&s, &format!("{WINDOW}&step=1h&aggregate=tenant")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["currency"], "BRL");
    assert_conserved(&v);
    let h1 = &v["data"][0];
    let a = &h1["allocations"]["alpha-hospital"];
    // 0.5 core-hour × 0.36; 1,000 reads × 2/1000; 1 GiB × 1 h at 730 per GiB-month.
    assert_eq!(a["cpuCost"], "0.180000");
    assert_eq!(a["apiCost"], "2.000000");
    assert_eq!(a["storageCost"], "1.000000");
    let b = &h1["allocations"]["bravo-clinic"];
    assert_eq!(b["cpuCost"], "0.036000");
    assert_eq!(b["networkCost"], "1.000000");
    // Capacity 3 per hour; the tenants' CPU took 0.216 of it.
    assert_eq!(h1["idle"]["__idle__"]["totalCost"], "2.784000");
    // Shared: database 1 + load balancer 0.1 + overhead 0.2 per hour, by weight.
    let shared: i64 = h1["allocations"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| micros(&r["sharedCost"]))
        .sum();
    assert_eq!(shared, 1_300_000);
    let a2 = &v["data"][1]["allocations"]["alpha-hospital"];
    // 500,000 tokens × 0.002; 2,000 searches × 5/1000.
    assert_eq!(a2["aiCost"], "1000.000000");
    assert_eq!(a2["apiCost"], "10.000000");
    assert_eq!(a2["meters"]["inference-tokens"], "500000.000000");
    insta::assert_json_snapshot!("costs_json", v);
    // CSV: the same numbers, one line per row and step.
    let (st, ct, _, _) = raw(s.client.request(
        Method::GET,
        &format!("/api/v1/costs?{WINDOW}&step=1h&aggregate=tenant&format=csv"),
    ))
    .await;
    assert_eq!((st, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let text = s
        .client
        .request(
            Method::GET,
            &format!("/api/v1/costs?{WINDOW}&step=1h&aggregate=tenant"),
        )
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    insta::assert_snapshot!("costs_csv", text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_filters_and_sharing_keep_every_cent() {
    let s = costs_server().await;
    fixed_ledger(&s).await;
    let mut seen = BTreeMap::new();
    for q in [
        "aggregate=tenant",
        "aggregate=plan",
        "aggregate=profile,tenant",
        "aggregate=category",
        "aggregate=tenant,category",
        "aggregate=tenant&idle=weighted",
        "aggregate=tenant&idle=even&shared=even",
        "aggregate=tenant&shared=separate",
        "aggregate=tenant&shareTenants=bravo-clinic",
        "aggregate=tenant&filter=tenant:alpha-hospital",
        "aggregate=tenant&filter=tenant:nobody",
        "aggregate=tenant&step=30m&idle=weighted",
    ] {
        let (st, v) = get(&s, &format!("{WINDOW}&{q}")).await;
        assert_eq!(st, 200, "{q}: {v}");
        assert_conserved(&v);
        let total: i64 = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| micros(&d["totalCost"]))
            .sum();
        seen.insert(q, (total, v));
    }
    // Every view of the window costs the same in total.
    let totals: std::collections::BTreeSet<i64> = seen.values().map(|(t, _)| *t).collect();
    assert_eq!(totals.len(), 1, "{totals:?}");
    // A filter keeps alpha's row exactly as it is in the unfiltered report.
    let all = &seen["aggregate=tenant"].1["data"][0]["allocations"]["alpha-hospital"];
    let only = &seen["aggregate=tenant&filter=tenant:alpha-hospital"].1["data"][0];
    assert_eq!(&only["allocations"]["alpha-hospital"], all);
    assert!(only["allocations"].get("bravo-clinic").is_none());
    assert_ne!(only["filteredOutCost"], "0.000000");
    // Categories: one row per category with the idle and shared parts apart.
    let cats = &seen["aggregate=category"].1["data"][0]["allocations"];
    assert_eq!(cats["cpu"]["totalCost"], "0.216000");
    assert!(cats.get("shared").is_some());
    let by = &seen["aggregate=tenant,category"].1["data"][0]["allocations"];
    assert_eq!(by["alpha-hospital/cpu"]["totalCost"], "0.180000");
    // Separate shared costs: a row of their own, nothing shared into tenants.
    let sep = &seen["aggregate=tenant&shared=separate"].1["data"][0];
    assert_eq!(
        sep["shared"]["totalCost"], "2.600000",
        "1.3 an hour, two hours"
    );
    assert_eq!(
        sep["allocations"]["alpha-hospital"]["sharedCost"],
        "0.000000"
    );
    // A shared tenant is no row; its cost is in the others'.
    let shared_b = &seen["aggregate=tenant&shareTenants=bravo-clinic"].1["data"][0]["allocations"];
    assert!(shared_b.get("bravo-clinic").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_missing_prices() {
    let s = costs_server().await;
    for (q, pointer) in [
        ("window=fortnight", "/window"),
        (
            "window=2026-11-02T00:00:00Z,2026-11-01T00:00:00Z",
            "/window",
        ),
        (
            "window=2020-01-01T00:00:00Z,2026-01-01T00:00:00Z",
            "/window",
        ),
        ("window=today&step=1s", "/step"),
        ("window=lastmonth&step=1m", "/step"),
        ("window=today&aggregate=patient", "/aggregate"),
        ("window=today&aggregate=category,tenant", "/aggregate"),
        ("window=today&idle=sometimes", "/idle"),
        ("window=today&shared=all", "/shared"),
        ("window=today&filter=tenant", "/filter"),
        ("window=today&filter=secret:x", "/filter"),
        ("window=today&format=xml", "/format"),
    ] {
        let (st, _, p, v) = raw(s.client.request(Method::GET, &format!("/api/v1/costs?{q}"))).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert!(
            p.unwrap().errors.iter().any(|e| e.pointer == pointer),
            "{q}: {v}"
        );
    }
    let (st, ..) = raw(s
        .client
        .request(Method::GET, "/api/v1/costs?window=today&nonsense=1"))
    .await;
    assert_eq!(st, 400);
    let (st, ..) = raw(s.client.request(Method::GET, "/api/v1/costs")).await;
    assert_eq!(st, 400, "a window is required");
    let (st, ..) = raw(s
        .anonymous()
        .request(Method::GET, "/api/v1/costs?window=today"))
    .await;
    assert_eq!(st, 401);
    // Without a price sheet: 409, and what to do about it.
    let bare = TestServer::start().await.unwrap();
    let (st, _, p, _) = raw(bare
        .client
        .request(Method::GET, "/api/v1/costs?window=today"))
    .await;
    assert_eq!(st, 409);
    assert_eq!(p.unwrap().kind, "urn:tenantplane:problem:no-prices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_change_from_a_date_on() {
    let s = costs_server().await;
    fixed_ledger(&s).await;
    let (st, _, _, sheet) = raw(s.client.request(Method::GET, "/api/v1/prices")).await;
    assert_eq!(st, 200);
    assert_eq!(sheet["currency"], "BRL");
    assert_eq!(sheet["versions"].as_array().unwrap().len(), 1);
    let post = |body: Value| s.client.request(Method::POST, "/api/v1/prices").json(&body);
    let cheaper = json!({"cpu_core_hour": "0.18", "nodes": [{"name": "n1-standard-8", "hourly": "1", "count": 3}]});
    // Refused, nothing changed: back-dated, not on the hour, negative, unknown price, bad date.
    for (body, pointer) in [
        (
            json!({"valid_from": "2025-06-01T00:00:00Z", "prices": cheaper}),
            "/valid_from",
        ),
        (
            json!({"valid_from": "2026-11-02T01:30:00Z", "prices": cheaper}),
            "/valid_from",
        ),
        (
            json!({"valid_from": "2026-11-02T01:00:00Z", "prices": {"cpu_core_hour": "-1"}}),
            "/prices",
        ),
        (
            json!({"valid_from": "2026-11-02T01:00:00Z", "currency": "USD", "prices": cheaper}),
            "/currency",
        ),
        (
            json!({"valid_from": "soon", "prices": cheaper}),
            "/valid_from",
        ),
    ] {
        let (st, _, p, v) = raw(post(body.clone())).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(
            p.unwrap().errors.iter().any(|e| e.pointer == pointer),
            "{v}"
        );
    }
    let (st, _, _, v) = raw(post(
        json!({"valid_from": "2026-11-02T01:00:00Z", "prices": {"cpu_core_hour": "1e3"}}),
    ))
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, ..) = raw(
        post(json!({"valid_from": "2026-11-02T01:00:00Z", "prices": cheaper}))
            .header("if-match", "\"7\""),
    )
    .await;
    assert_eq!(st, 412);
    let (_, _, _, same) = raw(s.client.request(Method::GET, "/api/v1/prices")).await;
    assert_eq!(same, sheet, "nothing changed");
    // From 01:00 on, CPU costs half: the first hour keeps its price.
    let (st, _, _, v) = raw(post(
        json!({"valid_from": "2026-11-02T01:00:00Z", "prices": cheaper}),
    ))
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["versions"][0]["valid_until"], "2026-11-02T01:00:00Z");
    let (_, r) = get(&s, &format!("{WINDOW}&aggregate=tenant")).await;
    assert_conserved(&r);
    let a = &r["data"][0]["allocations"]["alpha-hospital"];
    assert_eq!(a["cpuCost"], "0.180000", "charged at the old price");
    // The second hour has no API price any more (the new version names none).
    assert_eq!(a["apiCost"], "2.000000");
    assert!(
        r["data"][0]["unpriced"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == "fhir-search")
    );
    // A billing viewer reads prices and costs but cannot change them.
    let viewer = s.client.with_token(Some(
        s.client
            .create_operator(&tenantplane_core::api::CreateOperator {
                name: "finance".into(),
                role: Some(tenantplane_core::OperatorRole::BillingViewer),
            })
            .await
            .unwrap()
            .token,
    ));
    let (st, ..) = raw(viewer.request(Method::GET, &format!("/api/v1/costs?{WINDOW}"))).await;
    assert_eq!(st, 200);
    let (st, ..) = raw(viewer
        .request(Method::POST, "/api/v1/prices")
        .json(&json!({"valid_from": "2027-01-01T00:00:00Z", "prices": cheaper})))
    .await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_labels_aggregate_and_filter() {
    let s = costs_server().await;
    let (a, b) = fixed_ledger(&s).await;
    let _ = (a, b);
    let label = |slug: &str, labels: Value| {
        s.client
            .request(Method::PATCH, &format!("/api/v1/tenants/{slug}"))
            .json(&json!({ "labels": labels }))
    };
    let (st, _, _, v) = raw(label(
        "alpha-hospital",
        json!({"department": "cardiology", "region": "sp"}),
    ))
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["labels"]["department"], "cardiology");
    let (st, ..) = raw(label("bravo-clinic", json!({"department": "oncology"}))).await;
    assert_eq!(st, 200);
    // Bad labels change nothing.
    for bad in [
        json!({"Department": "x"}),
        json!({"": "x"}),
        json!({"department": "x".repeat(129)}),
        json!({"department": "line\nbreak"}),
    ] {
        let (st, _, p, v) = raw(label("alpha-hospital", bad.clone())).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(
            p.unwrap()
                .errors
                .iter()
                .all(|e| e.pointer.starts_with("/labels"))
        );
    }
    let t = s.client.get_tenant("alpha-hospital").await.unwrap();
    assert_eq!(
        t.labels.get("department").map(String::as_str),
        Some("cardiology")
    );
    // Costs by label, and filtered by one.
    let (st, v) = get(&s, &format!("{WINDOW}&aggregate=label:department")).await;
    assert_eq!(st, 200, "{v}");
    assert_conserved(&v);
    let rows = &v["data"][0]["allocations"];
    assert!(
        rows.get("cardiology").is_some() && rows.get("oncology").is_some(),
        "{rows}"
    );
    let (_, by_tenant) = get(&s, &format!("{WINDOW}&aggregate=tenant")).await;
    assert_eq!(
        rows["cardiology"]["totalCost"],
        by_tenant["data"][0]["allocations"]["alpha-hospital"]["totalCost"]
    );
    let (_, only) = get(
        &s,
        &format!("{WINDOW}&aggregate=tenant&filter=label:region:sp"),
    )
    .await;
    assert!(only["data"][0]["allocations"].get("bravo-clinic").is_none());
    assert!(
        only["data"][0]["allocations"]
            .get("alpha-hospital")
            .is_some()
    );
    let (st, _) = get(&s, &format!("{WINDOW}&aggregate=label:")).await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_by_department() {
    let s = costs_server().await;
    let (a, _) = fixed_ledger(&s).await;
    // Alpha's departments as the hourly sample records them: ER twice ICU's weight.
    let g = |m: &str, v: i64| GaugeRow {
        tenant: a,
        hour: T0,
        measure: m.into(),
        value: v,
    };
    s.control
        .catalog()
        .set_gauges(&[g("department:er", 2 * 2_520), g("department:icu", 2_520)])
        .await
        .unwrap();
    let (st, v) = get(&s, &format!("{WINDOW}&aggregate=department")).await;
    assert_eq!(st, 200, "{v}");
    assert_conserved(&v);
    let (_, by_tenant) = get(&s, &format!("{WINDOW}&aggregate=tenant")).await;
    for (i, step) in v["data"].as_array().unwrap().iter().enumerate() {
        let rows = &step["allocations"];
        let alpha = micros(&by_tenant["data"][i]["allocations"]["alpha-hospital"]["totalCost"]);
        let (er, icu) = (
            micros(&rows["er"]["totalCost"]),
            micros(&rows["icu"]["totalCost"]),
        );
        assert_eq!(er + icu, alpha, "the parts add up to the tenant");
        assert!((er - 2 * icu).abs() <= 3, "2:1 ({er} vs {icu})");
    }
    // Bravo reports no department.
    assert!(v["data"][0]["allocations"].get("__unallocated__").is_some());
    let (_, both) = get(
        &s,
        &format!("{WINDOW}&aggregate=tenant,department&filter=department:er"),
    )
    .await;
    assert_conserved(&both);
    let rows = both["data"][0]["allocations"].as_object().unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["alpha-hospital/er"]);
}
