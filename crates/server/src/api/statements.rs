//! `GET /api/v1/tenants/{t}/statement`: a tenant's monthly statement as JSON, CSV or a
//! printable HTML page in the tenant's branding.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use tenantplane_control::Control;
use tenantplane_core::{
    api::Problem,
    usage_api::{Statement, StatementQuery},
};

use crate::{
    context::OperatorCtx,
    extract::ApiQuery,
    problem::{ApiError, ApiResult},
};

/// A tenant's statement for a month: costs by category with its shares of idle capacity
/// and shared costs, month to date and projected, growth over the previous month and its
/// drivers, per user and per department.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/statement", tag = "costs",
    params(("tenant" = String, Path, description = "Tenant id or slug"), StatementQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The statement (JSON; CSV with format=csv; a printable page with format=html)", body = Statement),
        (status = 400, description = "Bad month or format", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No price sheet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn statement(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    Path(tenant): Path<String>,
    ApiQuery(q): ApiQuery<StatementQuery>,
) -> ApiResult<Response> {
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "html") {
        return Err(ApiError::field("/format", "use json, csv or html"));
    }
    let s = control.statement(&tenant, q.month.as_deref()).await?;
    Ok(match format {
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&s).map_err(|e| ApiError::internal(&e))?,
        )
            .into_response(),
        "html" => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src https:",
                ),
            ],
            to_html(&s),
        )
            .into_response(),
        _ => Json(s).into_response(),
    })
}

/// `section,item,value` lines: the lines, the totals, the drivers, the departments.
pub fn to_csv(s: &Statement) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["section", "item", "value", "currency"])?;
    let c = s.currency.as_str();
    for (k, v) in [
        ("tenant", s.slug.as_str()),
        ("month", s.month.as_str()),
        ("as_of", s.as_of.as_str()),
        ("plan", s.plan.as_str()),
    ] {
        w.write_record(["statement", k, v, ""])?;
    }
    for l in &s.lines {
        w.write_record(["cost", l.category.as_str(), l.amount.as_str(), c])?;
    }
    w.write_record(["total", "month_to_date", s.total.as_str(), c])?;
    w.write_record(["total", "projected", s.projected_total.as_str(), c])?;
    w.write_record(["total", "previous_month", s.previous_total.as_str(), c])?;
    if let Some(p) = &s.per_user {
        w.write_record(["total", "per_user", p.as_str(), c])?;
    }
    for d in &s.drivers {
        w.write_record([
            "driver",
            d.driver.as_str(),
            &format!("{} -> {}", d.previous, d.current),
            "",
        ])?;
    }
    for d in &s.departments {
        w.write_record(["department", d.department.as_str(), d.amount.as_str(), c])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A printable page: the tenant's name, colour and logo, its lines and totals.
pub fn to_html(s: &Statement) -> String {
    let color = s
        .branding
        .primary_color
        .as_deref()
        .filter(|c| {
            c.starts_with('#') && c.len() <= 7 && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .unwrap_or("#1f4e79");
    let logo = s
        .branding
        .logo_url
        .as_deref()
        .filter(|u| u.starts_with("https://"))
        .map(|u| format!("<img class=\"logo\" src=\"{}\" alt=\"\">", esc(u)))
        .unwrap_or_default();
    let rows: String = s
        .lines
        .iter()
        .filter(|l| l.amount != "0.000000")
        .map(|l| {
            format!(
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&l.category.replace('_', " ")),
                esc(&l.amount)
            )
        })
        .collect();
    let depts: String = s
        .departments
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&d.department),
                d.users,
                esc(&d.amount)
            )
        })
        .collect();
    let growth = s
        .growth_pct
        .map(|g| format!("{g:+.1} %"))
        .unwrap_or_else(|| "—".to_owned());
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{name} — statement {month}</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
header{{border-bottom:4px solid {color};padding-bottom:.5em;display:flex;gap:1em;align-items:center}}\
.logo{{max-height:48px}}h1{{margin:0;color:{color}}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{padding:.25em 1em;border-bottom:1px solid #ddd;text-align:left}}.n{{text-align:right;font-variant-numeric:tabular-nums}}\
@media print{{body{{margin:0}}}}</style></head><body>\
<header>{logo}<div><h1>{name}</h1><div>Statement for {month} · plan {plan} · amounts in {cur}</div></div></header>\
<p>Costs up to {as_of}.</p><table><tr><th>Category</th><th class=\"n\">Amount</th></tr>{rows}\
<tr><th>Month to date</th><th class=\"n\">{total}</th></tr>\
<tr><td>Projected month end</td><td class=\"n\">{projected}</td></tr>\
<tr><td>Previous month</td><td class=\"n\">{previous}</td></tr>\
<tr><td>Growth</td><td class=\"n\">{growth}</td></tr></table>\
<p><small>Projection: {method}.</small></p>\
<h2>By department</h2><table><tr><th>Department</th><th class=\"n\">Users</th><th class=\"n\">Amount</th></tr>{depts}</table>\
</body></html>",
        name = esc(&s.display_name),
        month = esc(&s.month),
        plan = esc(&s.plan),
        cur = esc(&s.currency),
        as_of = esc(&s.as_of),
        total = esc(&s.total),
        projected = esc(&s.projected_total),
        previous = esc(&s.previous_total),
        method = esc(&s.projection_method),
    )
}
