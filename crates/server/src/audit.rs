//! Clinical access events: who read or wrote which record, when and from where — never the
//! record's content. Kept in a bounded in-memory ring, logged under `tenantplane::audit`
//! and counted; the audit issue persists them.

use std::{collections::VecDeque, net::IpAddr, sync::Mutex};

use serde::Serialize;
use tenantplane_core::{TenantId, UserId};

use time::OffsetDateTime;

/// What was done.
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
    /// What a bundle entry did.
    pub fn of_entry(e: &tenantplane_records::bundle::EntryResult) -> Self {
        match (e.wrote, e.status) {
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

/// One access.
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
}

/// The bounded ring of recent clinical accesses.
#[derive(Debug)]
pub struct AuditEvents {
    ring: Mutex<VecDeque<ClinicalAccess>>,
    cap: usize,
}

impl Default for AuditEvents {
    fn default() -> Self {
        Self::new(50_000)
    }
}

impl AuditEvents {
    /// A ring of the last `cap` events.
    pub fn new(cap: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    /// Records one access: counter, log line, ring.
    pub fn record(&self, ev: ClinicalAccess) {
        metrics::counter!("tenantplane_clinical_access_total", "action" => ev.action.as_str())
            .increment(1);
        tracing::info!(target: "tenantplane::audit", action = ev.action.as_str(),
            tenant_id = %ev.tenant_id, user_id = ?ev.user_id, operator = ?ev.operator,
            resource_type = ev.resource_type,
            resource_id = %ev.resource_id, status = ev.status, peer = ?ev.peer,
            "clinical record access");
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() >= self.cap {
            r.pop_front();
        }
        r.push_back(ev);
    }

    /// The recent events, oldest first.
    pub fn recent(&self) -> Vec<ClinicalAccess> {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
