//! The control-plane API under `/api/v1` (operator bearer tokens) and its OpenAPI document.

pub mod contract;
pub mod docs;
pub mod operators;
pub mod placement;
pub mod plans;
pub mod tenants;

use std::sync::Arc;

use axum::extract::FromRef;
use tenantplane_control::Control;

use axum::{
    Json, Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tenantplane_core::{Tenant, api::TenantView};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::extract::etag;

/// The OpenAPI document of the control-plane API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tenantplane control-plane API",
        description = "Operate tenants, domains, plans and operators. Every error is an RFC 9457 \
                       problem+json document with a stable `type` (`urn:tenantplane:problem:<code>`).",
        license(name = "Apache-2.0")
    ),
    paths(
        tenants::create, tenants::list, tenants::get, tenants::update, tenants::lifecycle,
        tenants::delete, tenants::add_domain,
        tenants::remove_domain, plans::list, plans::update, operators::list, operators::create,
        operators::me, operators::reset_token, operators::disable, placement::list,
        placement::status, tenants::admin_reset, tenants::usage, tenants::fhir_import, crate::tenant_api::profile,
        crate::tenant_api::departments,
        crate::identity_api::login, crate::identity_api::refresh, crate::identity_api::logout,
        crate::identity_api::change_password, crate::identity_api::jwks,
        crate::identity_api::rotate_keys, crate::identity_api::me, crate::identity_api::roles,
        crate::identity_api::list_users, crate::identity_api::create_user,
        crate::identity_api::get_user, crate::identity_api::update_user,
        crate::identity_api::revoke_sessions, crate::identity_api::reset_password,
        crate::sso_api::get_settings, crate::sso_api::put_settings,
        crate::sso_api::delete_settings, crate::sso_api::start, crate::sso_api::callback
    ),
    components(schemas(tenantplane_core::api::Problem, tenants::LifecycleAction)),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenant lifecycle, domains and branding"),
        (name = "plans", description = "Plans and quotas"),
        (name = "operators", description = "Platform operator accounts"),
        (name = "placement", description = "Where tenant data lives and its schema versions"),
        (name = "tenant", description = "Served on a tenant's own host"),
        (name = "auth", description = "Tenant user authentication, on the tenant's host"),
        (name = "users", description = "Tenant users and roles, on the tenant's host"),
        (name = "sso", description = "Per-tenant single sign-on with the tenant's OpenID Connect provider")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The generated OpenAPI document (3.1), completed by [`contract::complete`] with the
/// servers of tenant-host operations and the error answers every operation can give.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    contract::complete(&mut doc);
    doc
}

/// Routes of `/api/v1`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Control>: FromRef<S>,
    Arc<crate::config::Config>: FromRef<S>,
{
    Router::new()
        .route("/api/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/api/v1/tenants/{tenant}",
            get(tenants::get)
                .patch(tenants::update)
                .delete(tenants::delete),
        )
        .route("/api/v1/tenants/{tenant}/admin", post(tenants::admin_reset))
        .route("/api/v1/tenants/{tenant}/usage", get(tenants::usage))
        .route(
            "/api/v1/tenants/{tenant}/fhir",
            post(tenants::fhir_import).layer(axum::extract::DefaultBodyLimit::max(
                crate::fhir_api::MAX_BUNDLE_BYTES,
            )),
        )
        .route(
            "/api/v1/tenants/{tenant}/{action}",
            post(tenants::lifecycle),
        )
        .route(
            "/api/v1/tenants/{tenant}/domains",
            post(tenants::add_domain),
        )
        .route(
            "/api/v1/tenants/{tenant}/domains/{domain}",
            axum::routing::delete(tenants::remove_domain),
        )
        .route("/api/v1/placement", get(placement::list))
        .route("/api/v1/migrations", get(placement::status))
        .route("/api/v1/plans", get(plans::list))
        .route("/api/v1/plans/{plan}", axum::routing::patch(plans::update))
        .route(
            "/api/v1/operators",
            get(operators::list).post(operators::create),
        )
        .route("/api/v1/operators/me", get(operators::me))
        .route(
            "/api/v1/operators/{operator}/reset-token",
            post(operators::reset_token),
        )
        .route(
            "/api/v1/operators/{operator}/disable",
            post(operators::disable),
        )
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/docs", get(docs::page))
}

async fn openapi_json() -> Response {
    let body = openapi().to_pretty_json().unwrap_or_default();
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A tenant as a JSON response with its `ETag`.
pub fn tenant_response(control: &Control, status: StatusCode, t: &Tenant) -> Response {
    let view = TenantView::from_tenant(t, control.base_domain());
    let mut r = (status, Json(view)).into_response();
    r.headers_mut().insert(header::ETAG, etag(t.version));
    r
}
