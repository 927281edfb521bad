//! The tenant's usage counters on PostgreSQL (`fhir_usage`: patients, bytes) inside a write
//! transaction.
//!
//! Two ways to hold them:
//! - **optimistic** (`lock == false`, the first try): read without a lock, each write checked
//!   against what was read plus the transaction's own changes, and the change added at the
//!   end with one `UPDATE … RETURNING` — the rows are locked from that statement to the
//!   commit only. The returned totals are checked against the plan: past a quota (writes of
//!   other transactions took the headroom meanwhile) the caller rolls back and tries again;
//! - **locked** (`lock == true`): the rows locked `FOR UPDATE` before the first write, so
//!   every check is exact (per-entry answers of a batch near its quota), and the totals
//!   stored at the end.
//!
//! Either way no committed transaction leaves a counter past its quota, and the counters
//! never drift (they move by exactly what was written). Both clear `lim` (the bound that
//! transactions made only of creates set for their own statement, see `creates_pg`): these
//! paths check in the transaction.

use tokio_postgres::types::Type;

use super::{Limits, Usage};

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// The counters as a transaction sees and moves them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counters {
    /// As read (optimistic) or locked.
    pub(super) start: Usage,
    /// With this transaction's writes.
    pub(super) now: Usage,
    locked: bool,
    /// The plan's limits (of the writes that moved them).
    limits: Option<Limits>,
}

impl Counters {
    /// Reads the counters (creating the rows on a tenant's first write), locking them for
    /// the rest of the transaction if `lock`.
    pub(super) async fn read(tx: &tokio_postgres::Transaction<'_>, lock: bool) -> PgResult<Self> {
        // Typed statements, no separate prepare. Concurrent first writes meet on the
        // conflict of the insert and both read the rows after.
        let q = if lock {
            "SELECT key, value FROM fhir_usage WHERE key IN ('patients', 'bytes') \
             ORDER BY key FOR UPDATE"
        } else {
            "SELECT key, value FROM fhir_usage WHERE key IN ('patients', 'bytes')"
        };
        let mut rows = tx.query_typed(q, &[]).await?;
        if rows.len() < 2 {
            tx.execute_typed(
                "INSERT INTO fhir_usage (key, value) VALUES ('bytes', 0), ('patients', 0) \
                 ON CONFLICT DO NOTHING",
                &[],
            )
            .await?;
            rows = tx.query_typed(q, &[]).await?;
        }
        let u = usage_of(&rows);
        Ok(Self {
            start: u,
            now: u,
            locked: lock,
            limits: None,
        })
    }

    /// Counts one write: `dp` patients, `bytes` stored, under `limits`.
    pub(super) fn add(&mut self, dp: i64, bytes: i64, limits: Limits) {
        self.now.patients = (self.now.patients as i64 + dp).max(0) as u64;
        self.now.bytes = self.now.bytes.saturating_add(bytes.max(0) as u64);
        self.limits = Some(limits);
    }

    /// Writes the counters before the commit; `false` (optimistic only) when the totals
    /// would pass a quota: the caller must roll back.
    pub(super) async fn commit(self, tx: &tokio_postgres::Transaction<'_>) -> PgResult<bool> {
        if self.locked {
            let (p, b) = (self.now.patients as i64, self.now.bytes as i64);
            // The rows are held `FOR UPDATE` since the read: no new lock is taken here.
            tx.execute_typed(
                "UPDATE fhir_usage SET value = CASE key WHEN 'patients' THEN $1::bigint \
                 ELSE $2::bigint END, lim = NULL WHERE key IN ('patients', 'bytes')",
                &[(&p, Type::INT8), (&b, Type::INT8)],
            )
            .await?;
            return Ok(true);
        }
        let dp = self.now.patients as i64 - self.start.patients as i64;
        let db = self.now.bytes as i64 - self.start.bytes as i64;
        if dp == 0 && db == 0 {
            return Ok(true);
        }
        // An upsert takes the rows in the order of its VALUES — `bytes`, then `patients`, as
        // every path does (`ORDER BY key` when locking, `creates_pg`) — where an `UPDATE`
        // would take them in whatever order its scan returns: no deadlock between paths.
        let rows = tx
            .query_typed(
                "INSERT INTO fhir_usage (key, value) VALUES ('bytes', GREATEST($2::bigint, 0)), \
                 ('patients', GREATEST($1::bigint, 0)) ON CONFLICT (tenant_id, key) DO UPDATE \
                 SET value = GREATEST(fhir_usage.value + CASE fhir_usage.key WHEN 'patients' \
                 THEN $1::bigint ELSE $2::bigint END, 0), lim = NULL RETURNING key, value",
                &[(&dp, Type::INT8), (&db, Type::INT8)],
            )
            .await?;
        let after = usage_of(&rows);
        let Some(l) = self.limits else {
            return Ok(true);
        };
        Ok(!((dp > 0 && after.patients > l.max_patients)
            || (db > 0 && after.bytes > l.storage_bytes)))
    }
}

fn usage_of(rows: &[tokio_postgres::Row]) -> Usage {
    let mut u = Usage::default();
    for r in rows {
        let v = r.get::<_, i64>(1).max(0) as u64;
        match r.get::<_, &str>(0) {
            "patients" => u.patients = v,
            _ => u.bytes = v,
        }
    }
    u
}
