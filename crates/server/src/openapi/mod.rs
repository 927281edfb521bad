//! The OpenAPI document of every surface — the operator API and the tenant-host API
//! (profile, auth, users, SSO) — completed by [`contract`] with the servers of tenant-host
//! operations and the error answers each operation can give, served at
//! `/api/v1/openapi.json` with a docs page at `/api/v1/docs`.

pub mod contract;
pub mod docs;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::api;

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
        api::tenants::create, api::tenants::list, api::tenants::get, api::tenants::update,
        api::tenants::lifecycle, api::tenants::delete, api::tenants::add_domain,
        api::tenants::remove_domain, api::plans::list, api::plans::update,
        api::operators::list, api::operators::create, api::operators::me,
        api::operators::reset_token, api::operators::disable, api::placement::list,
        api::placement::status, api::tenants::admin_reset, api::tenants::usage, api::tenants::health,
        api::tenants::fhir_import, api::usage::report, api::costs::report,
        api::costs::get_prices, api::costs::change_prices, api::statements::statement, api::costs::recommendations,
        api::budgets::create, api::budgets::list, api::budgets::delete, api::budgets::alerts,
        api::budgets::deliveries, api::audit::list, api::audit::verify_tenant,
        api::audit::verify_platform, crate::tenant_api::profile,
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
    components(schemas(tenantplane_core::api::Problem, api::tenants::LifecycleAction)),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenant lifecycle, domains and branding"),
        (name = "plans", description = "Plans and quotas"),
        (name = "operators", description = "Platform operator accounts"),
        (name = "placement", description = "Where tenant data lives and its schema versions"),
        (name = "costs", description = "Usage, prices and per-tenant costs"),
        (name = "audit", description = "The platform audit log and the verification of audit chains"),
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

/// `/api/v1/openapi.json` and `/api/v1/docs` (no state, no token).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
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
