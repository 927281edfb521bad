//! Clinical access events: who read or wrote which record, when and from where — never the
//! record's content. Kept in a bounded in-memory ring, logged under `tenantplane::audit`
//! and counted; the audit issue persists them. A single interaction is one INFO line; a
//! request that touches many records (a search page, a bundle, an import) is one INFO
//! summary with the counts per action, its per-record lines at DEBUG.

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

    /// Records one access: counter, INFO line, ring.
    pub fn record(&self, ev: ClinicalAccess) {
        metrics::counter!("tenantplane_clinical_access_total", "action" => ev.action.as_str())
            .increment(1);
        tracing::info!(target: "tenantplane::audit", action = ev.action.as_str(),
            tenant_id = %ev.tenant_id, user_id = ?ev.user_id, operator = ?ev.operator,
            resource_type = ev.resource_type,
            resource_id = %ev.resource_id, status = ev.status, peer = ?ev.peer,
            request_id = ?ev.request_id, "clinical record access");
        self.push(std::iter::once(ev));
    }

    /// Records the accesses of one request: counters, one INFO summary (counts per
    /// action), a DEBUG line each, ring.
    pub fn record_bulk(&self, evs: Vec<ClinicalAccess>) {
        let Some(first) = evs.first() else {
            return;
        };
        let mut counts: Vec<(ClinicalAction, u64)> = Vec::new();
        for ev in &evs {
            match counts.iter_mut().find(|(a, _)| *a == ev.action) {
                Some((_, n)) => *n += 1,
                None => counts.push((ev.action, 1)),
            }
            tracing::debug!(target: "tenantplane::audit", action = ev.action.as_str(),
                tenant_id = %ev.tenant_id, resource_type = ev.resource_type,
                resource_id = %ev.resource_id, status = ev.status,
                request_id = ?ev.request_id, "clinical record access");
        }
        for (a, n) in &counts {
            metrics::counter!("tenantplane_clinical_access_total", "action" => a.as_str())
                .increment(*n);
        }
        let summary = counts
            .iter()
            .map(|(a, n)| format!("{}={n}", a.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(target: "tenantplane::audit", tenant_id = %first.tenant_id,
            user_id = ?first.user_id, operator = ?first.operator, peer = ?first.peer,
            request_id = ?first.request_id, records = evs.len(), actions = %summary,
            "clinical record accesses");
        self.push(evs);
    }

    fn push(&self, evs: impl IntoIterator<Item = ClinicalAccess>) {
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        for ev in evs {
            if r.len() >= self.cap {
                r.pop_front();
            }
            r.push_back(ev);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: ClinicalAction, id: &str) -> ClinicalAccess {
        ClinicalAccess {
            at: OffsetDateTime::now_utc(),
            tenant_id: TenantId::new(),
            user_id: None,
            operator: Some("op".into()),
            action,
            resource_type: "Patient",
            resource_id: id.into(),
            status: 200,
            peer: None,
            request_id: None,
        }
    }

    #[test]
    fn bulk_keeps_every_event_in_order_within_the_cap() {
        let a = AuditEvents::new(3);
        a.record(ev(ClinicalAction::Read, "a"));
        a.record_bulk(vec![
            ev(ClinicalAction::Create, "b"),
            ev(ClinicalAction::Update, "c"),
            ev(ClinicalAction::Create, "d"),
        ]);
        a.record_bulk(Vec::new());
        let ids: Vec<String> = a.recent().into_iter().map(|e| e.resource_id).collect();
        assert_eq!(ids, ["b", "c", "d"]);
    }
}
