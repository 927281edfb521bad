//! The resource store: the current version of each resource (`fhir_resources`), the
//! versions it superseded (`fhir_history`), and the tenant's usage counters — all in the
//! tenant's own store, changed in one transaction per write. A create writes one version
//! row; an update or delete moves the superseded one to the history.
//!
//! Quotas (`max_patients`, `storage_bytes`) are checked inside that transaction against
//! counters kept in `fhir_usage` (SQLite: an IMMEDIATE transaction; PostgreSQL: see
//! [`counters`] — read, changed at the end by one `UPDATE … RETURNING` checked against the
//! plan, and run again holding the rows when that check or a write's own check fails), so
//! concurrent writes never exceed them and the counters never drift. Storage counts the
//! bytes of every stored version (history is kept).

use time::OffsetDateTime;
use tokio_postgres::types::Type;

use crate::{
    RecordsError, Result, TenantDb,
    resource::{Incoming, ResourceType},
};

mod actor;
mod counters;
mod creates_pg;
mod index_rows;
mod reads;

use counters::Counters;

pub use actor::Actor;
pub use reads::{cold_bytes, history, read, resource_count, usage, vread};

/// The plan's limits a write must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Patients (not deleted).
    pub max_patients: u64,
    /// Bytes of all stored versions.
    pub storage_bytes: u64,
}

impl Limits {
    /// No limits.
    pub const NONE: Limits = Limits {
        max_patients: u64::MAX,
        storage_bytes: u64::MAX,
    };

    /// The limits of a plan's quotas; none when the plan is unknown.
    pub fn of(quotas: Option<tenantplane_core::Quotas>) -> Self {
        quotas.map_or(Self::NONE, |q| Self {
            max_patients: q.max_patients,
            storage_bytes: q.storage_bytes,
        })
    }
}

/// What a tenant uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Patients (not deleted).
    pub patients: u64,
    /// Bytes of all stored versions.
    pub bytes: u64,
}

/// One version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// Type.
    pub rtype: ResourceType,
    /// Id.
    pub id: String,
    /// Version (1, 2, …).
    pub version: u64,
    /// When this version was written (millisecond precision).
    pub last_updated: OffsetDateTime,
    /// A deletion (no body).
    pub deleted: bool,
    /// The resource JSON.
    pub doc: Option<String>,
}

enum Op {
    Create,
    Update { if_match: Option<u64> },
    Delete,
}

enum Outcome {
    Written(u64),
    Unchanged,
    NotFound,
    Conflict(u64),
    Quota(&'static str, u64, u64),
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn at_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Checks the deltas against the limits; `Some` names the quota exceeded.
fn over(usage: Usage, dp: i64, db: i64, l: Limits) -> Option<(&'static str, u64, u64)> {
    if dp > 0 && usage.patients.saturating_add(dp as u64) > l.max_patients {
        return Some(("max_patients", l.max_patients, usage.patients));
    }
    if db > 0 && usage.bytes.saturating_add(db as u64) > l.storage_bytes {
        return Some(("storage_bytes", l.storage_bytes, usage.bytes));
    }
    None
}

struct Write {
    rtype: &'static str,
    id: String,
    op: Op,
    /// The body of the new version for create/update (assembled once the version is
    /// known).
    body: Option<Box<dyn Fn(u64, OffsetDateTime) -> String + Send + Sync>>,
    limits: Limits,
    patient: bool,
    index: Vec<crate::index::Row>,
}

fn plan(op: &Op, cur: Option<(i64, bool)>) -> Result<(i64, bool), Outcome> {
    match (op, cur) {
        (Op::Create, Some(_)) => Err(Outcome::Conflict(0)),
        (Op::Create, None) => Ok((1, false)),
        (Op::Update { .. }, None) => Err(Outcome::NotFound),
        (Op::Update { if_match: Some(v) }, Some((cv, _))) if *v != cv as u64 => {
            Err(Outcome::Conflict(cv as u64))
        }
        (Op::Update { .. }, Some((cv, del))) => Ok((cv + 1, !del)),
        (Op::Delete, None) => Err(Outcome::NotFound),
        (Op::Delete, Some((_, true))) => Err(Outcome::Unchanged),
        (Op::Delete, Some((cv, false))) => Ok((cv + 1, true)),
    }
}

fn patient_delta(w: &Write, live_before: bool, deleted: bool) -> i64 {
    match (w.patient, live_before, deleted) {
        (true, false, false) => 1,
        (true, true, true) => -1,
        _ => 0,
    }
}

type Applied = (Outcome, i64, Option<String>);

fn apply_sqlite(
    tx: &rusqlite::Transaction<'_>,
    w: &Write,
    now: i64,
    who: &Actor,
) -> rusqlite::Result<Applied> {
    use rusqlite::OptionalExtension;
    let at = at_ms(now);
    let cur: Option<(i64, bool)> = tx
        .prepare_cached("SELECT version, deleted FROM fhir_resources WHERE type = ?1 AND id = ?2")?
        .query_row((w.rtype, &w.id), |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? != 0))
        })
        .optional()?;
    let (next, live_before) = match plan(&w.op, cur) {
        Ok(x) => x,
        Err(o) => return Ok((o, now, None)),
    };
    let doc = w.body.as_ref().map(|f| f(next as u64, at));
    let bytes = doc.as_ref().map(|d| d.len() as i64).unwrap_or(0);
    let deleted = doc.is_none();
    let dp = patient_delta(w, live_before, deleted);
    let usage = Usage {
        patients: usage_of(tx, "patients")?,
        bytes: usage_of(tx, "bytes")?,
    };
    if let Some((q, l, c)) = over(usage, dp, bytes, w.limits) {
        return Ok((Outcome::Quota(q, l, c), now, None));
    }
    if cur.is_some() {
        // The version being superseded moves to the history.
        // `OR IGNORE`: a copy an older binary kept there already holds it.
        tx.prepare_cached(
            "INSERT OR IGNORE INTO fhir_history (type, id, version, last_updated, deleted, doc) \
             SELECT type, id, version, last_updated, deleted, doc FROM fhir_resources \
             WHERE type = ?1 AND id = ?2",
        )?
        .execute((w.rtype, &w.id))?;
    }
    tx.prepare_cached(
        "INSERT INTO fhir_resources (type, id, version, last_updated, deleted, doc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (type, id) DO UPDATE SET \
         version = excluded.version, last_updated = excluded.last_updated, \
         deleted = excluded.deleted, doc = excluded.doc",
    )?
    .execute((w.rtype, &w.id, next, now, deleted as i64, &doc))?;
    reindex_sqlite(tx, w.rtype, &w.id, if deleted { &[] } else { &w.index })?;
    for (k, d) in [("patients", dp), ("bytes", bytes)] {
        if d != 0 {
            tx.prepare_cached(
                "INSERT INTO fhir_usage (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            )?
            .execute((k, d))?;
        }
    }
    tenantplane_tenant_data::audit_log::insert_sqlite(tx, &[who.entry(w, next as u64, now)])?;
    Ok((Outcome::Written(next as u64), now, doc))
}

/// One write inside a PostgreSQL transaction. `usage` is the counters as locked and moved
/// by the earlier writes of the same transaction (the caller stores them at the end).
/// Round trips: a create is one (version rows and index rows pipelined); others add the
/// current-row lock (the removal of old index rows is pipelined with the rest).
async fn apply_pg(
    tx: &tokio_postgres::Transaction<'_>,
    w: &Write,
    now: i64,
    usage: &mut Option<Counters>,
    lock: bool,
    who: &Actor,
) -> std::result::Result<Applied, tokio_postgres::Error> {
    let at = at_ms(now);
    let fresh = matches!(w.op, Op::Create);
    // A create has a freshly minted id: nothing to read or lock.
    let cur = if fresh {
        None
    } else {
        tx.query_typed_opt(
            "SELECT version, deleted FROM fhir_resources WHERE type = $1 AND id = $2 FOR UPDATE",
            &[(&w.rtype, Type::TEXT), (&w.id, Type::TEXT)],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1)))
    };
    let (next, live_before) = match plan(&w.op, cur) {
        Ok(x) => x,
        Err(o) => return Ok((o, now, None)),
    };
    let doc = w.body.as_ref().map(|f| f(next as u64, at));
    let bytes = doc.as_ref().map(|d| d.len() as i64).unwrap_or(0);
    let deleted = doc.is_none();
    let dp = patient_delta(w, live_before, deleted);
    let mut u = match usage.take() {
        Some(u) => u,
        None => Counters::read(tx, lock).await?,
    };
    if let Some((q, l, c)) = over(u.now, dp, bytes, w.limits) {
        *usage = Some(u);
        return Ok((Outcome::Quota(q, l, c), now, None));
    }
    u.add(dp, bytes, w.limits);
    *usage = Some(u);
    // The superseded version (if any) moves to the history in the same statement that
    // replaces it (both see the table as before the statement); a copy an older binary kept
    // there already holds it (`ON CONFLICT DO NOTHING`). The version rows and the
    // index rows are independent: pipelined, one round trip (the first failure aborts the
    // transaction and is the one reported).
    let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 6] = [
        (&w.rtype, Type::TEXT),
        (&w.id, Type::TEXT),
        (&next, Type::INT8),
        (&now, Type::INT8),
        (&deleted, Type::BOOL),
        (&doc, Type::TEXT),
    ];
    let audited = [who.entry(w, next as u64, now)];
    let (written, indexed, entry) = tokio::join!(
        tx.execute_typed(
            "WITH h AS (INSERT INTO fhir_history (type, id, version, last_updated, deleted, doc) \
             SELECT type, id, version, last_updated, deleted, doc FROM fhir_resources \
             WHERE type = $1 AND id = $2 ON CONFLICT DO NOTHING) \
             INSERT INTO fhir_resources (type, id, version, last_updated, deleted, doc) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, type, id) DO UPDATE SET \
             version = excluded.version, last_updated = excluded.last_updated, \
             deleted = excluded.deleted, doc = excluded.doc",
            &params,
        ),
        reindex_pg(
            tx,
            w.rtype,
            &w.id,
            if deleted { &[] } else { &w.index },
            fresh,
        ),
        tenantplane_tenant_data::audit_log::insert_pg(tx, &audited),
    );
    written?;
    indexed?;
    entry?;
    Ok((Outcome::Written(next as u64), now, doc))
}

fn ok(o: &Outcome) -> bool {
    matches!(o, Outcome::Written(_) | Outcome::Unchanged)
}

/// Runs `writes` in one transaction. With `atomic`, the first write that does not succeed
/// rolls everything back (its outcome is returned in its place, the others as `None`);
/// otherwise every write stands alone.
async fn write_all(
    db: TenantDb<'_>,
    writes: Vec<Write>,
    atomic: bool,
    who: &Actor,
) -> Result<Vec<Option<Applied>>> {
    let now = now_ms();
    let who = std::sync::Arc::new(who.clone());
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut out = Vec::with_capacity(writes.len());
                if atomic {
                    let tx =
                        c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    for w in &writes {
                        let a = apply_sqlite(&tx, w, now, &who)?;
                        let good = ok(&a.0);
                        out.push(Some(a));
                        if !good {
                            // Dropping the transaction rolls it back.
                            let n = out.len();
                            let failed = out.pop().flatten();
                            let mut v: Vec<Option<Applied>> =
                                (0..writes.len()).map(|_| None).collect();
                            v[n - 1] = failed;
                            return Ok(v);
                        }
                    }
                    tx.commit()?;
                } else {
                    for w in &writes {
                        let tx =
                            c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                        let a = apply_sqlite(&tx, w, now, &who)?;
                        if ok(&a.0) {
                            tx.commit()?;
                        }
                        out.push(Some(a));
                    }
                }
                Ok(out)
            })
            .await
            .map_err(RecordsError::from)
        }
        TenantDb::Pg(p) => {
            // Each transaction as `transact_pg` chooses: atomic, all of them; otherwise one
            // per write.
            let writes = std::sync::Arc::new(writes);
            if !atomic {
                let mut out = Vec::with_capacity(writes.len());
                for i in 0..writes.len() {
                    out.push(Some(
                        transact_pg(p, writes.clone(), Some(i), now, who.clone())
                            .await?
                            .remove(0)
                            .ok_or_else(|| {
                                RecordsError::Internal("write produced no outcome".into())
                            })?,
                    ));
                }
                return Ok(out);
            }
            transact_pg(p, writes, None, now, who).await
        }
    }
}

/// One transaction on PostgreSQL of every write (`only == None`, atomic) or of write `only`.
/// Creates alone are one statement, one round trip (`creates_pg`), the counters checked by
/// the database; past the plan, the locked path gives the answer. Other writes run first
/// without holding the counters — read, each write checked against them, the change added
/// at the end (`Counters::commit`), so the counter rows are held for one statement and the
/// commit — and, if concurrent writes took the headroom meanwhile or a write was refused
/// for its quota, again holding them from the start (the exact answers near a quota).
async fn transact_pg(
    p: tenantplane_tenant_data::PgTenant<'_>,
    writes: std::sync::Arc<Vec<Write>>,
    only: Option<usize>,
    now: i64,
    who: std::sync::Arc<Actor>,
) -> Result<Vec<Option<Applied>>> {
    let picked = match only {
        Some(i) => writes.get(i..=i).unwrap_or_default(),
        None => &writes[..],
    };
    if !picked.is_empty() && picked.iter().all(|w| matches!(w.op, Op::Create)) {
        if let Some(out) = creates_pg::create_all(p, picked, now, &who).await? {
            return Ok(out);
        }
        return write_pg(p, writes.clone(), only, now, &[true], who).await;
    }
    write_pg(p, writes.clone(), only, now, &[false, true], who).await
}

/// One transaction on PostgreSQL: every write (`only == None`, atomic: the first one that
/// does not succeed rolls everything back and is returned alone) or write `only`. Tried
/// as `tries` says: optimistically (`false`), then holding the counters (`true`).
async fn write_pg(
    p: tenantplane_tenant_data::PgTenant<'_>,
    writes: std::sync::Arc<Vec<Write>>,
    only: Option<usize>,
    now: i64,
    tries: &[bool],
    who: std::sync::Arc<Actor>,
) -> Result<Vec<Option<Applied>>> {
    for &lock in tries {
        let writes = writes.clone();
        let who = who.clone();
        let tried = p
            .transaction_deciding(move |tx| {
                Box::pin(async move {
                    let picked: Vec<&Write> = match only {
                        Some(i) => writes.get(i).into_iter().collect(),
                        None => writes.iter().collect(),
                    };
                    let n = picked.len();
                    let mut v: Vec<Option<Applied>> = (0..n).map(|_| None).collect();
                    let mut usage = None;
                    for (i, w) in picked.into_iter().enumerate() {
                        let a = apply_pg(tx, w, now, &mut usage, lock, &who).await?;
                        if !lock && matches!(a.0, Outcome::Quota(..)) {
                            // Confirmed holding the counters (a concurrent delete may
                            // have freed room since they were read).
                            return Ok((None, false));
                        }
                        if !ok(&a.0) {
                            let mut alone: Vec<Option<Applied>> = (0..n).map(|_| None).collect();
                            alone[i] = Some(a);
                            return Ok((Some(alone), false));
                        }
                        v[i] = Some(a);
                    }
                    if let Some(u) = usage
                        && !u.commit(tx).await?
                    {
                        return Ok((None, false));
                    }
                    Ok((Some(v), true))
                })
            })
            .await?;
        if let Some(out) = tried {
            return Ok(out);
        }
    }
    // Holding the counters, neither check fails.
    Err(RecordsError::Internal("counters changed under lock".into()))
}

async fn write(db: TenantDb<'_>, w: Write, who: &Actor) -> Result<Applied> {
    write_all(db, vec![w], true, who)
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| RecordsError::Internal("write produced no outcome".into()))
}

fn reindex_sqlite(
    tx: &rusqlite::Transaction<'_>,
    rtype: &str,
    id: &str,
    rows: &[crate::index::Row],
) -> rusqlite::Result<()> {
    use crate::index::Row;
    for t in [
        "fhir_idx_token",
        "fhir_idx_string",
        "fhir_idx_date",
        "fhir_idx_ref",
    ] {
        tx.prepare_cached(&format!("DELETE FROM {t} WHERE type = ?1 AND id = ?2"))?
            .execute((rtype, id))?;
    }
    for r in rows {
        match r {
            Row::Token { param, system, code } => tx
                .prepare_cached(
                    "INSERT INTO fhir_idx_token (type, id, param, system, code) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute((rtype, id, param, system, code))?,
            Row::Str { param, norm, raw } => tx
                .prepare_cached(
                    "INSERT INTO fhir_idx_string (type, id, param, norm, raw) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute((rtype, id, param, norm, raw))?,
            Row::Date { param, lo, hi } => tx
                .prepare_cached(
                    "INSERT INTO fhir_idx_date (type, id, param, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute((rtype, id, param, lo, hi))?,
            Row::Ref { param, rtype: tt, id: tid } => tx
                .prepare_cached(
                    "INSERT INTO fhir_idx_ref (type, id, param, target_type, target_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute((rtype, id, param, tt, tid))?,
        };
    }
    Ok(())
}

async fn reindex_pg(
    tx: &tokio_postgres::Transaction<'_>,
    rtype: &str,
    id: &str,
    rows: &[crate::index::Row],
    fresh: bool,
) -> std::result::Result<(), tokio_postgres::Error> {
    if !fresh {
        tx.execute_typed(
            "WITH a AS (DELETE FROM fhir_idx_token WHERE type = $1 AND id = $2), \
             b AS (DELETE FROM fhir_idx_string WHERE type = $1 AND id = $2), \
             c AS (DELETE FROM fhir_idx_date WHERE type = $1 AND id = $2) \
             DELETE FROM fhir_idx_ref WHERE type = $1 AND id = $2",
            &[(&rtype, Type::TEXT), (&id, Type::TEXT)],
        )
        .await?;
    }
    if rows.is_empty() {
        return Ok(());
    }
    // Every index row of the resource in one statement.
    let mut ix = index_rows::IndexArrays::default();
    ix.push(rtype, id, rows);
    tx.execute_typed(
        &format!("WITH {} SELECT 1", index_rows::IndexArrays::ctes(1)),
        &ix.params(),
    )
    .await?;
    Ok(())
}

fn usage_of(tx: &rusqlite::Transaction<'_>, key: &str) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    Ok(tx
        .query_row("SELECT value FROM fhir_usage WHERE key = ?1", [key], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0)
        .max(0) as u64)
}

fn finish(
    rtype: ResourceType,
    id: String,
    (outcome, ms, doc): (Outcome, i64, Option<String>),
) -> Result<Option<Version>> {
    match outcome {
        Outcome::Written(version) => Ok(Some(Version {
            rtype,
            id,
            version,
            last_updated: at_ms(ms),
            deleted: doc.is_none(),
            doc,
        })),
        Outcome::Unchanged => Ok(None),
        Outcome::NotFound => Err(RecordsError::NotFound),
        Outcome::Conflict(0) => Err(RecordsError::Internal(
            "a freshly minted id already exists".into(),
        )),
        Outcome::Conflict(current) => Err(RecordsError::VersionConflict { current }),
        Outcome::Quota(quota, limit, current) => Err(RecordsError::QuotaExceeded {
            quota,
            limit,
            current,
        }),
    }
}

/// A write prepared for [`apply`] (several in one transaction).
pub struct Prepared(Write, ResourceType);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("type", &self.0.rtype)
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// A create with an id already minted (`TenantDb::mint_id`).
    pub fn create(id: String, r: Incoming, limits: Limits) -> Self {
        let patient = r.is_patient();
        let index = crate::index::extract(r.rtype.as_str(), &r.value);
        let t = r.rtype;
        let body_id = id.clone();
        Self(
            Write {
                rtype: t.as_str(),
                id,
                op: Op::Create,
                body: Some(Box::new(move |v, at| r.assemble(&body_id, v, at))),
                limits,
                patient,
                index,
            },
            t,
        )
    }

    /// An update.
    pub fn update(id: String, r: Incoming, if_match: Option<u64>, limits: Limits) -> Self {
        let patient = r.is_patient();
        let index = crate::index::extract(r.rtype.as_str(), &r.value);
        let t = r.rtype;
        let body_id = id.clone();
        Self(
            Write {
                rtype: t.as_str(),
                id,
                op: Op::Update { if_match },
                body: Some(Box::new(move |v, at| r.assemble(&body_id, v, at))),
                limits,
                patient,
                index,
            },
            t,
        )
    }

    /// A delete.
    pub fn delete(rtype: ResourceType, id: String) -> Self {
        Self(
            Write {
                rtype: rtype.as_str(),
                id,
                op: Op::Delete,
                body: None,
                limits: Limits::NONE,
                patient: rtype.as_str() == "Patient",
                index: Vec::new(),
            },
            rtype,
        )
    }
}

/// Applies `writes` in one transaction. Atomic: the first failure rolls back everything and
/// is the only `Some` in the answer. Otherwise each stands alone. `Ok(None)` is a delete of
/// something already deleted.
pub async fn apply(
    db: TenantDb<'_>,
    writes: Vec<Prepared>,
    atomic: bool,
    who: &Actor,
) -> Result<Vec<Option<Result<Option<Version>>>>> {
    let keys: Vec<(ResourceType, String)> = writes.iter().map(|p| (p.1, p.0.id.clone())).collect();
    let out = write_all(db, writes.into_iter().map(|p| p.0).collect(), atomic, who).await?;
    Ok(out
        .into_iter()
        .zip(keys)
        .map(|(a, (t, id))| a.map(|a| finish(t, id, a)))
        .collect())
}

/// Creates a resource with a new server-assigned id (the body's id is ignored).
pub async fn create(db: TenantDb<'_>, r: Incoming, limits: Limits, who: &Actor) -> Result<Version> {
    crate::validate::check(r.rtype, &r.value).map_err(RecordsError::Invalid)?;
    let id = db.mint_id().to_string();
    one(db, Prepared::create(id, r, limits), who)
        .await?
        .ok_or_else(|| RecordsError::Internal("create wrote nothing".into()))
}

/// Writes a new version of an existing resource (also of a deleted one). `if_match` is
/// the version the client read.
pub async fn update(
    db: TenantDb<'_>,
    id: &str,
    r: Incoming,
    if_match: Option<u64>,
    limits: Limits,
    who: &Actor,
) -> Result<Version> {
    crate::validate::check(r.rtype, &r.value).map_err(RecordsError::Invalid)?;
    one(
        db,
        Prepared::update(id.to_owned(), r, if_match, limits),
        who,
    )
    .await?
    .ok_or_else(|| RecordsError::Internal("update wrote nothing".into()))
}

/// Deletes a resource (a new, bodiless version). `None`: it was already deleted.
pub async fn delete(
    db: TenantDb<'_>,
    rtype: ResourceType,
    id: &str,
    who: &Actor,
) -> Result<Option<Version>> {
    one(db, Prepared::delete(rtype, id.to_owned()), who).await
}

/// One prepared write in its own transaction.
async fn one(db: TenantDb<'_>, p: Prepared, who: &Actor) -> Result<Option<Version>> {
    let rtype = p.1;
    let id = p.0.id.clone();
    finish(rtype, id, write(db, p.0, who).await?)
}

pub(super) type Row = (i64, i64, bool, Option<String>);
