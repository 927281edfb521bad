//! Searching the audit log: the filters of FHIR's `AuditEvent` search (date, agent,
//! entity, action, outcome, type), newest first, a page at a time.

use tenantplane_audit::{Category, Entry};

/// What to look for. Every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Recorded at or after (ms).
    pub since_ms: Option<i64>,
    /// Recorded before (ms).
    pub until_ms: Option<i64>,
    /// The agent (`user/<uuid>`, `operator/<name>`…).
    pub agent: Option<String>,
    /// The entity: exactly (`Patient/p1`), or with its versions (`Patient/p1` also finds
    /// `Patient/p1/_history/2`).
    pub entity: Option<String>,
    /// FHIR action code.
    pub code: Option<String>,
    /// FHIR outcome.
    pub outcome: Option<u8>,
    /// Category.
    pub category: Option<Category>,
    /// One entry by its id.
    pub id: Option<i64>,
    /// Entries older than this id (the page cursor).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// An entry as stored: its id (insertion order), its place in the chain once sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Id, stable.
    pub id: i64,
    /// Place in the chain; `None` until sealed.
    pub seq: Option<i64>,
    /// The entry.
    pub entry: Entry,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(super) enum Val {
    Int(i64),
    Text(String),
}

/// The `WHERE` clause of `q` with placeholders made by `ph(n)` (1-based), and the values.
/// On PostgreSQL (`pattern_ops`), the versions' range uses the byte-wise operators the
/// entity index (`text_pattern_ops`) serves; SQLite's binary collation serves plain ones.
pub(super) fn filter(
    q: &AuditQuery,
    ph: impl Fn(usize) -> String,
    pattern_ops: bool,
) -> (String, Vec<Val>) {
    let mut terms: Vec<String> = Vec::new();
    let mut vals: Vec<Val> = Vec::new();
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
    if let Some(v) = &q.agent {
        terms.push(format!("agent = {}", bind(Val::Text(v.clone()))));
    }
    if let Some(v) = &q.entity {
        let a = bind(Val::Text(v.clone()));
        let b = bind(Val::Text(format!("{v}/_history/")));
        let c = bind(Val::Text(format!("{v}/_history0")));
        // The entity itself, or any of its versions (a range, so the index serves it).
        let (ge, lt) = if pattern_ops {
            ("~>=~", "~<~")
        } else {
            (">=", "<")
        };
        terms.push(format!(
            "(entity = {a} OR (entity {ge} {b} AND entity {lt} {c}))"
        ));
    }
    if let Some(v) = &q.code {
        terms.push(format!("code = {}", bind(Val::Text(v.clone()))));
    }
    if let Some(v) = q.outcome {
        terms.push(format!("outcome = {}", bind(Val::Int(i64::from(v)))));
    }
    if let Some(v) = q.category {
        terms.push(format!(
            "category = {}",
            bind(Val::Text(v.as_str().to_owned()))
        ));
    }
    if let Some(v) = q.id {
        terms.push(format!("id = {}", bind(Val::Int(v))));
    }
    if let Some(v) = q.before_id {
        terms.push(format!("id < {}", bind(Val::Int(v))));
    }
    let clause = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    (clause, vals)
}

/// The columns every read selects, in [`Entry`]'s order after `id` and `seq`.
pub(super) const COLUMNS: &str = "id, seq, recorded_ms, category, action, code, outcome, agent, \
     entity, peer, request_id, detail";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_bind_every_value_in_order() {
        let q = AuditQuery {
            since_ms: Some(5),
            entity: Some("Patient/p".into()),
            outcome: Some(4),
            limit: 10,
            ..Default::default()
        };
        let (w, v) = filter(&q, |n| format!("${n}"), true);
        assert_eq!(
            w,
            "WHERE recorded_ms >= $1 AND (entity = $2 OR (entity ~>=~ $3 AND entity ~<~ $4)) AND outcome = $5"
        );
        assert_eq!(v.len(), 5);
        let (w, _) = filter(&q, |n| format!("?{n}"), false);
        assert!(w.contains("entity >= ?3 AND entity < ?4"), "{w}");
        let (w, v) = filter(&AuditQuery::default(), |n| format!("?{n}"), false);
        assert!(w.is_empty() && v.is_empty());
    }
}
