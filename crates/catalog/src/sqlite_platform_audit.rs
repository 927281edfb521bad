//! The platform audit log on the embedded catalog (see [`crate::platform_audit`]).

use async_trait::async_trait;
use rusqlite::{OptionalExtension as _, Row, TransactionBehavior, params, params_from_iter};
use tenantplane_audit::{
    Category, Entry,
    chain::{hash_from, link, platform_genesis},
};

use crate::{
    CatalogError, Result, SqliteCatalog,
    platform_audit::{COLUMNS, PlatformAuditQuery, PlatformAuditStore, PlatformEntry, Val, filter},
    sqlite::internal,
};

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Entry, Vec<u8>, String)> {
    let cat: String = r.get(2)?;
    Ok((
        r.get(0)?,
        Entry {
            recorded_ms: r.get(1)?,
            category: Category::parse(&cat).unwrap_or(Category::Operator),
            action: r.get(3)?,
            code: r.get(4)?,
            outcome: r.get(5)?,
            agent: r.get(6)?,
            entity: r.get(7)?,
            peer: r.get(8)?,
            request_id: r.get(9)?,
            detail: r.get(10)?,
        },
        r.get(11)?,
        cat,
    ))
}

fn entries(rows: Vec<(i64, Entry, Vec<u8>, String)>) -> Vec<PlatformEntry> {
    rows.into_iter()
        .map(|(seq, entry, hash, _)| PlatformEntry { seq, entry, hash })
        .collect()
}

#[async_trait]
impl PlatformAuditStore for SqliteCatalog {
    async fn append_platform_audit(&self, e: &Entry) -> Result<i64> {
        let e = e.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let head: Option<(i64, Vec<u8>)> = tx
                .query_row("SELECT seq, hash FROM platform_audit_head", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(internal)?;
            let (seq, prev) = head.unwrap_or((0, platform_genesis().to_vec()));
            let p = hash_from(&prev);
            let seq = seq + 1;
            let h = link(&p, seq, &e);
            tx.execute(
                "INSERT INTO platform_audit (seq, recorded_ms, category, action, code, outcome, \
                 agent, entity, peer, request_id, detail, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    seq,
                    e.recorded_ms,
                    e.category.as_str(),
                    e.action,
                    e.code,
                    e.outcome,
                    e.agent,
                    e.entity,
                    e.peer,
                    e.request_id,
                    e.detail,
                    h.as_slice()
                ],
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO platform_audit_head (one, seq, hash) VALUES (1, ?1, ?2) \
                 ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                params![seq, h.as_slice()],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(seq)
        })
        .await
    }

    async fn platform_audit(&self, q: &PlatformAuditQuery) -> Result<Vec<PlatformEntry>> {
        let (clause, vals) = filter(q, |n| format!("?{n}"));
        let sql = format!(
            "SELECT {COLUMNS} FROM platform_audit {clause} ORDER BY seq DESC LIMIT {}",
            q.limit
        );
        self.with(move |c| {
            let mut st = c.prepare_cached(&sql).map_err(internal)?;
            let params = vals.iter().map(|v| match v {
                Val::Int(i) => rusqlite::types::Value::Integer(*i),
                Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
            });
            let rows = st
                .query_map(params_from_iter(params), row)
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            Ok(entries(rows))
        })
        .await
    }

    async fn platform_audit_after(&self, seq: i64, limit: i64) -> Result<Vec<PlatformEntry>> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM platform_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))
                .map_err(internal)?;
            let rows = st
                .query_map([seq, limit], row)
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            Ok(entries(rows))
        })
        .await
    }

    async fn platform_audit_head(&self) -> Result<Option<(i64, Vec<u8>)>> {
        self.with(|c| {
            c.query_row("SELECT seq, hash FROM platform_audit_head", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| CatalogError::Internal(e.to_string()))
        })
        .await
    }
}
