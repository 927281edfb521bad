//! The Tenantplane HTTP edge: HTTP and nothing else. The control plane, audit and metering
//! live in their own crates; this crate turns requests into their calls and their errors into
//! problem+json (or FHIR OperationOutcomes under `/fhir`).
//!
//! Layers, each using only those above it:
//! - [`config`], [`problem`] (the one mapping of every domain error to HTTP), [`extract`]
//!   (JSON, query and `If-Match` extractors), [`limits`] (per-address, per-tenant and login
//!   limits; Redis-shared in [`limits::redis`]), [`data`] (opening the tenant stores);
//! - [`state`]: the narrow per-surface views of the server's state;
//! - [`gate`]: tenant resolution — the only producer of a [`gate::TenantCtx`] — the tenant's
//!   rate limit and monthly quota, and the request meter (`usage_meter`: what each tenant
//!   request used, recorded when its response is sent);
//! - [`context`]: who is calling ([`context::OperatorCtx`], [`context::UserCtx`], one bearer
//!   parser);
//! - the surfaces: [`api`] (operator API `/api/v1`),
//!   [`tenant_api`], [`identity_api`] (auth and users), [`sso_api`], [`fhir_api`],
//!   [`platform_routes`] (health, readiness, metrics); [`surface`] keeps platform routes off
//!   tenant addresses; [`openapi`]: the document of every surface;
//! - [`app`]: the composition — the only module that knows every surface.
//!
//! Request path: request id → trace span → `Host` check → FHIR error form → timeout → body
//! limit → per-address limit → dispatch (platform routes on platform hosts; everything else
//! through the gate to the tenant routes).

pub mod api;
pub mod app;
pub mod audit_trail;
pub mod config;
pub mod context;
pub mod data;
pub mod extract;
pub mod fhir_api;
pub mod gate;
pub mod identity_api;
pub mod limits;
pub mod openapi;
pub mod platform_routes;
pub mod problem;
pub mod sso_api;
pub mod state;
pub mod surface;
pub mod tenant_api;
pub mod usage_meter;

pub use app::Server;
pub use config::Config;
