//! The audit log on SQLite.

use rusqlite::{Connection, OptionalExtension as _, Transaction, params_from_iter};
use tenantplane_audit::{
    Category, Entry,
    chain::{Checkpoint, CheckpointKey, genesis, hash_from, link},
};
use tenantplane_core::TenantId;

use super::{
    Anchors,
    query::{AuditQuery, COLUMNS, Stored, Val, filter},
};

pub(super) const MIGRATION: &str = "CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER UNIQUE,
        recorded_ms INTEGER NOT NULL,
        category TEXT NOT NULL,
        action TEXT NOT NULL,
        code TEXT NOT NULL,
        outcome INTEGER NOT NULL,
        agent TEXT NOT NULL,
        entity TEXT,
        peer TEXT,
        request_id TEXT,
        detail TEXT,
        hash BLOB
    ) STRICT;
    CREATE INDEX audit_log_recorded ON audit_log (recorded_ms);
    CREATE INDEX audit_log_agent ON audit_log (agent, recorded_ms);
    CREATE INDEX audit_log_entity ON audit_log (entity, recorded_ms);
    CREATE INDEX audit_log_unsealed ON audit_log (id) WHERE seq IS NULL;
    CREATE TABLE audit_head (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL
    ) STRICT;
    CREATE TABLE audit_checkpoints (
        seq INTEGER PRIMARY KEY,
        hash BLOB NOT NULL,
        at_ms INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        signature BLOB NOT NULL
    ) STRICT;
    CREATE TRIGGER audit_log_sealed_is_final BEFORE UPDATE ON audit_log
    WHEN OLD.seq IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.recorded_ms IS NOT OLD.recorded_ms
      OR NEW.category IS NOT OLD.category OR NEW.action IS NOT OLD.action
      OR NEW.code IS NOT OLD.code OR NEW.outcome IS NOT OLD.outcome
      OR NEW.agent IS NOT OLD.agent OR NEW.entity IS NOT OLD.entity
      OR NEW.peer IS NOT OLD.peer OR NEW.request_id IS NOT OLD.request_id
      OR NEW.detail IS NOT OLD.detail
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_pruned_only_past_a_checkpoint BEFORE DELETE ON audit_log
    WHEN OLD.seq IS NULL OR OLD.seq > (SELECT coalesce(max(seq), 0) FROM audit_checkpoints)
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_checkpoints_are_final BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are final'); END;
    CREATE TRIGGER audit_checkpoints_are_kept BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are final'); END;";

pub(super) fn insert(tx: &Transaction<'_>, entries: &[Entry]) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO audit_log (recorded_ms, category, action, code, outcome, agent, entity, \
         peer, request_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for e in entries {
        st.execute(rusqlite::params![
            e.recorded_ms,
            e.category.as_str(),
            e.action,
            e.code,
            e.outcome,
            e.agent,
            e.entity,
            e.peer,
            e.request_id,
            e.detail
        ])?;
    }
    Ok(())
}

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("unknown {what}").into(),
    )
}

/// Reads an entry from a row of [`COLUMNS`] (offset 2).
fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let cat: String = r.get(3)?;
    Ok(Entry {
        recorded_ms: r.get(2)?,
        category: Category::parse(&cat).ok_or_else(|| bad(3, "category"))?,
        action: r.get(4)?,
        code: r.get(5)?,
        outcome: r.get(6)?,
        agent: r.get(7)?,
        entity: r.get(8)?,
        peer: r.get(9)?,
        request_id: r.get(10)?,
        detail: r.get(11)?,
    })
}

fn head(c: &Connection) -> rusqlite::Result<Option<(i64, Vec<u8>)>> {
    c.query_row("SELECT seq, hash FROM audit_head WHERE one = 1", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

pub(super) fn seal(tx: &Transaction<'_>, tenant: TenantId, max: usize) -> rusqlite::Result<u64> {
    let (mut seq, prev) = head(tx)?.unwrap_or((0, genesis(tenant).to_vec()));
    let mut prev = hash_from(&prev);
    let rows: Vec<(i64, Entry)> = {
        let mut st = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT ?1"
        ))?;
        st.query_map([i64::try_from(max).unwrap_or(i64::MAX)], |r| {
            Ok((r.get(0)?, entry(r)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    if rows.is_empty() {
        return Ok(0);
    }
    {
        let mut st = tx.prepare_cached("UPDATE audit_log SET seq = ?1, hash = ?2 WHERE id = ?3")?;
        for (id, e) in &rows {
            seq += 1;
            prev = link(&prev, seq, e);
            st.execute(rusqlite::params![seq, prev.as_slice(), id])?;
        }
    }
    tx.execute(
        "INSERT INTO audit_head (one, seq, hash) VALUES (1, ?1, ?2) \
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        rusqlite::params![seq, prev.as_slice()],
    )?;
    Ok(rows.len() as u64)
}

pub(super) fn anchors(c: &mut Connection) -> rusqlite::Result<Anchors> {
    let checkpoint = c
        .query_row(
            "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints \
             ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(Checkpoint {
                    seq: r.get(0)?,
                    hash: hash_from(&r.get::<_, Vec<u8>>(1)?),
                    at_ms: r.get(2)?,
                    key_id: r.get(3)?,
                    signature: r.get(4)?,
                })
            },
        )
        .optional()?;
    let unsealed: i64 = c.query_row(
        "SELECT count(*) FROM audit_log WHERE seq IS NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(Anchors {
        head: head(c)?,
        checkpoint,
        unsealed: unsealed as u64,
    })
}

pub(super) fn sealed_after(
    c: &mut Connection,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<(i64, Entry, Vec<u8>)>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS}, hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    st.query_map([after, limit], |r| {
        Ok((
            r.get(1)?,
            entry(r)?,
            r.get::<_, Option<Vec<u8>>>(12)?.unwrap_or_default(),
        ))
    })?
    .collect()
}

pub(super) fn search(c: &mut Connection, q: &AuditQuery) -> rusqlite::Result<Vec<Stored>> {
    let (clause, vals) = filter(q, |n| format!("?{n}"), false);
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {clause} ORDER BY id DESC LIMIT {}",
        q.limit
    );
    let mut st = c.prepare_cached(&sql)?;
    let params = vals.iter().map(|v| match v {
        Val::Int(i) => rusqlite::types::Value::Integer(*i),
        Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
    });
    st.query_map(params_from_iter(params), |r| {
        Ok(Stored {
            id: r.get(0)?,
            seq: r.get(1)?,
            entry: entry(r)?,
        })
    })?
    .collect()
}

pub(super) fn prune(
    tx: &Transaction<'_>,
    tenant: TenantId,
    before_ms: i64,
    key: &CheckpointKey,
    at_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    // The longest prefix of sealed entries all recorded before the cut.
    let first_kept: Option<i64> = tx.query_row(
        "SELECT min(seq) FROM audit_log WHERE seq IS NOT NULL AND recorded_ms >= ?1",
        [before_ms],
        |r| r.get(0),
    )?;
    let last: Option<(i64, Vec<u8>)> = match first_kept {
        Some(k) => tx
            .query_row(
                "SELECT seq, hash FROM audit_log WHERE seq = ?1",
                [k - 1],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
        None => tx
            .query_row(
                "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
    };
    let Some((seq, hash)) = last else {
        return Ok(None);
    };
    let done: i64 = tx.query_row(
        "SELECT coalesce(max(seq), 0) FROM audit_checkpoints",
        [],
        |r| r.get(0),
    )?;
    if seq <= done {
        return Ok(None);
    }
    let cp = key.sign(tenant, seq, hash_from(&hash), at_ms);
    tx.execute(
        "INSERT INTO audit_checkpoints (seq, hash, at_ms, key_id, signature) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            cp.seq,
            cp.hash.as_slice(),
            cp.at_ms,
            cp.key_id,
            cp.signature
        ],
    )?;
    tx.execute("DELETE FROM audit_log WHERE seq <= ?1", [seq])?;
    Ok(Some(seq))
}
