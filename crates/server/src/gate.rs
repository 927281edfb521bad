//! The gate of tenant requests: resolves the tenant of a request (host, path prefix or a
//! trusted proxy's header), refuses tenants that are not servable, applies the tenant's rate
//! limit and monthly request quota, and strips a `/t/{slug}` prefix.
//!
//! [`resolve_tenant`] is the only place a [`TenantCtx`] is created; handlers of tenant routes
//! take a `TenantCtx` and so cannot run without a resolved, servable tenant.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderName, StatusCode, Uri, header, request::Parts, uri::PathAndQuery},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tenantplane_control::index::{RequestFacts, Resolution};
use tenantplane_core::{Tenant, TenantStatus};
use tenantplane_tenant_data::{TenantData, TenantDb};

use crate::{problem::ApiError, state::GateState, usage_meter::Metered};

/// Header a trusted proxy uses to name the tenant.
pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// The resolved tenant of a request. Only [`resolve_tenant`] creates one.
#[derive(Debug, Clone)]
pub struct TenantCtx {
    tenant: Arc<Tenant>,
    base: Arc<str>,
}

impl TenantCtx {
    /// The tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The absolute URL of `path` (`/fhir/Patient/1`) at the tenant's canonical address:
    /// built from the tenant's record and the platform's configuration — the tenant's
    /// custom domain or `{slug}.{base_domain}`, or `{public_url}/t/{slug}` for path-prefix
    /// requests — never from the client's `Host`; `X-Forwarded-Proto` only from a trusted
    /// proxy.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The tenant's database handle — the only way a tenant route reaches tenant data.
    /// Busy, unreachable or not-yet-migrated stores answer 503 with `Retry-After`.
    pub fn db<'a>(&'a self, data: &'a TenantData) -> Result<TenantDb<'a>, ApiError> {
        Ok(data.handle(&self.tenant)?)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<TenantCtx>()
            .cloned()
            .ok_or_else(|| ApiError::internal(&"tenant route reached without a resolved tenant"))
    }
}

pub(crate) fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "tenant-not-found",
        "Tenant not found",
    )
    .detail("no tenant is served at this address; use the tenant's domain or /t/{slug}/")
}

/// The tenant's canonical base URL for this request (see [`TenantCtx::url`]).
fn canonical_base(
    state: &GateState,
    t: &Tenant,
    via: tenantplane_control::index::Via,
    host: Option<&str>,
    forwarded_proto: Option<&'static str>,
) -> String {
    use tenantplane_control::index::Via;
    let public = state.links.public();
    let scheme = forwarded_proto.unwrap_or(public.scheme);
    // A proxy that changed the scheme serves the default port of that scheme.
    let port = if scheme == public.scheme {
        public.port_suffix()
    } else {
        String::new()
    };
    let base_domain = &*state.base_domain.0;
    match via {
        // The Host named one of this tenant's own domains exactly (the index matched it).
        Via::CustomDomain => {
            match host.filter(|h| t.custom_domains.iter().any(|d| d.as_str() == *h)) {
                Some(h) => format!("{scheme}://{h}{port}"),
                None => format!("{scheme}://{}.{base_domain}{port}", t.slug),
            }
        }
        Via::Subdomain => format!("{scheme}://{}.{base_domain}{port}", t.slug),
        Via::Header => match t.custom_domains.first() {
            Some(d) => format!("{scheme}://{d}{port}"),
            None => format!("{scheme}://{}.{base_domain}{port}", t.slug),
        },
        Via::PathPrefix => format!("{scheme}://{}{port}/t/{}", public.host, t.slug),
    }
}

/// What a request tells about its tenant: `Host` (or the HTTP/2 authority), `X-Tenant-Id`,
/// the peer address and the path.
pub(crate) fn request_facts(req: &Request) -> RequestFacts<'_> {
    RequestFacts {
        host: req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str())),
        tenant_header: req
            .headers()
            .get(&X_TENANT_ID)
            .and_then(|h| h.to_str().ok()),
        peer: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        path: req.uri().path(),
    }
}

/// A request's resolution, computed by the dispatcher and handed to [`resolve_tenant`]
/// (request extension), so the index is consulted once per request.
#[derive(Debug, Clone)]
pub(crate) struct Resolved(pub(crate) Resolution, pub(crate) bool);

/// Whether a tenant in `status` is served, and the problem otherwise.
pub fn servable(status: TenantStatus) -> Result<(), ApiError> {
    match status {
        TenantStatus::Active => Ok(()),
        TenantStatus::Suspended => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant-suspended",
            "Tenant suspended",
        )
        .detail("this tenant is suspended; contact the platform operator")),
        TenantStatus::Deleting | TenantStatus::Deleted => {
            Err(
                ApiError::new(StatusCode::GONE, "tenant-gone", "Tenant deleted")
                    .detail("this tenant has been deleted"),
            )
        }
        TenantStatus::Provisioning => {
            Err(ApiError::unavailable("this tenant is being provisioned", 5))
        }
        TenantStatus::Failed => Err(ApiError::unavailable("this tenant is unavailable", 60)),
    }
}

/// Middleware: resolves the tenant, refuses unservable ones, strips a `/t/{slug}` prefix.
pub async fn resolve_tenant(
    State(state): State<GateState>,
    mut req: Request,
    next: Next,
) -> Response {
    // Resolved once per request: by the dispatcher when it ran, else here.
    let resolved = req.extensions_mut().remove::<Resolved>();
    let facts = request_facts(&req);
    let (peer, host) = (facts.peer, facts.host);
    let (res, untrusted) = match resolved {
        Some(Resolved(res, untrusted)) => (res, untrusted),
        None => state.index.resolve(facts),
    };
    let host_name = host.and_then(tenantplane_core::DomainName::from_host_header);
    if untrusted {
        metrics::counter!("tenantplane_untrusted_tenant_header_total").increment(1);
        tracing::warn!(peer = ?peer, "ignored X-Tenant-Id from an untrusted address");
        let mut ev =
            tenantplane_audit::SecurityEvent::new(tenantplane_audit::EventKind::SpoofedHeader);
        ev.tenant_id = match &res {
            Resolution::Found { tenant, .. } => Some(tenant.id),
            _ => None,
        };
        ev.claimed_tenant = facts.tenant_header.map(|h| h.chars().take(64).collect());
        ev.peer = peer;
        ev.request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        state.audit.security(ev);
    }
    let (tenant, via, strip) = match res {
        Resolution::Found { tenant, via, strip } => (tenant, via, strip),
        Resolution::Unknown(via) => {
            metrics::counter!("tenantplane_tenant_resolution_total", "outcome" => "unknown", "via" => via.as_str()).increment(1);
            return not_found().into_response();
        }
        Resolution::NoTenant => {
            metrics::counter!("tenantplane_tenant_resolution_total", "outcome" => "none", "via" => "none").increment(1);
            return not_found().into_response();
        }
    };
    metrics::counter!("tenantplane_tenant_resolution_total", "outcome" => "found", "via" => via.as_str()).increment(1);
    if let Err(e) = servable(tenant.status) {
        return e.into_response();
    }
    // The uptime probe's own requests go through resolution and to the store, but are not
    // the tenant's: no limit, no quota, no usage.
    let probe = crate::usage_meter::is_probe(req.headers());
    let quotas = if probe {
        None
    } else {
        state.plans.get(&tenant.plan)
    };
    let decision = match &quotas {
        Some(q) => {
            state
                .limits
                .admit_tenant(tenant.id, q.requests_per_minute)
                .await
        }
        None => None,
    };
    if let Some(d) = &decision
        && let Some(p) = d.problem("this tenant's plan allows no more requests right now")
    {
        metrics::counter!("tenantplane_rate_limited_total", "policy" => "tenant",
            "tenant" => tenant.slug.to_string())
        .increment(1);
        return p.into_response();
    }
    if let Some(q) = &quotas
        && let Err(over) = state.meter.admit(tenant.id, q.requests_per_month)
    {
        metrics::counter!("tenantplane_quota_refusals_total", "quota" => "requests_per_month")
            .increment(1);
        return ApiError::quota_exceeded("requests_per_month", over.limit, over.current)
            .into_response();
    }
    if strip > 0 {
        let path = req.uri().path();
        let rest = path.get(strip..).filter(|r| !r.is_empty()).unwrap_or("/");
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = PathAndQuery::try_from(pq).ok();
        match Uri::from_parts(parts) {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return not_found().into_response(),
        }
    }
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant.id));
    let forwarded_proto = if state.index.is_trusted(peer) {
        req.headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|p| match p.trim() {
                "https" => Some("https"),
                "http" => Some("http"),
                _ => None,
            })
    } else {
        None
    };
    let base = canonical_base(&state, &tenant, via, host_name.as_deref(), forwarded_proto);
    let tenant_id = tenant.id;
    let labels: (Arc<str>, Arc<str>) = (tenant.slug.as_str().into(), tenant.plan.as_str().into());
    req.extensions_mut().insert(TenantCtx {
        tenant,
        base: base.into(),
    });
    // The request's CPU time, its blocking work included, is the tenant's; so are its
    // bytes and its wall time, recorded when the response has been sent.
    // Under `usage_meter::meter_cpu` the whole stack is already metered into the request's
    // charge; without it (a router built without that layer) the gate meters from here.
    if probe {
        return next.run(req).await;
    }
    let outer = req.extensions().get::<tenantplane_cpu::Charge>().cloned();
    let charge = outer.clone().unwrap_or_default();
    let metered = Metered::start(
        state.meter.clone(),
        tenant_id,
        (labels.0, labels.1),
        charge.clone(),
        &mut req,
    );
    let mut res = match outer {
        Some(_) => next.run(req).await,
        None => tenantplane_cpu::metered(charge, next.run(req)).await,
    };
    if let Some(d) = decision {
        for (k, v) in d.headers() {
            res.headers_mut().insert(k, v);
        }
    }
    metered.finish(res)
}
