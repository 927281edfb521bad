//! The routers: the platform's routes, the tenant routes behind the gate, the dispatcher
//! between them, and the middleware every request goes through (request id → trace span →
//! `Host` check → FHIR error form → timeout → body limit → per-address limit).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tenantplane_control::Control;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use super::{AppState, Server};
use crate::{
    api,
    config::Config,
    fhir_api, gate, identity_api,
    limits::Limits,
    openapi,
    platform_routes::{api_not_found, healthz, method_not_allowed, metrics_route, readyz},
    problem::ApiError,
    sso_api,
    state::GateState,
    surface::{Dispatch, Surface, check_host, scope_request_id},
    tenant_api,
};

impl Server {
    /// The router of a listener that serves every surface (tenants and the platform).
    pub fn router(&self) -> Router {
        self.router_for(Surface::All)
    }

    /// The router of a listener serving `surface`. Platform routes answer only on the
    /// platform's hosts (never on a tenant's), tenant routes only on tenant addresses;
    /// `/metrics` needs a bearer token unless it has its own listener.
    pub fn router_for(&self, surface: Surface) -> Router {
        let state = self.state.clone();
        let metrics_open = surface == Surface::Metrics;
        let metrics_here = match surface {
            Surface::Metrics => true,
            _ => self.config.server.metrics_listen.is_none(),
        };
        let mut platform = Router::new();
        if surface != Surface::Metrics {
            platform = platform
                .route("/healthz", get(healthz))
                .route("/readyz", get(readyz))
                .merge(api::router().layer(axum::middleware::from_fn_with_state(
                    state.control.clone(),
                    api::audit::record_actions,
                )))
                .merge(openapi::router())
                .route("/api/v1/{*rest}", axum::routing::any(api_not_found));
        } else {
            platform = platform.route("/healthz", get(healthz));
        }
        if metrics_here {
            platform = platform.route(
                "/metrics",
                get(
                    move |c: State<Arc<Control>>,
                          cfg: State<Arc<Config>>,
                          h: axum::http::HeaderMap| {
                        metrics_route(c, cfg, h, metrics_open)
                    },
                ),
            );
        }
        let tenant = tenant_service(&state);
        let platform = platform.method_not_allowed_fallback(method_not_allowed);
        // Paths the platform does not serve go to tenant resolution (which answers
        // `tenant-not-found` when the address names no tenant) on a listener that serves
        // tenants; a platform-only listener answers 404.
        let platform = if matches!(surface, Surface::All) {
            platform.fallback_service(tenant.clone())
        } else {
            platform.fallback(api_not_found)
        }
        .with_state(state.clone());
        let dispatch = Dispatch {
            index: state.control.index().clone(),
            platform: if surface == Surface::Tenants {
                None
            } else {
                Some(platform)
            },
            tenant: matches!(surface, Surface::All | Surface::Tenants),
            platform_hosts: self
                .config
                .server
                .platform_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        };
        let dispatch = Arc::new(dispatch);
        Router::new()
            .fallback_service(tower::service_fn(move |req: axum::extract::Request| {
                let d = dispatch.clone();
                let tenant = tenant.clone();
                async move { Ok::<_, std::convert::Infallible>(d.route(req, tenant).await) }
            }))
            .layer(axum::middleware::from_fn_with_state(
                self.state.limits.clone(),
                limit_per_ip,
            ))
            .layer(DefaultBodyLimit::max(self.config.server.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_secs(self.config.server.request_timeout_secs.max(1)),
                request_timeout,
            ))
            // Outside the limits and the timeout: their answers under /fhir are
            // OperationOutcomes too.
            .layer(axum::middleware::from_fn(crate::fhir_api::outcome_errors))
            .layer(axum::middleware::from_fn(check_host))
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let rid = req
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|r| r.header_value().to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(),
                        request_id = %rid, tenant_id = tracing::field::Empty,
                        user_id = tracing::field::Empty)
                }),
            )
            .layer(axum::middleware::from_fn(scope_request_id))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(axum::middleware::from_fn(crate::usage_meter::meter_cpu))
    }
}

async fn tenant_method_not_allowed(uri: axum::http::Uri) -> Response {
    let e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    );
    if fhir_api::is_fhir_path(uri.path()) {
        return fhir_api::FhirError::from(e).into_response();
    }
    e.into_response()
}

async fn tenant_route_not_found(uri: axum::http::Uri) -> Response {
    if fhir_api::is_fhir_path(uri.path()) {
        return fhir_api::FhirError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            "this interaction is not supported (see /fhir/metadata)",
        )
        .into_response();
    }
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found")
        .detail("no such route for this tenant")
        .into_response()
}

/// Routes served on a tenant's host, wrapped (outside the router, so that a stripped
/// `/t/{slug}` prefix is routed on the rewritten path) by the gate.
fn tenant_service(
    state: &AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let router = Router::new()
        .route("/api/tenant", get(tenant_api::profile))
        .route("/api/tenant/departments", get(tenant_api::departments))
        .route("/auth/login", post(identity_api::login))
        .route("/auth/refresh", post(identity_api::refresh))
        .route("/auth/logout", post(identity_api::logout))
        .route("/auth/password", post(identity_api::change_password))
        .route("/.well-known/jwks.json", get(identity_api::jwks))
        .route("/api/tenant/me", get(identity_api::me))
        .route("/api/tenant/roles", get(identity_api::roles))
        .route("/api/tenant/keys/rotate", post(identity_api::rotate_keys))
        .route(
            "/api/tenant/sso",
            get(sso_api::get_settings)
                .put(sso_api::put_settings)
                .delete(sso_api::delete_settings),
        )
        .route("/auth/sso/start", get(sso_api::start))
        .route("/fhir/metadata", get(fhir_api::metadata))
        .route(
            "/fhir/AuditEvent",
            get(fhir_api::audit_search).fallback(fhir_api::audit_write),
        )
        .route(
            "/fhir/AuditEvent/{id}",
            get(fhir_api::audit_read).fallback(fhir_api::audit_write),
        )
        .route(
            "/fhir/{type}",
            post(fhir_api::create)
                .get(fhir_api::search_get)
                .fallback(fhir_api::unknown),
        )
        .route("/fhir/{type}/_search", post(fhir_api::search_post))
        .route(
            "/fhir/{type}/{id}",
            get(fhir_api::read)
                .put(fhir_api::update)
                .delete(fhir_api::delete)
                .fallback(fhir_api::unknown),
        )
        .route("/fhir/{type}/{id}/_history", get(fhir_api::history))
        .route("/fhir/{type}/{id}/_history/{vid}", get(fhir_api::vread))
        .route(
            "/fhir",
            post(fhir_api::bundle)
                .layer(axum::extract::DefaultBodyLimit::max(
                    fhir_api::MAX_BUNDLE_BYTES,
                ))
                .fallback(fhir_api::unknown),
        )
        .route("/auth/sso/callback", get(sso_api::callback))
        .route(
            "/api/tenant/users",
            get(identity_api::list_users).post(identity_api::create_user),
        )
        .route(
            "/api/tenant/users/{id}",
            get(identity_api::get_user).patch(identity_api::update_user),
        )
        .route(
            "/api/tenant/users/{id}/revoke-sessions",
            post(identity_api::revoke_sessions),
        )
        .route(
            "/api/tenant/users/{id}/reset-password",
            post(identity_api::reset_password),
        )
        .method_not_allowed_fallback(tenant_method_not_allowed)
        .fallback(tenant_route_not_found)
        .with_state(state.clone());
    tower::Layer::layer(
        &axum::middleware::from_fn_with_state(GateState::from_ref(state), gate::resolve_tenant),
        router,
    )
}

/// Per-client-address rate limit on every route but health checks and metrics.
async fn limit_per_ip(
    State(limits): State<Arc<Limits>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics")
        || crate::usage_meter::is_probe(req.headers())
    {
        return next.run(req).await;
    }
    let Some(ip) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(req).await;
    };
    match limits.admit_ip(ip).await {
        None => next.run(req).await,
        Some(d) => match d.problem("too many requests from this address; slow down") {
            Some(p) => {
                metrics::counter!("tenantplane_rate_limited_total", "policy" => "ip").increment(1);
                p.into_response()
            }
            None => {
                let mut res = next.run(req).await;
                // The tenant limit (inner) reports its own state; the tighter one wins.
                if !res.headers().contains_key(&crate::limits::RATELIMIT) {
                    for (k, v) in d.headers() {
                        res.headers_mut().insert(k, v);
                    }
                }
                res
            }
        },
    }
}

/// Bounds every request's time; a request over the limit gets a 503 problem.
async fn request_timeout(
    State(limit): State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs(), "request timed out");
            ApiError::unavailable("the request took too long", 1).into_response()
        }
    }
}
