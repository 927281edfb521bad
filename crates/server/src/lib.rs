//! The Tenantplane HTTP edge: configuration, tenant resolution, the control-plane API with
//! problem+json errors and its OpenAPI document, and the server composition.
//!
//! Request path: request id → trace span → timeout → body limit → router. Platform routes
//! (`/healthz`, `/readyz`, `/metrics`, `/api/v1/…`) are matched first; everything else is a
//! tenant route and goes through [`tenant_api::resolve_tenant`], which is the only producer
//! of a [`tenant_api::TenantCtx`].

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod data;
pub mod extract;
pub mod fhir_api;
pub mod identity_api;
pub mod limits;
pub mod platform_routes;
pub mod problem;
pub mod shared_limits;
pub mod sso_api;
pub mod surface;
pub mod tenant_api;

pub use app::{AppState, Server};
pub use config::Config;
