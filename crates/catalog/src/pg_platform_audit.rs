//! The platform audit log on a PostgreSQL catalog (see [`crate::platform_audit`]).

use async_trait::async_trait;
use tenantplane_audit::{
    Category, Entry,
    chain::{hash_from, link, platform_genesis},
};
use tokio_postgres::types::{ToSql, Type};

use crate::{
    PgCatalog, Result,
    platform_audit::{COLUMNS, PlatformAuditQuery, PlatformAuditStore, PlatformEntry, Val, filter},
    postgres::db_err,
};

/// The advisory lock that serializes appends (any constant of ours).
const APPEND_LOCK: i64 = 0x0074_7061_7564_6974;

fn entry(r: &tokio_postgres::Row) -> PlatformEntry {
    let cat: String = r.get(2);
    PlatformEntry {
        seq: r.get(0),
        entry: Entry {
            recorded_ms: r.get(1),
            category: Category::parse(&cat).unwrap_or(Category::Operator),
            action: r.get(3),
            code: r.get(4),
            outcome: u8::try_from(r.get::<_, i16>(5)).unwrap_or(u8::MAX),
            agent: r.get(6),
            entity: r.get(7),
            peer: r.get(8),
            request_id: r.get(9),
            detail: r.get(10),
        },
        hash: r.get(11),
    }
}

#[async_trait]
impl PlatformAuditStore for PgCatalog {
    async fn append_platform_audit(&self, e: &Entry) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
            .await
            .map_err(db_err)?;
        let head = tx
            .query_opt("SELECT seq, hash FROM platform_audit_head", &[])
            .await
            .map_err(db_err)?
            .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)));
        let (seq, prev) = head.unwrap_or((0, platform_genesis().to_vec()));
        let p = hash_from(&prev);
        let seq = seq + 1;
        let h = link(&p, seq, e);
        tx.execute(
            "INSERT INTO platform_audit (seq, recorded_ms, category, action, code, outcome, \
             agent, entity, peer, request_id, detail, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &seq,
                &e.recorded_ms,
                &e.category.as_str(),
                &e.action,
                &e.code,
                &i16::from(e.outcome),
                &e.agent,
                &e.entity,
                &e.peer,
                &e.request_id,
                &e.detail,
                &h.as_slice(),
            ],
        )
        .await
        .map_err(db_err)?;
        tx.execute(
            "INSERT INTO platform_audit_head (one, seq, hash) VALUES (1, $1, $2) \
             ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            &[&seq, &h.as_slice()],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(seq)
    }

    async fn platform_audit(&self, q: &PlatformAuditQuery) -> Result<Vec<PlatformEntry>> {
        let (clause, vals) = filter(q, |n| format!("${n}"));
        let sql = format!(
            "SELECT {COLUMNS} FROM platform_audit {clause} ORDER BY seq DESC LIMIT {}",
            q.limit
        );
        let params: Vec<(&(dyn ToSql + Sync), Type)> = vals
            .iter()
            .map(|v| match v {
                Val::Int(i) => (i as &(dyn ToSql + Sync), Type::INT8),
                Val::Text(s) => (s as &(dyn ToSql + Sync), Type::TEXT),
            })
            .collect();
        let c = self.client().await?;
        Ok(c.query_typed(&sql, &params)
            .await
            .map_err(db_err)?
            .iter()
            .map(entry)
            .collect())
    }

    async fn platform_audit_after(&self, seq: i64, limit: i64) -> Result<Vec<PlatformEntry>> {
        let c = self.client().await?;
        Ok(c.query(
            &format!("SELECT {COLUMNS} FROM platform_audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&seq, &limit],
        )
        .await
        .map_err(db_err)?
        .iter()
        .map(entry)
        .collect())
    }

    async fn platform_audit_head(&self) -> Result<Option<(i64, Vec<u8>)>> {
        let c = self.client().await?;
        Ok(
            c.query_opt("SELECT seq, hash FROM platform_audit_head", &[])
                .await
                .map_err(db_err)?
                .map(|r| (r.get(0), r.get(1))),
        )
    }
}
