//! The authenticated tenant user of a request: built from a [`TenantCtx`] (so never
//! without a resolved tenant) and an access token verified with that tenant's keys. A token
//! of another tenant is a 401 like any bad token, and is recorded as a cross-tenant attempt.

use std::{collections::BTreeSet, net::SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::{StatusCode, header, request::Parts},
};
use tenantplane_audit::{EventKind, SecurityEvent};
use tenantplane_core::Permission;
use tenantplane_identity::tokens::{AccessClaims, TokenError};

use crate::{
    gate::TenantCtx,
    problem::{ApiError, ApiResult},
    state::TenantSide,
};

/// An authenticated tenant user.
#[derive(Debug, Clone)]
pub struct UserCtx {
    /// The tenant.
    pub tenant: TenantCtx,
    /// The verified claims (roles are the user's current ones).
    pub claims: AccessClaims,
    /// What the user's roles allow.
    pub permissions: BTreeSet<Permission>,
    /// The client address.
    pub peer: Option<std::net::IpAddr>,
    /// The request id.
    pub request_id: Option<String>,
}

impl UserCtx {
    /// The answer for an id not found in this tenant: 404 like any unknown id; if another
    /// tenant minted it, a `foreign-resource` cross-tenant attempt is recorded (with that
    /// tenant, for the operator only).
    pub fn not_found(&self, s: &TenantSide, id: &uuid::Uuid, what: &str) -> ApiError {
        let tenant = self.tenant.tenant().id;
        if let Some(owner) = s.index.foreign_owner(tenant, id) {
            let mut ev = SecurityEvent::new(EventKind::ForeignResource);
            ev.tenant_id = Some(tenant);
            ev.claimed_tenant = Some(owner.to_string());
            ev.user_id = Some(self.claims.sub);
            ev.peer = self.peer;
            ev.request_id = self.request_id.clone();
            s.audit.security(ev);
        }
        ApiError::not_found(what)
    }

    /// Refuses unless the user holds `p`.
    pub fn require(&self, p: Permission) -> ApiResult<()> {
        if self.permissions.contains(&p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(&format!(
                "this needs the permission {p}"
            )))
        }
    }
}

/// A user who may still have to change a one-time password (only `POST /auth/password`).
#[derive(Debug, Clone)]
pub struct PendingUserCtx(pub UserCtx);

fn bearer(parts: &Parts) -> ApiResult<&str> {
    if !parts.headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::unauthorized(
            "send an access token as 'Authorization: Bearer <token>'",
        ));
    }
    super::bearer_token(
        &parts.headers,
        tenantplane_identity::tokens::MAX_TOKEN_BYTES,
    )
    .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))
}

/// The client's address (recorded by the listener; never from a header).
pub(crate) fn peer(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The request id (`X-Request-Id`).
pub(crate) fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn authenticate<S: Send + Sync>(parts: &mut Parts, state: &S) -> ApiResult<UserCtx>
where
    TenantSide: FromRef<S>,
{
    let s = &TenantSide::from_ref(state);
    let ctx = TenantCtx::from_request_parts(parts, state).await?;
    let token = bearer(parts)?;
    if token.starts_with(tenantplane_control::tokens::TOKEN_PREFIX) {
        metrics::counter!("tenantplane_token_rejections_total", "reason" => "operator-token")
            .increment(1);
        return Err(ApiError::unauthorized(
            "operator tokens are not valid on tenant APIs; log in as a tenant user",
        ));
    }
    let tenant = ctx.tenant().id;
    let db = ctx.db(&s.data)?;
    let claims = match s.identity.authenticate(tenant, db, token).await? {
        Ok(c) => c,
        Err(e) => {
            metrics::counter!("tenantplane_token_rejections_total", "reason" => e.label())
                .increment(1);
            if let TokenError::ForeignTenant(other) = &e {
                let mut ev = SecurityEvent::new(EventKind::ForeignToken);
                ev.tenant_id = Some(tenant);
                ev.claimed_tenant = Some(other.to_string());
                ev.peer = peer(parts);
                ev.request_id = request_id(parts);
                s.audit.security(ev);
            }
            let detail = match e {
                TokenError::Expired => "the access token has expired; refresh it",
                _ => "invalid access token",
            };
            return Err(ApiError::unauthorized(detail));
        }
    };
    let roles = s.identity.roles(tenant, ctx.db(&s.data)?).await?;
    let permissions = tenantplane_identity::roles::permissions(&roles, &claims.roles);
    // Known from here on: the request's log lines carry the user (an id, never a name).
    tracing::Span::current().record("user_id", tracing::field::display(&claims.sub));
    Ok(UserCtx {
        tenant: ctx,
        claims,
        permissions,
        peer: peer(parts),
        request_id: request_id(parts),
    })
}

impl<S: Send + Sync> FromRequestParts<S> for PendingUserCtx
where
    TenantSide: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> ApiResult<Self> {
        authenticate(parts, s).await.map(PendingUserCtx)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UserCtx
where
    TenantSide: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> ApiResult<Self> {
        let u = authenticate(parts, s).await?;
        if u.claims.pwd_change {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password-change-required",
                "Password change required",
            )
            .detail("log in with the one-time password was done; set a new one with POST /auth/password"));
        }
        Ok(u)
    }
}
