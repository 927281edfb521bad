//! `/api/v1/tenants`: create, list, read, update, lifecycle and domains.

use std::sync::Arc;

use tenantplane_control::Control;

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tenantplane_core::{
    api::{
        AddDomain, CreateTenant, Problem, TenantList, TenantView, TransitionRequest, UpdateTenant,
    },
    lifecycle::TenantAction,
};

use super::tenant_response;
use crate::{
    context::OperatorCtx,
    extract::{ApiJson, ApiQuery, IfMatch, OptionalJson},
    problem::{ApiError, ApiResult},
};

/// Create a tenant.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created (and provisioned)", body = TenantView,
         headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug or domain taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<Response> {
    op.require_write()?;
    let (t, admin) = control.create(req).await?;
    let mut view = TenantView::from_tenant(&t, control.base_domain());
    view.initial_admin = admin;
    let mut r = (StatusCode::CREATED, Json(view)).into_response();
    r.headers_mut()
        .insert(header::ETAG, crate::extract::etag(t.version));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tenants/{}", t.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Listing parameters as the API receives them.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Filter by status.
    pub status: Option<tenantplane_core::TenantStatus>,
    /// Filter by profile.
    pub profile: Option<tenantplane_core::Profile>,
    /// Filter by plan name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")]
    pub plan: Option<String>,
    /// Filter by isolation mode.
    pub isolation: Option<tenantplane_core::IsolationMode>,
    /// Slug prefix or display-name substring (case-insensitive).
    pub q: Option<String>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Cursor from a previous page's `next_cursor` (opaque; others are refused).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl From<ListParams> for tenantplane_control::ListRequest {
    fn from(p: ListParams) -> Self {
        Self {
            status: p.status,
            profile: p.profile,
            plan: p.plan,
            isolation: p.isolation,
            q: p.q,
            limit: p.limit,
            cursor: p.cursor,
        }
    }
}

/// List tenants, filtered, in creation order, with cursor paging.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(ListParams),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantList),
        (status = 400, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<TenantList>> {
    let (items, next_cursor) = control.list(p.into()).await?;
    let bd = control.base_domain();
    Ok(Json(TenantList {
        items: items
            .iter()
            .map(|t| TenantView::from_tenant(t, bd))
            .collect(),
        next_cursor,
    }))
}

/// Read a tenant (by id or slug).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantView, headers(("ETag" = String))),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    let t = control.get(&t).await?;
    Ok(tenant_response(&control, StatusCode::OK, &t))
}

/// Import a FHIR `batch` or `transaction` Bundle into a tenant's records (bulk loads by
/// operators; every resource is audited as the operator).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/fhir", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    request_body(content = String, content_type = "application/fhir+json", description = "A batch or transaction Bundle"),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The batch-response or transaction-response Bundle"),
        (status = 400, description = "Not a valid bundle, or an entry failed (transactions: nothing written)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Tenant not active, or records off", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn fhir_import(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(t): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    op.require_write()?;
    let started = std::time::Instant::now();
    let (tenant, kind, results) = control.fhir_import(&t, &op.operator.name, &body).await?;
    tracing::info!(operator = %op.operator.name, tenant_id = %tenant, entries = results.len(), "FHIR bundle imported");
    Ok(crate::fhir_api::bundle_response(
        kind,
        &results,
        "",
        false,
        started,
        &|_, _, _| {},
    )?)
}

/// What a tenant uses of its plan's quotas (requests this month, users).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/usage", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Usage and limits", body = tenantplane_core::api::TenantUsage),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn usage(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    Path(t): Path<String>,
) -> ApiResult<Json<tenantplane_core::api::TenantUsage>> {
    Ok(Json(control.usage(&t).await?))
}

/// A tenant's health: the last hour's requests per second, error rates and latency
/// percentiles, its uptime this month (the synthetic probe), store size and connection use.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/health", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Health", body = tenantplane_core::api::TenantHealth),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn health(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    Path(t): Path<String>,
) -> ApiResult<Json<tenantplane_core::api::TenantHealth>> {
    Ok(Json(control.health(&t).await?))
}

/// Update a tenant's display name, profile, plan, branding or settings.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}", tag = "tenants", request_body = UpdateTenant,
    params(("tenant" = String, Path, description = "Tenant id or slug"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Updated", body = TenantView, headers(("ETag" = String))),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(t): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> ApiResult<Response> {
    op.require_write()?;
    let t = control.update(&t, req, v).await?;
    Ok(tenant_response(&control, StatusCode::OK, &t))
}

/// Create or reset a tenant administrator: a one-time password, shown once.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/admin", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    request_body(content = Option<tenantplane_core::identity::AdminReset>),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Administrator and one-time password", body = tenantplane_core::identity::AdminCredentials),
        (status = 400, description = "Invalid e-mail, or none given and the tenant has no administrator", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only operator, or the plan's user quota is used up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Tenant not active or suspended", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn admin_reset(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(t): Path<String>,
    OptionalJson(req): OptionalJson<tenantplane_core::identity::AdminReset>,
) -> ApiResult<Response> {
    op.require_write()?;
    let creds = control.admin_reset(&t, req.email).await?;
    tracing::info!(operator = %op.operator.name, tenant_id = %creds.tenant, "tenant admin reset");
    let mut r = Json(creds).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A lifecycle action addressed by URL: `POST /api/v1/tenants/{tenant}/{action}`.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleAction {
    /// active → suspended (its hosts answer 403 `tenant-suspended`).
    Suspend,
    /// suspended → active.
    Resume,
    /// deleting → the status it had before deletion.
    Restore,
    /// failed → provisioning, then the provisioning pipeline runs again.
    Retry,
}

impl From<LifecycleAction> for TenantAction {
    fn from(a: LifecycleAction) -> Self {
        match a {
            LifecycleAction::Suspend => TenantAction::Suspend,
            LifecycleAction::Resume => TenantAction::Resume,
            LifecycleAction::Restore => TenantAction::Restore,
            LifecycleAction::Retry => TenantAction::Retry,
        }
    }
}

async fn act(
    control: &Control,
    op: &OperatorCtx,
    t: &str,
    v: Option<u64>,
    req: TransitionRequest,
    action: TenantAction,
    status: StatusCode,
) -> ApiResult<Response> {
    op.require_write()?;
    let t = if action == TenantAction::Retry {
        control.retry(t, v).await?
    } else {
        control.transition(t, action, req.reason, v).await?
    };
    Ok(tenant_response(control, status, &t))
}

/// Suspend, resume, restore or retry (provisioning of a failed tenant). Illegal moves answer
/// 409 listing the allowed ones; a retry that fails again answers 503 `provisioning-failed`.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/{action}", tag = "tenants",
    request_body(content = Option<TransitionRequest>),
    params(("tenant" = String, Path, description = "Tenant id or slug"),
           ("action" = LifecycleAction, Path, description = "suspend, resume, restore or retry"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Moved", body = TenantView),
        (status = 404, description = "No such tenant or action", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Illegal transition (lists the allowed ones)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Provisioning failed again (retry)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn lifecycle(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path((t, action)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    OptionalJson(req): OptionalJson<TransitionRequest>,
) -> ApiResult<Response> {
    let action: LifecycleAction = serde_json::from_value(serde_json::Value::String(action))
        .map_err(|_| ApiError::not_found("tenant action"))?;
    act(&control, &op, &t, v, req, action.into(), StatusCode::OK).await
}

/// Delete a tenant: it enters `deleting` for the grace period (restorable), then `deleted`.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}", tag = "tenants",
    request_body(content = Option<TransitionRequest>),
    params(("tenant" = String, Path, description = "Tenant id or slug"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    security(("operator_token" = [])),
    responses(
        (status = 202, description = "Scheduled for deletion", body = TenantView),
        (status = 409, description = "Illegal transition", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(t): Path<String>,
    IfMatch(v): IfMatch,
    OptionalJson(req): OptionalJson<TransitionRequest>,
) -> ApiResult<Response> {
    act(
        &control,
        &op,
        &t,
        v,
        req,
        TenantAction::Delete,
        StatusCode::ACCEPTED,
    )
    .await
}

/// Add a custom domain (unique across tenants).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/domains", tag = "tenants", request_body = AddDomain,
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Added", body = TenantView),
        (status = 400, description = "Invalid domain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Domain taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_domain(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path(t): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<AddDomain>,
) -> ApiResult<Response> {
    op.require_write()?;
    let t = control.add_domain(&t, &req.domain, v).await?;
    Ok(tenant_response(&control, StatusCode::CREATED, &t))
}

/// Remove a custom domain.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/domains/{domain}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or slug"),
           ("domain" = String, Path, description = "The custom domain")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Removed", body = TenantView),
        (status = 404, description = "No such tenant or domain", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_domain(
    State(control): State<Arc<Control>>,
    op: OperatorCtx,
    Path((t, d)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<Response> {
    op.require_write()?;
    let t = control.remove_domain(&t, &d, v).await?;
    Ok(tenant_response(&control, StatusCode::OK, &t))
}
