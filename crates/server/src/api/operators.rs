//! `/api/v1/operators`: platform operator accounts and their tokens.

use std::sync::Arc;

use tenantplane_control::Control;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use tenantplane_core::api::{
    CreateOperator, OperatorCredentials, OperatorList, OperatorView, Problem,
};

use crate::{context::OperatorCtx, extract::ApiJson, problem::ApiResult};

/// List operators.
#[utoipa::path(get, path = "/api/v1/operators", tag = "operators", security(("operator_token" = [])),
    responses((status = 200, description = "Every operator", body = OperatorList)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
) -> ApiResult<Json<OperatorList>> {
    op.require_write()?;
    Ok(Json(OperatorList {
        items: control
            .operators()
            .await?
            .iter()
            .map(OperatorView::from)
            .collect(),
    }))
}

/// The calling operator.
#[utoipa::path(get, path = "/api/v1/operators/me", tag = "operators", security(("operator_token" = [])),
    responses((status = 200, description = "Who you are", body = OperatorView),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub async fn me(op: OperatorCtx) -> Json<OperatorView> {
    Json(OperatorView::from(&op.operator))
}

/// Create an operator; the response carries its token, shown only this once.
#[utoipa::path(post, path = "/api/v1/operators", tag = "operators", request_body = CreateOperator,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = OperatorCredentials),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    ApiJson(req): ApiJson<CreateOperator>,
) -> ApiResult<(StatusCode, Json<OperatorCredentials>)> {
    op.require_write()?;
    let (o, token) = control.create_operator(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(OperatorCredentials {
            operator: OperatorView::from(&o),
            token,
        }),
    ))
}

/// Issue a new token for an operator (the old one stops working).
#[utoipa::path(post, path = "/api/v1/operators/{operator}/reset-token", tag = "operators",
    params(("operator" = String, Path, description = "Operator id or name")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "New token", body = OperatorCredentials),
        (status = 404, description = "No such operator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_token(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<OperatorCredentials>> {
    op.require_write()?;
    let (o, token) = control.reset_operator(&id).await?;
    Ok(Json(OperatorCredentials {
        operator: OperatorView::from(&o),
        token,
    }))
}

/// Disable an operator.
#[utoipa::path(post, path = "/api/v1/operators/{operator}/disable", tag = "operators",
    params(("operator" = String, Path, description = "Operator id or name")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Disabled", body = OperatorView),
        (status = 404, description = "No such operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Cannot disable yourself", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn disable(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<OperatorView>> {
    op.require_write()?;
    let o = control.disable_operator(&id, &op.operator).await?;
    Ok(Json(OperatorView::from(&o)))
}
