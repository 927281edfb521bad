//! `GET /api/v1/tenants/{t}/statement`: a finished month equal to the fleet report's row,
//! lines and departments adding up to the total, the current month projected against the
//! previous one, CSV and a printable page, bad input.

use reqwest::Method;
use tenantplane_catalog::usage::{GaugeRow, HOUR, MINUTE, UsageRow};
use tenantplane_core::api::CreateTenant;

use super::report::{costs_server, micros};
use crate::{new_tenant, raw};

/// The previous month (`YYYY-MM`), its start and end, and the 10th of it at midnight.
fn previous_month() -> (String, String, String, i64) {
    let now = time::OffsetDateTime::now_utc();
    let this = now
        .replace_day(1)
        .unwrap()
        .replace_time(time::Time::MIDNIGHT);
    let prev = (this - time::Duration::days(1)).replace_day(1).unwrap();
    let f = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    (
        format!("{:04}-{:02}", prev.year(), u8::from(prev.month())),
        f(prev),
        f(this),
        prev.unix_timestamp() + 9 * 86_400,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_add_up_and_project() {
    let s = costs_server().await;
    let mut req = new_tenant("stmt-hospital");
    req.admin_email = Some("admin@stmt.example".into());
    req.branding = Some(tenantplane_core::Branding {
        primary_color: Some("#336699".into()),
        ..Default::default()
    });
    let t = s
        .client
        .create_tenant(&CreateTenant { ..req })
        .await
        .unwrap();
    let other = s
        .client
        .create_tenant(&new_tenant("stmt-other"))
        .await
        .unwrap();
    let (month, p0, p1, p10) = previous_month();
    let c = s.control.catalog();
    let row = |tenant, bucket, span, meter: &str, value| UsageRow {
        tenant,
        bucket,
        span,
        meter: meter.into(),
        value,
    };
    c.add_usage(&[
        row(t.id, p10, HOUR, "cpu_nanos", 3_600_000_000_000),
        row(t.id, p10, HOUR, "requests:fhir-read", 10_000),
        row(other.id, p10, HOUR, "cpu_nanos", 1_800_000_000_000),
    ])
    .await
    .unwrap();
    c.set_gauges(&[GaugeRow {
        tenant: t.id,
        hour: p10,
        measure: "users".into(),
        value: 4,
    }])
    .await
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    c.add_usage(&[row(
        t.id,
        now - now % MINUTE,
        MINUTE,
        "requests:fhir-read",
        5_000,
    )])
    .await
    .unwrap();

    let get = |path: String| raw(s.client.request(Method::GET, &path));
    // The previous month is over: the statement is the fleet report's row for the tenant.
    let (st, _, _, nov) = get(format!(
        "/api/v1/tenants/stmt-hospital/statement?month={month}"
    ))
    .await;
    assert_eq!(st, 200, "{nov}");
    let (_, _, _, fleet) = get(format!(
        "/api/v1/costs?window={p0},{p1}&aggregate=tenant&idle=weighted&shared=weighted"
    ))
    .await;
    let fleet_row = &fleet["data"][0]["allocations"]["stmt-hospital"];
    assert_eq!(nov["total"], fleet_row["totalCost"], "{nov}\n{fleet_row}");
    assert_eq!(nov["projected_total"], nov["total"]);
    let lines: i64 = nov["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| micros(&l["amount"]))
        .sum();
    assert_eq!(lines, micros(&nov["total"]));
    let depts: i64 = nov["departments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| micros(&d["amount"]))
        .sum();
    assert_eq!(depts, micros(&nov["total"]), "{}", nov["departments"]);
    assert_eq!(nov["users"], 4);
    assert_eq!(
        micros(&nov["per_user"]),
        micros(&nov["total"]) / 4,
        "per user: the month's total over its active users"
    );
    assert!(nov["projection_method"].as_str().unwrap().contains("over"));
    // This month so far: projected from its run-rate, compared with the previous one.
    let (st, _, _, dec) = get("/api/v1/tenants/stmt-hospital/statement".into()).await;
    assert_eq!(st, 200, "{dec}");
    assert_eq!(dec["previous_total"], nov["total"]);
    assert!(micros(&dec["projected_total"]) >= micros(&dec["total"]));
    assert!(dec["growth_pct"].is_number(), "{dec}");
    let drivers: Vec<&str> = dec["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["driver"].as_str().unwrap())
        .collect();
    assert_eq!(
        drivers,
        [
            "users",
            "requests",
            "storage_gib_hours",
            "cpu_core_hours",
            "ai_cost"
        ]
    );
    // CSV and a printable page in the tenant's colour.
    let res = s
        .client
        .request(
            Method::GET,
            &format!("/api/v1/tenants/stmt-hospital/statement?month={month}&format=csv"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    assert!(csv.starts_with("section,item,value,currency\n"), "{csv}");
    assert!(csv.contains(&format!(
        "total,month_to_date,{},BRL",
        nov["total"].as_str().unwrap()
    )));
    let res = s
        .client
        .request(
            Method::GET,
            &format!("/api/v1/tenants/stmt-hospital/statement?month={month}&format=html"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = res.text().await.unwrap();
    assert!(
        html.contains("#336699") && html.contains(&format!("Statement for {month}")),
        "{html}"
    );
    assert!(!html.contains("<script"));
    // Bad input.
    for (q, status) in [
        ("month=2026-13", 400),
        ("month=26-11", 400),
        ("month=2099-01", 400),
        ("format=pdf", 400),
        ("month=2026-01&x=1", 400),
    ] {
        let (st, ct, _, v) = get(format!("/api/v1/tenants/stmt-hospital/statement?{q}")).await;
        assert_eq!(
            (st, ct.as_str()),
            (status, "application/problem+json"),
            "{q}: {v}"
        );
    }
    let (st, ..) = get("/api/v1/tenants/nobody-here/statement".into()).await;
    assert_eq!(st, 404);
}
