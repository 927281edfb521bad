//! Integration tests of the server over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod audit_log;
mod bad_input;
mod contract;
mod costs;
mod edge;
mod fhir;
mod fleet;
mod identity;
mod lifecycle;
mod monitoring;
mod openapi;
mod operators;
mod prometheus_scrape;
mod quotas;
mod resolution;
mod shared_limits;
mod sso;
mod standby;
mod tenant_data;
mod tenants;

use tenantplane_core::api::{CreateTenant, Problem};

/// A minimal valid creation request.
pub fn new_tenant(slug: &str) -> CreateTenant {
    CreateTenant {
        slug: slug.into(),
        display_name: format!("Hospital {slug}"),
        profile: Some(tenantplane_core::Profile::Hospital),
        ..Default::default()
    }
}

/// Sends a raw request and returns status, content type and parsed problem (if any).
pub async fn raw(rb: reqwest::RequestBuilder) -> (u16, String, Option<Problem>, serde_json::Value) {
    let res = rb.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.bytes().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let problem = serde_json::from_slice::<Problem>(&body).ok();
    (status, ct, problem, json)
}
