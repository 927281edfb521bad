//! `/api/v1/usage/events`: custom meter events reported by services the platform does not
//! run itself (AI inference, tokens, GPU time).

use std::sync::Arc;

use axum::{Json, extract::State};
use tenantplane_control::Control;
use tenantplane_core::{
    api::Problem,
    usage_api::{UsageEventBatch, UsageEventsReport},
};

use crate::{context::ReporterCtx, extract::ApiJson, problem::ApiResult};

/// Report usage events: 1 to 1,000 per call, each with an idempotency key unique per
/// tenant. All are recorded or, when one is invalid or reuses a key for other content,
/// none; events recorded before are answered as duplicates and not counted again.
#[utoipa::path(post, path = "/api/v1/usage/events", tag = "costs", request_body = UsageEventBatch,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Recorded (duplicates not counted again)", body = UsageEventsReport),
        (status = 400, description = "Invalid events; nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a usage reporter or platform administrator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An idempotency key was used for another event; nothing recorded", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report(
    State(control): State<Arc<Control>>,
    _who: ReporterCtx,
    ApiJson(batch): ApiJson<UsageEventBatch>,
) -> ApiResult<Json<UsageEventsReport>> {
    Ok(Json(control.report_usage(&batch).await?))
}
