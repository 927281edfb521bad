//! `/api/v1/costs` and `/api/v1/prices`: per-tenant costs of any window (JSON or CSV, in
//! the shape of OpenCost's `/allocation`) and the versioned price sheet.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tenantplane_control::Control;
use tenantplane_core::{
    api::Problem,
    usage_api::{CostQuery, CostReport, CostRow},
};
use tenantplane_costs::{PriceSheet, Prices};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    context::OperatorCtx,
    extract::{ApiJson, ApiQuery, IfMatch, etag},
    problem::{ApiError, ApiResult},
};

/// Costs per tenant (or plan, profile, category, …) of a window, step by step: every
/// step's rows, idle and shared costs add up exactly to its total.
#[utoipa::path(get, path = "/api/v1/costs", tag = "costs", params(CostQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The report (JSON, or CSV with format=csv or Accept: text/csv)", body = CostReport),
        (status = 400, description = "Bad window, step, aggregation or filter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No price sheet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CostQuery>,
) -> ApiResult<Response> {
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(_) => return Err(ApiError::field("/format", "use json or csv")),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    };
    let report = control.costs(&q).await?;
    if csv {
        let body = to_csv(&report).map_err(|e| ApiError::internal(&e))?;
        Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
    } else {
        Ok(Json(report).into_response())
    }
}

/// The CSV columns.
const COLUMNS: [&str; 22] = [
    "windowStart",
    "windowEnd",
    "kind",
    "name",
    "currency",
    "cpuCost",
    "ramCost",
    "gpuCost",
    "storageCost",
    "networkCost",
    "loadBalancerCost",
    "databaseCost",
    "aiCost",
    "apiCost",
    "idleCost",
    "sharedCost",
    "totalCost",
    "cpuCoreHours",
    "requests",
    "egressBytes",
    "storageGiBHours",
    "meters",
];

/// One line per row of every step (allocations, idle, shared), then the step's
/// unallocated and filtered-out amounts and its total.
pub fn to_csv(r: &CostReport) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for step in &r.data {
        let mut line = |kind: &str, row: &CostRow| -> Result<(), csv::Error> {
            let meters = row
                .meters
                .as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .unwrap_or_default();
            w.write_record([
                step.window.start.as_str(),
                step.window.end.as_str(),
                kind,
                row.name.as_str(),
                r.currency.as_str(),
                &row.cpu_cost,
                &row.ram_cost,
                &row.gpu_cost,
                &row.storage_cost,
                &row.network_cost,
                &row.load_balancer_cost,
                &row.database_cost,
                &row.ai_cost,
                &row.api_cost,
                &row.idle_cost,
                &row.shared_cost,
                &row.total_cost,
                &row.cpu_core_hours
                    .map(|h| format!("{h:.6}"))
                    .unwrap_or_default(),
                &row.requests
                    .as_ref()
                    .map(|m| m.values().sum::<u64>().to_string())
                    .unwrap_or_default(),
                &row.egress_bytes.map(|b| b.to_string()).unwrap_or_default(),
                &row.storage_gib_hours
                    .map(|h| format!("{h:.6}"))
                    .unwrap_or_default(),
                &meters,
            ])
        };
        for row in step.allocations.values() {
            line("allocation", row)?;
        }
        for row in step.idle.values() {
            line("idle", row)?;
        }
        if let Some(row) = &step.shared {
            line("shared", row)?;
        }
        let blank = |name: &str, total: &str| -> Vec<String> {
            let mut v = vec![
                step.window.start.clone(),
                step.window.end.clone(),
                name.to_owned(),
                String::new(),
                r.currency.clone(),
            ];
            v.extend(std::iter::repeat_n(String::new(), 11));
            v.push(total.to_owned());
            v.extend(std::iter::repeat_n(String::new(), 5));
            v
        };
        w.write_record(blank("unallocated", &step.unallocated_cost))?;
        w.write_record(blank("filtered_out", &step.filtered_out_cost))?;
        w.write_record(blank("total", &step.total_cost))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `POST /api/v1/prices`: prices from a date on.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceChange {
    /// ISO 4217 code; only for the first sheet (USD when absent).
    #[serde(default)]
    pub currency: Option<String>,
    /// When the prices apply from (RFC 3339, on the hour, after the current version's
    /// start).
    pub valid_from: String,
    /// The prices (`cpu_core_hour`, `ram_gib_hour`, `gpu_hour`, `storage_gib_month`,
    /// `egress_gib`, `requests_per_thousand`, `meters`, `nodes`, `database_month`,
    /// `load_balancer_month`, `overhead_month`), amounts as decimal strings.
    #[schema(value_type = Object)]
    pub prices: Prices,
}

fn sheet_response(status: StatusCode, sheet: &PriceSheet, version: u64) -> Response {
    let mut r = (status, Json(sheet)).into_response();
    r.headers_mut().insert(header::ETAG, etag(version));
    r
}

/// The price sheet: its currency and every version with its validity range.
#[utoipa::path(get, path = "/api/v1/prices", tag = "costs", security(("operator_token" = [])),
    responses(
        (status = 200, description = "The sheet", body = Object, headers(("ETag" = String))),
        (status = 404, description = "No sheet yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_prices(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
) -> ApiResult<Response> {
    match control.price_sheet().await? {
        Some((sheet, v)) => Ok(sheet_response(StatusCode::OK, &sheet, v)),
        None => Err(ApiError::not_found("price sheet")),
    }
}

/// New prices from `valid_from` on: the version in force ends there, so what was already
/// charged keeps its prices.
#[utoipa::path(post, path = "/api/v1/prices", tag = "costs", request_body = PriceChange,
    params(("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The sheet with the new version", body = Object, headers(("ETag" = String))),
        (status = 400, description = "Bad prices, currency or date (e.g. back-dated)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_prices(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<PriceChange>,
) -> ApiResult<Response> {
    op.require_write()?;
    let from = OffsetDateTime::parse(&req.valid_from, &Rfc3339)
        .map_err(|_| ApiError::field("/valid_from", "not an RFC 3339 date-time"))?;
    let (sheet, version) = control
        .change_prices(req.currency.as_deref(), from, req.prices, v)
        .await?;
    Ok(sheet_response(StatusCode::OK, &sheet, version))
}

/// Savings recommendations from measured usage: plan right-sizing, idle tenants,
/// isolation modes that cost more (or protect less) than their load needs, storage to move
/// to a colder class; each with its estimated monthly saving and how it was computed.
#[utoipa::path(get, path = "/api/v1/recommendations", tag = "costs",
    params(tenantplane_core::usage_api::RecommendationQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Largest saving first", body = tenantplane_core::usage_api::RecommendationList),
        (status = 400, description = "Bad window", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No price sheet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn recommendations(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    ApiQuery(q): ApiQuery<tenantplane_core::usage_api::RecommendationQuery>,
) -> ApiResult<Json<tenantplane_core::usage_api::RecommendationList>> {
    Ok(Json(control.recommendations(q.window.as_deref()).await?))
}
