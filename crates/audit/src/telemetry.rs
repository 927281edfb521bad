//! The sink every log has: counters and log lines.
//!
//! Security events: `tenantplane_security_events_total{kind}`, and for cross-tenant attempts
//! `tenantplane_cross_tenant_attempts_total{tenant,kind}`; a WARN line under the target
//! `tenantplane::security`. Clinical accesses: `tenantplane_clinical_access_total{action}`;
//! a single access is one INFO line under `tenantplane::audit`, a batch of several is one
//! INFO summary with the counts per action and a DEBUG line per record.

use crate::{AuditEvent, AuditSink, ClinicalAccess, ClinicalAction, SecurityEvent};

/// Names a tenant in metric labels (its slug, as the request metrics name it).
pub type TenantLabel =
    std::sync::Arc<dyn Fn(tenantplane_core::TenantId) -> Option<String> + Send + Sync>;

/// Counters and log lines for every event.
#[derive(Clone, Default)]
pub struct TelemetrySink {
    label: Option<TenantLabel>,
}

impl std::fmt::Debug for TelemetrySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetrySink").finish_non_exhaustive()
    }
}

impl TelemetrySink {
    /// A sink labelling tenants with `label` (the id when it names none).
    pub fn labelled(label: TenantLabel) -> Self {
        Self { label: Some(label) }
    }
}

impl AuditSink for TelemetrySink {
    fn record(&self, events: &[AuditEvent]) {
        let clinical: Vec<&ClinicalAccess> = events
            .iter()
            .filter_map(|e| match e {
                AuditEvent::Clinical(c) => Some(c),
                AuditEvent::Security(_) | AuditEvent::Activity(_) => None,
            })
            .collect();
        for e in events {
            match e {
                AuditEvent::Security(s) => self.security(s),
                AuditEvent::Activity(a) => activity(a),
                AuditEvent::Clinical(_) => {}
            }
        }
        match clinical.as_slice() {
            [] => {}
            [one] => access(one),
            many => accesses(many),
        }
    }
}

impl TelemetrySink {
    fn security(&self, ev: &SecurityEvent) {
        security(ev, self.label.as_ref());
    }
}

fn security(ev: &SecurityEvent, label: Option<&TenantLabel>) {
    let tenant = ev
        .tenant_id
        .map(|t| label.and_then(|l| l(t)).unwrap_or_else(|| t.to_string()))
        .unwrap_or_else(|| "none".into());
    if ev.kind.cross_tenant() {
        metrics::counter!("tenantplane_cross_tenant_attempts_total",
            "tenant" => tenant.clone(), "kind" => ev.kind.as_str())
        .increment(1);
    }
    metrics::counter!("tenantplane_security_events_total", "kind" => ev.kind.as_str()).increment(1);
    tracing::warn!(target: "tenantplane::security", kind = ev.kind.as_str(), tenant_id = %tenant,
        claimed = ?ev.claimed_tenant, user_id = ?ev.user_id, peer = ?ev.peer, "security event");
}

fn activity(a: &crate::Activity) {
    let e = &a.entry;
    metrics::counter!("tenantplane_audit_activity_total",
        "category" => e.category.as_str(), "action" => e.action.clone())
    .increment(1);
    tracing::info!(target: "tenantplane::audit", category = e.category.as_str(),
        action = %e.action, outcome = e.outcome, tenant_id = %a.tenant_id, agent = %e.agent,
        entity = ?e.entity, peer = ?e.peer, request_id = ?e.request_id, "activity");
}

fn access(ev: &ClinicalAccess) {
    metrics::counter!("tenantplane_clinical_access_total", "action" => ev.action.as_str())
        .increment(1);
    tracing::info!(target: "tenantplane::audit", action = ev.action.as_str(),
        tenant_id = %ev.tenant_id, user_id = ?ev.user_id, operator = ?ev.operator,
        resource_type = ev.resource_type,
        resource_id = %ev.resource_id, status = ev.status, peer = ?ev.peer,
        request_id = ?ev.request_id, "clinical record access");
}

fn accesses(evs: &[&ClinicalAccess]) {
    let Some(first) = evs.first() else {
        return;
    };
    let mut counts: Vec<(ClinicalAction, u64)> = Vec::new();
    for ev in evs {
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
}
