//! The audit log: where every event goes.

use std::sync::Arc;

use crate::{AuditEvent, ClinicalAccess, Ring, SecurityEvent, TelemetrySink};

/// Receives every audit event, in batches of one request's events, in order.
///
/// `record` runs on the request path: a sink must not block (a persistent sink queues and
/// writes in the background).
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    /// Takes one batch (never empty).
    fn record(&self, events: &[AuditEvent]);
}

/// Recent events in bounded rings, and the sinks every event goes to.
#[derive(Debug)]
pub struct AuditLog {
    security: Ring<SecurityEvent>,
    clinical: Ring<ClinicalAccess>,
    sinks: Vec<Arc<dyn AuditSink>>,
}

impl Default for AuditLog {
    /// The last 10,000 security events and 50,000 accesses, with the telemetry sink.
    fn default() -> Self {
        Self::new(10_000, 50_000)
    }
}

impl AuditLog {
    /// A log keeping the last `security` security events and `clinical` accesses, with the
    /// [`TelemetrySink`].
    pub fn new(security: usize, clinical: usize) -> Self {
        Self::with_telemetry(security, clinical, TelemetrySink::default())
    }

    /// Like [`new`](Self::new), with `telemetry` as the telemetry sink (one that labels
    /// tenants by slug).
    pub fn with_telemetry(security: usize, clinical: usize, telemetry: TelemetrySink) -> Self {
        Self {
            security: Ring::new(security),
            clinical: Ring::new(clinical),
            sinks: vec![Arc::new(telemetry)],
        }
    }

    /// Adds a sink (at boot, before the log is shared).
    pub fn with_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Records a security event.
    pub fn security(&self, ev: SecurityEvent) {
        self.security.extend([ev.clone()]);
        self.emit(&[AuditEvent::Security(ev)]);
    }

    /// Records one clinical access.
    pub fn access(&self, ev: ClinicalAccess) {
        self.accesses(vec![ev]);
    }

    /// Records the clinical accesses of one request (a search page, a bundle, an import).
    pub fn accesses(&self, evs: Vec<ClinicalAccess>) {
        if evs.is_empty() {
            return;
        }
        self.clinical.extend(evs.iter().cloned());
        let batch: Vec<AuditEvent> = evs.into_iter().map(AuditEvent::Clinical).collect();
        self.emit(&batch);
    }

    /// Records a sign-in, an administrator's change or an operator's action.
    pub fn activity(&self, a: crate::Activity) {
        self.emit(&[AuditEvent::Activity(a)]);
    }

    fn emit(&self, batch: &[AuditEvent]) {
        for s in &self.sinks {
            s.record(batch);
        }
    }

    /// The recent security events, oldest first.
    pub fn recent_security(&self) -> Vec<SecurityEvent> {
        self.security.recent()
    }

    /// The recent clinical accesses, oldest first.
    pub fn recent_accesses(&self) -> Vec<ClinicalAccess> {
        self.clinical.recent()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tenantplane_core::TenantId;
    use time::OffsetDateTime;

    use super::*;
    use crate::{ClinicalAction, EventKind};

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<Vec<AuditEvent>>>);

    impl AuditSink for Collect {
        fn record(&self, events: &[AuditEvent]) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(events.to_vec());
        }
    }

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
            in_store: false,
        }
    }

    #[test]
    fn batches_reach_every_sink_and_rings_keep_the_latest() {
        let sink = Arc::new(Collect::default());
        let log = AuditLog::new(2, 3).with_sink(sink.clone());
        log.access(ev(ClinicalAction::Read, "a"));
        log.accesses(vec![
            ev(ClinicalAction::Create, "b"),
            ev(ClinicalAction::Update, "c"),
            ev(ClinicalAction::Create, "d"),
        ]);
        log.accesses(Vec::new());
        log.security(SecurityEvent::new(EventKind::LoginLockout));
        let ids: Vec<String> = log
            .recent_accesses()
            .into_iter()
            .map(|e| e.resource_id)
            .collect();
        assert_eq!(ids, ["b", "c", "d"]);
        assert_eq!(log.recent_security().len(), 1);
        let batches = sink.0.lock().unwrap_or_else(|p| p.into_inner());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 3, 1]);
        assert!(matches!(batches[2][0], AuditEvent::Security(_)));
    }
}
