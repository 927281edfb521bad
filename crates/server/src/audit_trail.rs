//! What tenant requests record in the tenant's audit log besides clinical accesses and
//! security events: sign-ins and sessions, administrators' changes. Entries carry ids and
//! the request's origin, never passwords or tokens.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tenantplane_audit::{Activity, AuditLog, Category, Entry};
use tenantplane_core::TenantId;

use crate::context::UserCtx;

/// Where a request came from: the client's address and the request id.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            peer: crate::context::peer(parts),
            request_id: crate::context::request_id(parts).map(|s| s.chars().take(64).collect()),
        })
    }
}

/// Records `entry`, stamped with `o`, in `tenant`'s log.
pub fn record(log: &AuditLog, tenant: TenantId, o: &Origin, entry: Entry) {
    log.activity(Activity {
        tenant_id: tenant,
        entry: entry.origin(o.peer.map(|p| p.to_string()), o.request_id.clone()),
        in_store: false,
    });
}

/// A sign-in event (`login`, `login-failed`, `token-refresh`, `logout`…).
pub fn login(log: &AuditLog, tenant: TenantId, o: &Origin, action: &str, agent: String, ok: bool) {
    let e = Entry::now(Category::Login, action, "E", agent).outcome(if ok { 0 } else { 4 });
    record(log, tenant, o, e);
}

/// The entry of a change `u` is about to make to `entity` (`User/<id>`; `None`: the write
/// names it), for `tenantplane_tenant_data::audit_log::committed_with`: it commits in the
/// change's own transaction.
pub fn admin_entry(
    u: &UserCtx,
    action: &str,
    code: &str,
    entity: Option<String>,
    detail: Option<serde_json::Value>,
) -> Entry {
    let mut e = Entry::now(
        Category::Admin,
        action,
        code,
        format!("user/{}", u.claims.sub),
    )
    .origin(u.peer.map(|p| p.to_string()), u.request_id.clone());
    e.entity = entity;
    if let Some(d) = detail {
        e = e.detail(&d);
    }
    e
}

/// After a change committed its entry (`admin_entry`): the telemetry sees it and the
/// writer seals it.
pub fn committed(log: &AuditLog, u: &UserCtx, entry: Entry) {
    log.activity(Activity {
        tenant_id: u.tenant.tenant().id,
        entry,
        in_store: true,
    });
}

/// A change made by administrator `u` to `entity` (`SSO`, `Keys`), through the writer.
pub fn admin(
    log: &AuditLog,
    u: &UserCtx,
    action: &str,
    code: &str,
    entity: String,
    detail: Option<serde_json::Value>,
) {
    let mut e = Entry::now(
        Category::Admin,
        action,
        code,
        format!("user/{}", u.claims.sub),
    )
    .entity(entity);
    if let Some(d) = detail {
        e = e.detail(&d);
    }
    let o = Origin {
        peer: u.peer,
        request_id: u.request_id.clone(),
    };
    record(log, u.tenant.tenant().id, &o, e);
}
