//! What a listener serves and which requests reach it: the surfaces (tenants, platform,
//! metrics), the dispatch that keeps platform routes off tenant addresses, the `Host`
//! check of RFC 9112 §3.2 and the request id's task-local scope.

use std::sync::Arc;

use axum::{
    Router,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tower_http::request_id::RequestId;

use tenantplane_control::TenantIndex;

use crate::{gate, platform_routes::api_not_found, problem::ApiError};

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Tenants and (on platform hosts) the platform routes: the default single listener.
    All,
    /// Tenant routes only (`server.listen` when `server.platform_listen` is set).
    Tenants,
    /// Platform routes only (`server.platform_listen`).
    Platform,
    /// `/metrics` (unauthenticated) and `/healthz` only (`server.metrics_listen`).
    Metrics,
}

/// Sends each request to the tenant routes or the platform routes by what its address
/// names: a tenant (custom domain, `{slug}.{base_domain}`, trusted `X-Tenant-Id`,
/// `/t/{slug}/`) never reaches a platform route.
pub(crate) struct Dispatch {
    pub(crate) index: Arc<TenantIndex>,
    pub(crate) platform: Option<Router>,
    pub(crate) tenant: bool,
    pub(crate) platform_hosts: Vec<String>,
}

impl Dispatch {
    pub(crate) async fn route<T>(&self, req: axum::extract::Request, tenant: T) -> Response
    where
        T: tower::Service<
                axum::extract::Request,
                Response = Response,
                Error = std::convert::Infallible,
            >,
    {
        use tower::ServiceExt as _;
        let (res, untrusted) = self.index.resolve(gate::request_facts(&req));
        let names_tenant = !matches!(res, tenantplane_control::index::Resolution::NoTenant);
        let host = request_host(&req);
        let mut req = req;
        req.extensions_mut().insert(gate::Resolved(res, untrusted));
        let platform_host = self.platform_hosts.is_empty()
            || host.as_deref().is_some_and(|h| {
                let bare = strip_port(h);
                self.platform_hosts.iter().any(|p| p == bare)
            });
        match (&self.platform, names_tenant) {
            (Some(p), false) if platform_host => match p.clone().oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            },
            _ if self.tenant => match tenant.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            },
            _ => api_not_found().await.into_response(),
        }
    }
}

/// The request's host: the `Host` header, else the URI's authority (HTTP/2), lowercase.
pub fn request_host(req: &axum::extract::Request) -> Option<String> {
    req.headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(str::to_ascii_lowercase)
}

/// `host` without a `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    host.split_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// RFC 9112 §3.2: a request with no `Host` (HTTP/1.1), more than one, or one that is not a
/// host is refused with 400 — a front proxy reading another line would attribute it to
/// another tenant.
pub(crate) async fn check_host(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{Version, header::HOST};
    let mut hosts = req.headers().get_all(HOST).iter();
    let first = hosts.next();
    let bad = if hosts.next().is_some() {
        Some("the request has more than one Host header")
    } else {
        match first {
            None if req.version() == Version::HTTP_11 && req.uri().authority().is_none() => {
                Some("HTTP/1.1 requests need a Host header")
            }
            None => None,
            Some(h) => match h.to_str() {
                Ok(v) if valid_host(v) => match req.uri().authority() {
                    Some(a) if !a.as_str().eq_ignore_ascii_case(v) => {
                        Some("the Host header differs from the request target's authority")
                    }
                    _ => None,
                },
                _ => Some("the Host header is not a host[:port]"),
            },
        }
    };
    match bad {
        None => next.run(req).await,
        Some(why) => {
            metrics::counter!("tenantplane_bad_host_total").increment(1);
            let e =
                ApiError::new(StatusCode::BAD_REQUEST, "bad-host", "Bad Host header").detail(why);
            if crate::fhir_api::is_fhir_path(req.uri().path()) {
                crate::fhir_api::FhirError::from(e).into_response()
            } else {
                e.into_response()
            }
        }
    }
}

/// `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(v: &str) -> bool {
    if v.is_empty() || v.len() > 261 {
        return false;
    }
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, tail.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match v.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(v), None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return false;
    }
    // A fully qualified name may end with a dot (`example.org.`).
    host.map(|h| h.strip_suffix('.').unwrap_or(h))
        .is_none_or(|h| {
            !h.is_empty()
                && h.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        })
}

/// Runs the request with its id in scope, so errors logged deep inside can answer with it.
pub(crate) async fn scope_request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let id: Arc<str> = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or("")
        .into();
    crate::problem::with_request_id(id, next.run(req)).await
}
