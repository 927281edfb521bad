//! The tenant's own API: its public profile and its department directory.

use axum::{Json, extract::State};
use tenantplane_core::api::{DepartmentList, DepartmentView, PublicTenant};
use tenantplane_tenant_data::directory;

use crate::{
    gate::TenantCtx,
    problem::ApiError,
    state::{BaseDomain, TenantSide},
};

/// `GET /api/tenant`: the tenant's public profile and branding.
#[utoipa::path(get, path = "/api/tenant", tag = "tenant",
    responses(
        (status = 200, description = "Public profile", body = PublicTenant),
        (status = 403, description = "Tenant suspended", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 410, description = "Tenant deleted", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn profile(State(base): State<BaseDomain>, ctx: TenantCtx) -> Json<PublicTenant> {
    let t = ctx.tenant();
    let mut branding = t.branding.clone();
    if branding.display_name.is_none() {
        branding.display_name = Some(t.display_name.clone());
    }
    Json(PublicTenant {
        id: t.id,
        slug: t.slug.clone(),
        display_name: t.display_name.clone(),
        profile: t.profile,
        branding,
        domains: t.domains(&base.0),
    })
}

/// `GET /api/tenant/departments`: the tenant's departments (public directory), read from the
/// tenant's own store.
#[utoipa::path(get, path = "/api/tenant/departments", tag = "tenant",
    responses(
        (status = 200, description = "Departments by name", body = DepartmentList),
        (status = 404, description = "No such tenant", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Tenant store busy, unreachable or being upgraded (see Retry-After)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn departments(
    State(s): State<TenantSide>,
    ctx: TenantCtx,
) -> Result<Json<DepartmentList>, ApiError> {
    let items = directory::list(ctx.db(&s.data)?).await?;
    Ok(Json(DepartmentList {
        items: items
            .into_iter()
            .map(|d| DepartmentView {
                id: d.id,
                name: d.name,
            })
            .collect(),
    }))
}
