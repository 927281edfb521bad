//! Security events: denied cross-tenant access attempts (a foreign tenant's token, a
//! spoofed `X-Tenant-Id`, a foreign resource id), refresh-token replays, login lockouts.
//!
//! Each event increments a counter (`tenantplane_cross_tenant_attempts_total{tenant,kind}`
//! for cross-tenant attempts), is logged at warn under the target `tenantplane::security`,
//! and is kept in a bounded in-memory ring that the audit log will persist. Events carry
//! ids and addresses only — never tokens, passwords or health data.

use std::{collections::VecDeque, net::IpAddr, sync::Mutex};

use serde::Serialize;
use tenantplane_core::{TenantId, UserId};
use time::OffsetDateTime;

/// What happened.
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

/// The bounded ring of recent events.
#[derive(Debug)]
pub struct SecurityEvents {
    ring: Mutex<VecDeque<SecurityEvent>>,
    cap: usize,
}

impl Default for SecurityEvents {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl SecurityEvents {
    /// A ring keeping the last `cap` events.
    pub fn new(cap: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    /// Records an event: counter, log line, ring.
    pub fn record(&self, ev: SecurityEvent) {
        let tenant = ev
            .tenant_id
            .map(|t| t.to_string())
            .unwrap_or_else(|| "none".into());
        if ev.kind.cross_tenant() {
            metrics::counter!("tenantplane_cross_tenant_attempts_total",
                "tenant" => tenant.clone(), "kind" => ev.kind.as_str())
            .increment(1);
        }
        metrics::counter!("tenantplane_security_events_total", "kind" => ev.kind.as_str())
            .increment(1);
        tracing::warn!(target: "tenantplane::security", kind = ev.kind.as_str(), tenant_id = %tenant,
            claimed = ?ev.claimed_tenant, user_id = ?ev.user_id, peer = ?ev.peer, "security event");
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() >= self.cap {
            r.pop_front();
        }
        r.push_back(ev);
    }

    /// The recent events, oldest first.
    pub fn recent(&self) -> Vec<SecurityEvent> {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
