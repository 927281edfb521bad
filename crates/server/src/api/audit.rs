//! Audit on the platform API: every operator action (a mutating request by an authenticated
//! operator) is recorded in the platform audit log in the catalog before its response is
//! sent, and — when it concerns one tenant and succeeded — in that tenant's own log too.
//! Operators verify chains here; they never read a tenant's entries (the tenant's auditors
//! do, at `/fhir/AuditEvent`).

use std::sync::Arc;

use axum::{
    Json,
    extract::{MatchedPath, Path, RawPathParams, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use tenantplane_audit::{Category, Entry};
use tenantplane_catalog::platform_audit::PlatformAuditQuery;
use tenantplane_control::Control;
use tenantplane_core::{
    audit_api::{PlatformAuditEntry, PlatformAuditPage, PlatformAuditParams, VerifyReport},
    cursor,
};

use crate::{
    audit_trail::Origin,
    context::{ActingOperator, OperatorCtx},
    extract::ApiQuery,
    problem::{ApiError, ApiResult},
};

/// The action label of a platform request (`tenant-suspend`, `tenant-update`, …).
fn action_of(method: &Method, path: &str, params: &RawPathParams) -> String {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.chars().take(32).collect::<String>())
    };
    match (method.as_str(), path) {
        ("POST", "/api/v1/tenants") => "tenant-create".into(),
        ("PATCH", "/api/v1/tenants/{tenant}") => "tenant-update".into(),
        ("DELETE", "/api/v1/tenants/{tenant}") => "tenant-delete".into(),
        ("POST", "/api/v1/tenants/{tenant}/admin") => "admin-reset".into(),
        ("POST", "/api/v1/tenants/{tenant}/fhir") => "import".into(),
        ("POST", "/api/v1/tenants/{tenant}/{action}") => {
            format!("tenant-{}", param("action").unwrap_or_default())
        }
        ("POST", "/api/v1/tenants/{tenant}/domains") => "domain-add".into(),
        ("DELETE", "/api/v1/tenants/{tenant}/domains/{domain}") => "domain-remove".into(),
        ("POST", "/api/v1/tenants/{tenant}/audit/verify") => "audit-verify".into(),
        ("POST", "/api/v1/audit/verify") => "platform-audit-verify".into(),
        ("PATCH", "/api/v1/plans/{plan}") => {
            format!("plan-update:{}", param("plan").unwrap_or_default())
        }
        ("POST", "/api/v1/prices") => "prices-change".into(),
        ("POST", "/api/v1/budgets") => "budget-create".into(),
        ("DELETE", "/api/v1/budgets/{budget}") => "budget-delete".into(),
        ("POST", "/api/v1/operators") => "operator-create".into(),
        ("POST", "/api/v1/operators/{operator}/reset-token") => {
            format!(
                "operator-reset-token:{}",
                param("operator").unwrap_or_default()
            )
        }
        ("POST", "/api/v1/operators/{operator}/disable") => {
            format!("operator-disable:{}", param("operator").unwrap_or_default())
        }
        (m, p) => format!("{m} {p}"),
    }
}

fn code_of(m: &Method) -> &'static str {
    match *m {
        Method::POST => "C",
        Method::PUT | Method::PATCH => "U",
        Method::DELETE => "D",
        _ => "E",
    }
}

/// Records operator actions (see the module). Reads and usage reports are not recorded.
pub async fn record_actions(
    State(control): State<Arc<Control>>,
    matched: Option<MatchedPath>,
    params: RawPathParams,
    origin: Origin,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = matched
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        || path == "/api/v1/usage/events"
    {
        return next.run(req).await;
    }
    let slot = ActingOperator::default();
    req.extensions_mut().insert(slot.clone());
    let action = action_of(&method, &path, &params);
    let tenant_ref = params
        .iter()
        .find(|(k, _)| *k == "tenant")
        .map(|(_, v)| v.to_owned());
    let response = next.run(req).await;
    let Some(name) = slot.0.get() else {
        // Not authenticated: nothing was done (refusals are counted in metrics).
        return response;
    };
    let status = response.status();
    // A created tenant is named by the answer's `Location` (`/api/v1/tenants/{id}`).
    let tenant_ref = tenant_ref.or_else(|| {
        (action == "tenant-create" && status.is_success())
            .then(|| response.headers().get(axum::http::header::LOCATION))
            .flatten()
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_owned)
    });
    let tenant = tenant_ref.and_then(|r| control.index().find(&r));
    let entity = match &tenant {
        Some(t) => format!("Tenant/{}", t.id),
        None => path.clone(),
    };
    let detail =
        serde_json::json!({ "method": method.as_str(), "route": path, "status": status.as_u16() });
    let entry = Entry::now(
        Category::Operator,
        &action,
        code_of(&method),
        format!("operator/{name}"),
    )
    .entity(entity)
    .outcome(tenantplane_audit::outcome_of_status(status.as_u16()))
    .origin(
        origin.peer.map(|p| p.to_string()),
        origin.request_id.clone(),
    )
    .detail(&detail);
    if let Err(e) = control.catalog().append_platform_audit(&entry).await {
        metrics::counter!("tenantplane_audit_dropped_total", "reason" => "platform-log")
            .increment(1);
        tracing::error!(error = %e, action = %action, "platform audit entry not written");
    }
    if status.is_success()
        && let Some(t) = tenant
    {
        control.audit_operator(
            &t,
            name,
            &action,
            detail,
            (
                origin.peer.map(|p| p.to_string()),
                origin.request_id.clone(),
            ),
        );
    }
    response
}

fn ms(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| ApiError::field(&format!("/{field}"), "must be an RFC 3339 instant"))
        })
        .transpose()
}

/// The platform audit log: operators' actions across tenants.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(PlatformAuditParams),
    security(("operator_token" = [])),
    responses((status = 200, description = "Operator actions, newest first", body = PlatformAuditPage),
              (status = 400, description = "Invalid parameter", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such tenant", body = tenantplane_core::api::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    ApiQuery(p): ApiQuery<PlatformAuditParams>,
) -> ApiResult<Json<PlatformAuditPage>> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("/limit", "must be between 1 and 500"));
    }
    let entity = match &p.tenant {
        Some(r) => Some(format!(
            "Tenant/{}",
            control
                .index()
                .find(r)
                .map(|t| t.id)
                .ok_or_else(|| ApiError::not_found("tenant"))?
        )),
        None => None,
    };
    let before_seq = match &p.cursor {
        Some(c) => Some(
            cursor::open::<i64>(cursor::Scope::Platform, "platform-audit", c)
                .ok_or_else(|| ApiError::field("/cursor", "not a cursor of this listing"))?,
        ),
        None => None,
    };
    let q = PlatformAuditQuery {
        since_ms: ms("since", &p.since)?,
        until_ms: ms("until", &p.until)?,
        entity,
        agent: p.operator.as_ref().map(|o| format!("operator/{o}")),
        before_seq,
        limit: limit + 1,
    };
    let mut rows = control
        .catalog()
        .platform_audit(&q)
        .await
        .map_err(tenantplane_control::ControlError::from)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|r| cursor::seal(cursor::Scope::Platform, "platform-audit", &r.seq))
        })
        .flatten();
    let items = rows
        .into_iter()
        .map(|r| PlatformAuditEntry {
            seq: r.seq,
            recorded: r
                .entry
                .recorded()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            action: r.entry.action,
            code: r.entry.code,
            outcome: r.entry.outcome,
            agent: r.entry.agent,
            entity: r.entry.entity,
            peer: r.entry.peer,
            request_id: r.entry.request_id,
            detail: r.entry.detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect();
    Ok(Json(PlatformAuditPage { items, next_cursor }))
}

/// Walks a tenant's audit chain (after sealing what is pending) and reports the first
/// break.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/audit/verify", tag = "audit",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    security(("operator_token" = [])),
    responses((status = 200, description = "The verification (intact or the first break)", body = VerifyReport),
              (status = 404, description = "No such tenant", body = tenantplane_core::api::Problem, content_type = "application/problem+json")))]
pub async fn verify_tenant(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
    Path(t): Path<String>,
) -> ApiResult<Json<VerifyReport>> {
    let (t, v) = control.verify_audit(&t).await?;
    Ok(Json(VerifyReport {
        tenant: Some(t.slug.to_string()),
        intact: v.broken.is_none(),
        checked: v.checked,
        head_seq: v.head_seq,
        head_hash: v.head_hash,
        checkpoint_seq: v.checkpoint_seq,
        unsealed: v.unsealed,
        broken: v.broken.and_then(|b| serde_json::to_value(b).ok()),
    }))
}

/// Walks the platform audit chain and reports the first break.
#[utoipa::path(post, path = "/api/v1/audit/verify", tag = "audit",
    security(("operator_token" = [])),
    responses((status = 200, description = "The verification (intact or the first break)", body = VerifyReport)))]
pub async fn verify_platform(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
) -> ApiResult<Json<VerifyReport>> {
    let v = control.verify_platform_audit().await?;
    Ok(Json(VerifyReport {
        tenant: None,
        intact: v.broken.is_none(),
        checked: v.checked,
        head_seq: v.head_seq,
        head_hash: v.head_hash,
        checkpoint_seq: 0,
        unsealed: 0,
        broken: v.broken.and_then(|b| serde_json::to_value(b).ok()),
    }))
}
