//! The control-plane API under `/api/v1`: operator routes (operator bearer tokens). Its
//! OpenAPI document, with every other surface's, is in [`crate::openapi`].

pub mod audit;
pub mod budgets;
pub mod costs;
pub mod operators;
pub mod placement;
pub mod plans;
pub mod statements;
pub mod tenants;
pub mod usage;

use std::sync::Arc;

use axum::extract::FromRef;
use tenantplane_control::Control;

use axum::{
    Json, Router,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tenantplane_core::{Tenant, api::TenantView};

use crate::extract::etag;

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
        .route("/api/v1/tenants/{tenant}/health", get(tenants::health))
        .route(
            "/api/v1/tenants/{tenant}/statement",
            get(statements::statement),
        )
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
        .route("/api/v1/usage/events", post(usage::report))
        .route("/api/v1/costs", get(costs::report))
        .route("/api/v1/recommendations", get(costs::recommendations))
        .route("/api/v1/budgets", post(budgets::create).get(budgets::list))
        .route(
            "/api/v1/budgets/{budget}",
            axum::routing::delete(budgets::delete),
        )
        .route("/api/v1/alerts", get(budgets::alerts))
        .route(
            "/api/v1/alerts/{alert}/deliveries",
            get(budgets::deliveries),
        )
        .route(
            "/api/v1/prices",
            get(costs::get_prices).post(costs::change_prices),
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
        .route(
            "/api/v1/tenants/{tenant}/audit/verify",
            post(audit::verify_tenant),
        )
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/audit/verify", post(audit::verify_platform))
}

/// A tenant as a JSON response with its `ETag`.
pub fn tenant_response(control: &Control, status: StatusCode, t: &Tenant) -> Response {
    let view = TenantView::from_tenant(t, control.base_domain());
    let mut r = (status, Json(view)).into_response();
    r.headers_mut().insert(header::ETAG, etag(t.version));
    r
}
