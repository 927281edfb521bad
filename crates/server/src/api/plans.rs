//! `/api/v1/plans`: plans and their quotas (data, editable by operators).

use std::sync::Arc;

use tenantplane_control::Control;

use axum::{
    Json,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use tenantplane_core::{
    Plan,
    api::{PlanList, Problem, UpdatePlan},
};

use crate::{
    context::OperatorCtx,
    extract::{ApiJson, IfMatch, etag},
    problem::ApiResult,
};

/// List plans.
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", security(("operator_token" = [])),
    responses((status = 200, description = "Every plan", body = PlanList)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
) -> ApiResult<Json<PlanList>> {
    Ok(Json(PlanList {
        items: control.plans().await?,
    }))
}

/// Edit a plan's display name, quotas or default isolation.
#[utoipa::path(patch, path = "/api/v1/plans/{plan}", tag = "plans", request_body = UpdatePlan,
    params(("plan" = String, Path, description = "Plan name"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Updated", body = Plan, headers(("ETag" = String))),
        (status = 400, description = "Invalid quotas", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(name): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdatePlan>,
) -> ApiResult<Response> {
    op.require_write()?;
    let p = control.update_plan(&name, req, v).await?;
    let version = p.version;
    let mut r = Json(p).into_response();
    r.headers_mut().insert(header::ETAG, etag(version));
    Ok(r)
}
