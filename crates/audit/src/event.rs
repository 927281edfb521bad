//! The event family: security events and clinical accesses.

use std::net::IpAddr;

use serde::Serialize;
use tenantplane_core::{TenantId, UserId};
use time::OffsetDateTime;

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "category", rename_all = "kebab-case")]
pub enum AuditEvent {
    /// A security event.
    Security(SecurityEvent),
    /// A clinical record access.
    Clinical(ClinicalAccess),
    /// A sign-in, an administrator's change, an operator's action on a tenant.
    Activity(Activity),
}

impl AuditEvent {
    /// When it happened.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Self::Security(e) => e.at,
            Self::Clinical(e) => e.at,
            Self::Activity(a) => a.entry.recorded(),
        }
    }

    /// The tenant concerned, if resolved.
    pub fn tenant_id(&self) -> Option<TenantId> {
        match self {
            Self::Security(e) => e.tenant_id,
            Self::Clinical(e) => Some(e.tenant_id),
            Self::Activity(a) => Some(a.tenant_id),
        }
    }

    /// Whether the event's entry was already written to the tenant's log in the
    /// transaction of the change it records (a sink that persists must not write it again).
    pub fn in_store(&self) -> bool {
        match self {
            Self::Clinical(e) => e.in_store,
            Self::Activity(a) => a.in_store,
            Self::Security(_) => false,
        }
    }
}

/// A sign-in, an administrator's change or an operator's action on one tenant, already in
/// its stored form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// The tenant whose log records it.
    pub tenant_id: TenantId,
    /// The entry.
    #[serde(flatten)]
    pub entry: crate::Entry,
    /// Written with the change it records.
    #[serde(skip)]
    pub in_store: bool,
}

/// What security event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A token issued by another tenant was presented.
    ForeignToken,
    /// `X-Tenant-Id` from an address that is not a trusted proxy.
    SpoofedHeader,
    /// An id of another tenant's resource was used.
    ForeignResource,
    /// An ID token made for another client or issuer came back from the tenant's identity
    /// provider (a token meant for another tenant).
    ForeignIdToken,
    /// A used refresh token came back; its family was revoked.
    RefreshReplay,
    /// An account was locked out after repeated failed logins.
    LoginLockout,
}

impl EventKind {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForeignToken => "foreign-token",
            Self::SpoofedHeader => "spoofed-header",
            Self::ForeignResource => "foreign-resource",
            Self::ForeignIdToken => "foreign-id-token",
            Self::RefreshReplay => "refresh-replay",
            Self::LoginLockout => "login-lockout",
        }
    }

    /// Whether this is a cross-tenant attempt.
    pub fn cross_tenant(self) -> bool {
        matches!(
            self,
            Self::ForeignToken | Self::SpoofedHeader | Self::ForeignResource | Self::ForeignIdToken
        )
    }
}

/// One security event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub kind: EventKind,
    /// The tenant whose address the request was sent to (the target), if resolved.
    pub tenant_id: Option<TenantId>,
    /// The tenant the request claimed (the token's issuer, the header's value).
    pub claimed_tenant: Option<String>,
    /// The user concerned, if known.
    pub user_id: Option<UserId>,
    /// Client address.
    pub peer: Option<IpAddr>,
    /// Request id.
    pub request_id: Option<String>,
}

impl SecurityEvent {
    /// An event of `kind` now.
    pub fn new(kind: EventKind) -> Self {
        Self {
            at: OffsetDateTime::now_utc(),
            kind,
            tenant_id: None,
            claimed_tenant: None,
            user_id: None,
            peer: None,
            request_id: None,
        }
    }
}

/// What was done to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClinicalAction {
    /// Read the current version.
    Read,
    /// Read one version.
    Vread,
    /// Read the history.
    History,
    /// Returned by a search.
    Search,
    /// Created.
    Create,
    /// Updated.
    Update,
    /// Deleted.
    Delete,
}

impl ClinicalAction {
    /// What a bundle entry did, from whether it wrote and its HTTP status.
    pub fn of_entry(wrote: bool, status: u16) -> Self {
        match (wrote, status) {
            (true, 201) => Self::Create,
            (true, 204) => Self::Delete,
            (true, _) => Self::Update,
            (false, _) => Self::Read,
        }
    }

    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Vread => "vread",
            Self::History => "history",
            Self::Search => "search",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// One access to a medical record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClinicalAccess {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Who: a tenant user…
    pub user_id: Option<UserId>,
    /// …or a platform operator (imports through the control plane).
    pub operator: Option<String>,
    /// What.
    pub action: ClinicalAction,
    /// Resource type.
    pub resource_type: &'static str,
    /// Resource id.
    pub resource_id: String,
    /// The HTTP status answered.
    pub status: u16,
    /// From where.
    pub peer: Option<IpAddr>,
    /// Request id.
    pub request_id: Option<String>,
    /// Written to the tenant's log in the transaction of the write it records.
    #[serde(skip)]
    pub in_store: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_category() {
        let mut e = SecurityEvent::new(EventKind::SpoofedHeader);
        e.at = OffsetDateTime::UNIX_EPOCH;
        let v = serde_json::to_value(AuditEvent::Security(e)).unwrap_or_default();
        assert_eq!(v["category"], "security");
        assert_eq!(v["kind"], "spoofed-header");
        assert_eq!(v["at"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn entries_map_to_actions() {
        assert_eq!(ClinicalAction::of_entry(true, 201), ClinicalAction::Create);
        assert_eq!(ClinicalAction::of_entry(true, 204), ClinicalAction::Delete);
        assert_eq!(ClinicalAction::of_entry(true, 200), ClinicalAction::Update);
        assert_eq!(ClinicalAction::of_entry(false, 200), ClinicalAction::Read);
    }
}
