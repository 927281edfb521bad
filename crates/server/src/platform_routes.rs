//! The platform's own routes besides `/api/v1`: health, readiness, Prometheus metrics
//! (token-protected unless on their own listener) and the platform's 404/405 answers.

use std::sync::{Arc, OnceLock};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tenantplane_core::api::Health;

use tenantplane_control::Control;

use crate::{config::Config, problem::ApiError};

pub(crate) fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latency as classic histograms (buckets Grafana and recording rules can use).
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                    &tenantplane_metering::red::LATENCY_BUCKETS,
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .clone()
}

pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        catalog: None,
        tenants_indexed: None,
    })
}

pub(crate) async fn readyz(State(control): State<Arc<Control>>) -> Response {
    let ok = control.catalog().ping().await.is_ok();
    let body = Health {
        status: if ok { "ok" } else { "unavailable" }.into(),
        catalog: Some(control.catalog().backend().into()),
        tenants_indexed: Some(control.index().len() as u64),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `/metrics`: on its own listener as is; elsewhere with `Authorization: Bearer` holding
/// `server.metrics_token` or an operator token (its series name tenants under attack).
pub(crate) async fn metrics_route(
    State(control): State<Arc<Control>>,
    State(config): State<Arc<Config>>,
    headers: HeaderMap,
    open: bool,
) -> Response {
    if !open {
        let Some(token) =
            crate::context::bearer_token(&headers, tenantplane_control::tokens::MAX_TOKEN_LEN)
        else {
            return ApiError::unauthorized(
                "send the metrics token or an operator token as 'Authorization: Bearer <token>'",
            )
            .into_response();
        };
        let by_metrics_token = config.server.metrics_token.as_deref().is_some_and(|m| {
            use sha2::Digest as _;
            // Compare digests in constant time (equal length whatever was sent).
            let a = sha2::Sha256::digest(m.as_bytes());
            let b = sha2::Sha256::digest(token.as_bytes());
            bool::from(subtle::ConstantTimeEq::ct_eq(a.as_slice(), b.as_slice()))
        });
        if !by_metrics_token {
            let hash = tenantplane_control::tokens::hash_token(token);
            match control
                .operator_cache()
                .lookup(control.catalog(), &hash)
                .await
            {
                Ok(Some(op)) if !op.disabled && op.role.can_read() => {}
                Ok(_) => {
                    metrics::counter!("tenantplane_operator_auth_failures_total").increment(1);
                    return ApiError::unauthorized("invalid metrics or operator token")
                        .into_response();
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    }
    match metrics_handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            if open {
                without_attacked_tenants(&h.render())
            } else {
                h.render()
            },
        )
            .into_response(),
        None => ApiError::unavailable("metrics recorder not installed", 60).into_response(),
    }
}

/// The series naming which tenant was attacked: only on the token-protected `/metrics`.
const ATTACKED: &str = "tenantplane_cross_tenant_attempts_total";

/// The exposition without the attacked-tenant series (the open listener keeps the counts by
/// kind in `tenantplane_security_events_total`).
fn without_attacked_tenants(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if name.starts_with(ATTACKED) && name[ATTACKED.len()..].starts_with(['{', ' ']) {
            continue;
        }
        out.push_str(line);
    }
    out
}

pub(crate) async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no such API route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
}

/// Installs the metrics recorder (idempotent). Call once at start.
pub fn install_metrics() -> bool {
    metrics_handle().is_some()
}

#[cfg(test)]
mod tests {
    use super::without_attacked_tenants;

    #[test]
    fn the_open_exposition_names_no_attacked_tenant() {
        let text = "# TYPE tenantplane_cross_tenant_attempts_total counter\n\
            tenantplane_cross_tenant_attempts_total{tenant=\"a\",kind=\"foreign-token\"} 3\n\
            tenantplane_cross_tenant_attempts_total_other 1\n\
            tenantplane_security_events_total{kind=\"foreign-token\"} 3\n";
        assert_eq!(
            without_attacked_tenants(text),
            "tenantplane_cross_tenant_attempts_total_other 1\n\
             tenantplane_security_events_total{kind=\"foreign-token\"} 3\n"
        );
    }
}
