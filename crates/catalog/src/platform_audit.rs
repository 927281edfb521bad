//! The platform audit log: operators' actions across tenants, in the catalog, in one hash
//! chain (the same [`tenantplane_audit::chain`] as the tenants' logs, from the platform's
//! genesis), append-only (triggers refuse changes; the chain finds what bypasses them).
//!
//! Appends are serialized (the embedded catalog's one connection; on PostgreSQL a
//! transaction-scoped advisory lock), so each entry links to the one before.

use async_trait::async_trait;
use tenantplane_audit::Entry;

use crate::Result;

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformAuditQuery {
    /// Recorded at or after (ms).
    pub since_ms: Option<i64>,
    /// Recorded before (ms).
    pub until_ms: Option<i64>,
    /// Only entries about this entity (`Tenant/<uuid>`).
    pub entity: Option<String>,
    /// Only entries of this agent (`operator/<name>`).
    pub agent: Option<String>,
    /// Entries before this `seq` (the page cursor).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// A sealed entry of the platform log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEntry {
    /// Its place in the chain.
    pub seq: i64,
    /// The entry.
    pub entry: Entry,
    /// Its chain hash.
    pub hash: Vec<u8>,
}

/// The platform audit log's store.
#[async_trait]
pub trait PlatformAuditStore: Send + Sync + 'static {
    /// Appends one entry, linked to the last; returns its `seq`.
    async fn append_platform_audit(&self, e: &Entry) -> Result<i64>;
    /// Entries matching `q`, newest first.
    async fn platform_audit(&self, q: &PlatformAuditQuery) -> Result<Vec<PlatformEntry>>;
    /// Entries after `seq` in chain order, at most `limit` (for verification).
    async fn platform_audit_after(&self, seq: i64, limit: i64) -> Result<Vec<PlatformEntry>>;
    /// The head (last `seq` and its hash); `None` before the first entry.
    async fn platform_audit_head(&self) -> Result<Option<(i64, Vec<u8>)>>;
}

/// The `WHERE` clause of `q` with placeholders `ph(n)` and its values (ints, texts).
pub(crate) fn filter(q: &PlatformAuditQuery, ph: impl Fn(usize) -> String) -> (String, Vec<Val>) {
    let mut terms = Vec::new();
    let mut vals = Vec::new();
    let mut bind = |v: Val| {
        vals.push(v);
        ph(vals.len())
    };
    if let Some(v) = q.since_ms {
        terms.push(format!("recorded_ms >= {}", bind(Val::Int(v))));
    }
    if let Some(v) = q.until_ms {
        terms.push(format!("recorded_ms < {}", bind(Val::Int(v))));
    }
    if let Some(v) = &q.entity {
        terms.push(format!("entity = {}", bind(Val::Text(v.clone()))));
    }
    if let Some(v) = &q.agent {
        terms.push(format!("agent = {}", bind(Val::Text(v.clone()))));
    }
    if let Some(v) = q.before_seq {
        terms.push(format!("seq < {}", bind(Val::Int(v))));
    }
    let clause = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    (clause, vals)
}

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Int(i64),
    Text(String),
}

/// The columns read, in order.
pub(crate) const COLUMNS: &str = "seq, recorded_ms, category, action, code, outcome, agent, entity, \
     peer, request_id, detail, hash";
