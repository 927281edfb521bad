//! Who writes: every write commits its audit entry (`tenantplane_tenant_data::audit_log`)
//! in its own transaction — a write that rolls back leaves no entry, an acknowledged one
//! always has one.

use tenantplane_audit::{Category, Entry};

use super::{Op, Write};

/// The author of a write, for the audit entry committed with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// `user/<uuid>` or `operator/<name>`.
    pub agent: String,
    /// The client's address.
    pub peer: Option<String>,
    /// The request.
    pub request_id: Option<String>,
}

impl Actor {
    /// The entry of write `w`, written as version `version` at `now` (ms).
    pub(super) fn entry(&self, w: &Write, version: u64, now: i64) -> Entry {
        let (action, code) = match w.op {
            Op::Create => ("create", "C"),
            Op::Update { .. } => ("update", "U"),
            Op::Delete => ("delete", "D"),
        };
        let mut e = Entry::now(Category::Clinical, action, code, self.agent.clone())
            .entity(format!("{}/{}/_history/{version}", w.rtype, w.id))
            .origin(self.peer.clone(), self.request_id.clone());
        e.recorded_ms = now;
        e
    }
}
