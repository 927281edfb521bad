//! Per-tenant single sign-on over HTTP, on the tenant's host.
//!
//! - `GET|PUT|DELETE /api/tenant/sso`: the tenant's OpenID Connect provider, for holders of
//!   `identity:manage` (the client secret is write-only);
//! - `GET /auth/sso/start`: redirects the browser to the provider, with the flow's state
//!   sealed in an `HttpOnly` cookie scoped to `/auth/sso`;
//! - `GET /auth/sso/callback`: the provider's redirect back; validates everything and
//!   answers with the same tokens as a password login.
//!
//! An ID token made for another client or issuer is a 401 like any invalid one, and is
//! recorded as a cross-tenant attempt (`foreign-id-token`).

use std::net::SocketAddr;

use axum::{
    Json,
    extract::{ConnectInfo, OriginalUri, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use tenantplane_core::{
    Permission,
    sso::{SsoSettingsInput, SsoSettingsView},
};
use tenantplane_identity::{IdentityError, sso};

use std::sync::Arc;

use crate::{
    context::UserCtx,
    extract::{ApiJson, ApiQuery, IfMatch, etag},
    gate::TenantCtx,
    identity_api::{no_store, token_response},
    limits::Limits,
    problem::{ApiError, ApiResult},
    state::TenantSide,
};
use tenantplane_audit::{EventKind, SecurityEvent};

fn settings_response(v: &SsoSettingsView) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut().insert(header::ETAG, etag(v.version));
    r
}

/// `GET /api/tenant/sso`: the tenant's identity provider settings (never the secret).
#[utoipa::path(get, path = "/api/tenant/sso", tag = "sso", security(("user_token" = [])),
    responses(
        (status = 200, description = "The settings", body = SsoSettingsView),
        (status = 404, description = "Not configured (sso-not-configured)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_settings(State(s): State<TenantSide>, u: UserCtx) -> ApiResult<Response> {
    u.require(Permission::IdentityManage)?;
    let v = s
        .identity
        .sso_settings(u.tenant.db(&s.data)?)
        .await?
        .ok_or(IdentityError::Sso(sso::SsoError::NotConfigured))?;
    Ok(settings_response(&v))
}

/// `PUT /api/tenant/sso`: creates or replaces the settings (`If-Match` optional).
#[utoipa::path(put, path = "/api/tenant/sso", tag = "sso", request_body = SsoSettingsInput,
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Saved", body = SsoSettingsView),
        (status = 400, description = "Invalid settings", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since read", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_settings(
    State(s): State<TenantSide>,
    u: UserCtx,
    IfMatch(if_match): IfMatch,
    ApiJson(req): ApiJson<SsoSettingsInput>,
) -> ApiResult<Response> {
    u.require(Permission::IdentityManage)?;
    let settings = req.validate(s.identity.config().sso_allow_http);
    let tenant = u.tenant.tenant().id;
    let db = u.tenant.db(&s.data)?;
    let known = s.identity.roles(tenant, db).await?;
    let mut errs = match &settings {
        Ok(_) => tenantplane_core::ValidationErrors::new(),
        Err(e) => e.clone(),
    };
    if let Ok(st) = &settings {
        let unknown = st
            .role_map
            .values()
            .flatten()
            .chain(st.default_roles.iter())
            .filter(|r| !known.iter().any(|k| &k.name == *r))
            .map(|r| r.to_string())
            .collect::<std::collections::BTreeSet<_>>();
        for r in unknown {
            errs.push("/role_map", format!("no role named '{r}' in this tenant"));
        }
    }
    errs.into_result()?;
    let Ok(settings) = settings else {
        return Err(ApiError::internal(&"validated settings missing"));
    };
    let v = s
        .identity
        .put_sso(tenant, db, settings, req.client_secret, if_match)
        .await?;
    crate::audit_trail::admin(&s.audit, &u, "sso-update", "U", "SSO".into(), None);
    Ok(settings_response(&v))
}

/// `DELETE /api/tenant/sso`: removes the provider and the links to its accounts.
#[utoipa::path(delete, path = "/api/tenant/sso", tag = "sso", security(("user_token" = [])),
    responses((status = 204, description = "Removed (or was not configured)")))]
pub async fn delete_settings(State(s): State<TenantSide>, u: UserCtx) -> ApiResult<StatusCode> {
    u.require(Permission::IdentityManage)?;
    s.identity.delete_sso(u.tenant.db(&s.data)?).await?;
    tracing::info!(user_id = %u.claims.sub, "tenant single sign-on removed");
    crate::audit_trail::admin(&s.audit, &u, "sso-delete", "D", "SSO".into(), None);
    Ok(StatusCode::NO_CONTENT)
}

/// The flow cookie, scoped to the SSO routes as the client addressed them (`/auth/sso` on
/// a tenant's host, `/t/{slug}/auth/sso` in path-prefix mode).
fn cookie_header(uri: &axum::http::Uri, value: &str, max_age: i64) -> Option<HeaderValue> {
    let path = uri.path();
    let scope = path
        .rfind("/auth/sso/")
        .map(|i| &path[..i + "/auth/sso".len()])
        .unwrap_or("/auth/sso");
    HeaderValue::from_str(&format!(
        "{}={value}; Path={scope}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax",
        sso::COOKIE
    ))
    .ok()
}

fn read_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == sso::COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `GET /auth/sso/start`: redirects to the tenant's identity provider.
#[utoipa::path(get, path = "/auth/sso/start", tag = "sso",
    responses(
        (status = 302, description = "To the provider's authorization endpoint; sets the flow cookie"),
        (status = 404, description = "Not configured (sso-not-configured)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider is unreachable (sso-provider-error)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn start(
    State(s): State<TenantSide>,
    State(limits): State<Arc<Limits>>,
    ctx: TenantCtx,
    conn: ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    limits
        .admit_sign_in(conn.0.ip(), "too many sign-in attempts from this address")
        .await?;
    let tenant = ctx.tenant().id;
    let started = s.identity.sso_start(tenant, ctx.db(&s.data)?).await?;
    let mut r = StatusCode::FOUND.into_response();
    let location = HeaderValue::from_str(&started.location)
        .map_err(|_| ApiError::internal(&"authorization URL is not a header value"))?;
    r.headers_mut().insert(header::LOCATION, location);
    if let Some(c) = cookie_header(&uri, &started.cookie, sso::FLOW_TTL_SECS) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(no_store(r))
}

/// The provider's redirect back.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The state of the flow.
    #[serde(default)]
    pub state: Option<String>,
    /// An OAuth error code instead of a code (e.g. `access_denied`).
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET /auth/sso/callback`: completes the sign-in and answers with tokens.
#[utoipa::path(get, path = "/auth/sso/callback", tag = "sso", params(Callback),
    responses(
        (status = 200, description = "Signed in", body = tenantplane_core::identity::TokenResponse),
        (status = 400, description = "Unknown or expired flow (sso-invalid-state)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The provider refused, or its ID token did not validate (sso-denied, sso-rejected)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No account, no role, or disabled (sso-no-account, sso-no-role, account-disabled)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed (sso-provider-error)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn callback(
    State(s): State<TenantSide>,
    State(limits): State<Arc<Limits>>,
    ctx: TenantCtx,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    origin: crate::audit_trail::Origin,
    ApiQuery(q): ApiQuery<Callback>,
) -> ApiResult<Response> {
    // Always known when served (the listener records it); never trusted from a header.
    let ip = origin
        .peer
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    limits
        .admit_sign_in(ip, "too many sign-in attempts from this address")
        .await?;
    let tenant = ctx.tenant();
    if q.error.is_some() {
        return Err(sso::SsoError::Denied.into());
    }
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return Err(sso::SsoError::InvalidState.into());
    };
    let max_users = s
        .plans
        .get(&tenant.plan)
        .map(|q| q.max_users)
        .unwrap_or(u64::MAX);
    let cookie = read_cookie(&headers);
    let out = s
        .identity
        .sso_finish(
            tenant,
            ctx.db(&s.data)?,
            cookie.as_deref(),
            state,
            code,
            max_users,
        )
        .await;
    let outcome = match &out {
        Ok(_) => "ok",
        Err(_) => "failed",
    };
    metrics::counter!("tenantplane_sso_logins_total", "outcome" => outcome).increment(1);
    let agent = match &out {
        Ok(t) => format!("user/{}", t.user.id),
        Err(_) => "anonymous".into(),
    };
    crate::audit_trail::login(
        &s.audit,
        tenant.id,
        &origin,
        "sso-login",
        agent,
        out.is_ok(),
    );
    match out {
        Ok(t) => {
            let mut r = token_response(&t);
            // The flow is over: the cookie goes.
            if let Some(c) = cookie_header(&uri, "", 0) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            tracing::info!(user_id = %t.user.id, "tenant user signed in with SSO");
            Ok(r)
        }
        Err(IdentityError::Sso(e)) => {
            if e.is_foreign() {
                let mut ev = SecurityEvent::new(EventKind::ForeignIdToken);
                ev.tenant_id = Some(tenant.id);
                ev.peer = Some(ip);
                s.audit.security(ev);
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
