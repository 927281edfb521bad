//! `/api/v1/budgets` and `/api/v1/alerts`: budgets per tenant or plan, the alerts they
//! raise and each alert's webhook delivery log.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use tenantplane_control::Control;
use tenantplane_core::{
    api::Problem,
    usage_api::{AlertList, AlertQuery, BudgetList, BudgetView, CreateBudget, DeliveryList},
};
use uuid::Uuid;

use crate::{
    context::OperatorCtx,
    extract::{ApiJson, ApiQuery},
    problem::{ApiError, ApiResult},
};

fn budget_id(s: &str) -> Result<Uuid, ApiError> {
    s.parse().map_err(|_| ApiError::not_found("budget"))
}

/// Create a budget for a tenant or for each tenant of a plan. Alerts are signed with the
/// `webhook_secret` of the answer, shown once.
#[utoipa::path(post, path = "/api/v1/budgets", tag = "costs", request_body = CreateBudget,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created (the webhook secret, once)", body = BudgetView),
        (status = 400, description = "Invalid budget", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    ApiJson(req): ApiJson<CreateBudget>,
) -> ApiResult<Response> {
    op.require_write()?;
    let b = control.create_budget(req).await?;
    let mut r = (StatusCode::CREATED, Json(&b)).into_response();
    if let Ok(v) = format!("/api/v1/budgets/{}", b.id).parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Every budget.
#[utoipa::path(get, path = "/api/v1/budgets", tag = "costs", security(("operator_token" = [])),
    responses((status = 200, description = "Budgets", body = BudgetList)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
) -> ApiResult<Json<BudgetList>> {
    Ok(Json(BudgetList {
        items: control.budgets().await?,
    }))
}

/// Delete a budget (its alerts stay listed).
#[utoipa::path(delete, path = "/api/v1/budgets/{budget}", tag = "costs",
    params(("budget" = String, Path, description = "Budget id")),
    security(("operator_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such budget", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    op.require_write()?;
    control.delete_budget(budget_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Alerts raised by budgets and spend spikes, newest first, with their delivery state.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "costs", params(AlertQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Alerts", body = AlertList),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn alerts(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> ApiResult<Json<AlertList>> {
    Ok(Json(AlertList {
        items: control.alerts(&q).await?,
    }))
}

/// An alert's webhook delivery attempts.
#[utoipa::path(get, path = "/api/v1/alerts/{alert}/deliveries", tag = "costs",
    params(("alert" = String, Path, description = "Alert id")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Attempts in order", body = DeliveryList),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryList>> {
    let id: Uuid = id.parse().map_err(|_| ApiError::not_found("alert"))?;
    Ok(Json(DeliveryList {
        items: control.deliveries(id).await?,
    }))
}
