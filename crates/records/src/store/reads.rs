//! Reads of the resource store: the current version, one version, the history, and the
//! tenant's usage counters.
//!
//! The current version lives in `fhir_resources` only; `fhir_history` holds the versions it
//! superseded (since records/5 — a version kept in both by an older binary, whose copy the
//! migration could not remove, is read once: the history part stops below the current
//! version).

use tokio_postgres::types::Type;

use super::{Row, Usage, Version, at_ms};
use crate::{Result, TenantDb, resource::ResourceType};

fn to_version(rtype: ResourceType, id: &str, (v, ms, deleted, doc): Row) -> Version {
    Version {
        rtype,
        id: id.to_owned(),
        version: v.max(0) as u64,
        last_updated: at_ms(ms),
        deleted,
        doc,
    }
}

/// The current version (a deleted resource comes back with `deleted` and no body).
pub async fn read(db: TenantDb<'_>, rtype: ResourceType, id: &str) -> Result<Option<Version>> {
    rows(
        db,
        rtype,
        id,
        "SELECT version, last_updated, deleted, doc FROM fhir_resources WHERE type = ?1 AND id = ?2",
        "SELECT version, last_updated, deleted, doc FROM fhir_resources WHERE type = $1 AND id = $2",
        None,
    )
    .await
    .map(|mut v| v.pop())
}

/// One version.
pub async fn vread(
    db: TenantDb<'_>,
    rtype: ResourceType,
    id: &str,
    version: u64,
) -> Result<Option<Version>> {
    rows(
        db,
        rtype,
        id,
        "SELECT version, last_updated, deleted, doc FROM fhir_resources \
         WHERE type = ?1 AND id = ?2 AND version = ?3 \
         UNION ALL SELECT version, last_updated, deleted, doc FROM fhir_history \
         WHERE type = ?1 AND id = ?2 AND version = ?3 LIMIT 1",
        "SELECT version, last_updated, deleted, doc FROM fhir_resources \
         WHERE type = $1 AND id = $2 AND version = $3 \
         UNION ALL SELECT version, last_updated, deleted, doc FROM fhir_history \
         WHERE type = $1 AND id = $2 AND version = $3 LIMIT 1",
        Some(i64::try_from(version).unwrap_or(i64::MAX)),
    )
    .await
    .map(|mut v| v.pop())
}

/// Every version, newest first, at most `limit`.
pub async fn history(
    db: TenantDb<'_>,
    rtype: ResourceType,
    id: &str,
    limit: u64,
) -> Result<Vec<Version>> {
    rows(
        db,
        rtype,
        id,
        "SELECT version, last_updated, deleted, doc FROM fhir_resources WHERE type = ?1 AND id = ?2 \
         UNION ALL SELECT h.version, h.last_updated, h.deleted, h.doc FROM fhir_history h \
         WHERE h.type = ?1 AND h.id = ?2 AND h.version < (SELECT version FROM fhir_resources \
         WHERE type = ?1 AND id = ?2) ORDER BY 1 DESC LIMIT ?3",
        "SELECT version, last_updated, deleted, doc FROM fhir_resources WHERE type = $1 AND id = $2 \
         UNION ALL SELECT h.version, h.last_updated, h.deleted, h.doc FROM fhir_history h \
         WHERE h.type = $1 AND h.id = $2 AND h.version < (SELECT version FROM fhir_resources \
         WHERE type = $1 AND id = $2) ORDER BY 1 DESC LIMIT $3",
        Some(i64::try_from(limit).unwrap_or(i64::MAX)),
    )
    .await
}

async fn rows(
    db: TenantDb<'_>,
    rtype: ResourceType,
    id: &str,
    sqlite: &'static str,
    pg: &'static str,
    arg: Option<i64>,
) -> Result<Vec<Version>> {
    let t = rtype.as_str();
    let idc = id.to_owned();
    let rows: Vec<Row> = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut st = c.prepare_cached(sqlite)?;
                let map = |r: &rusqlite::Row<'_>| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)? != 0,
                        r.get::<_, Option<String>>(3)?,
                    ))
                };
                let out = match arg {
                    Some(a) => st
                        .query_map((t, &idc, a), map)?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                    None => st
                        .query_map((t, &idc), map)?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                };
                Ok(out)
            })
            .await?
        }
        TenantDb::Pg(p) => {
            // The context and the query in one message and one implicit transaction.
            use tenantplane_tenant_data::literal::TextRow;
            let rs = match arg {
                Some(a) => {
                    p.query_text_once(
                        pg,
                        &[(&t, Type::TEXT), (&idc, Type::TEXT), (&a, Type::INT8)],
                    )
                    .await?
                }
                None => {
                    p.query_text_once(pg, &[(&t, Type::TEXT), (&idc, Type::TEXT)])
                        .await?
                }
            };
            rs.iter()
                .map(|r| Ok((r.int(0)?, r.int(1)?, r.flag(2)?, r.text(3))))
                .collect::<Result<Vec<_>>>()?
        }
    };
    Ok(rows.into_iter().map(|r| to_version(rtype, id, r)).collect())
}

/// Resources not deleted (every type).
pub async fn resource_count(db: TenantDb<'_>) -> Result<u64> {
    let n: i64 = match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| {
                c.query_row(
                    "SELECT count(*) FROM fhir_resources WHERE deleted = 0",
                    [],
                    |r| r.get(0),
                )
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_one("SELECT count(*) FROM fhir_resources WHERE NOT deleted", &[])
                        .await?
                        .get::<_, i64>(0))
                })
            })
            .await?
        }
    };
    Ok(n.max(0) as u64)
}

/// Bytes of the record versions (current and superseded) last written before
/// `before_ms`: what a lifecycle rule would move to a colder storage class. Reads every
/// version's length, so it is sampled rarely (once a day).
pub async fn cold_bytes(db: TenantDb<'_>, before_ms: i64) -> Result<u64> {
    let n: i64 = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                c.query_row(
                    "SELECT (SELECT coalesce(sum(length(CAST(doc AS BLOB))), 0) FROM fhir_resources \
                     WHERE last_updated < ?1) + (SELECT coalesce(sum(length(CAST(doc AS BLOB))), 0) \
                     FROM fhir_history WHERE last_updated < ?1)",
                    [before_ms],
                    |r| r.get(0),
                )
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_one(
                            "SELECT ((SELECT coalesce(sum(octet_length(doc)), 0) FROM fhir_resources \
                             WHERE last_updated < $1) + (SELECT coalesce(sum(octet_length(doc)), 0) \
                             FROM fhir_history WHERE last_updated < $1))::bigint",
                            &[&before_ms],
                        )
                        .await?
                        .get::<_, i64>(0))
                })
            })
            .await?
        }
    };
    Ok(n.max(0) as u64)
}

/// What the tenant uses.
pub async fn usage(db: TenantDb<'_>) -> Result<Usage> {
    let pairs: Vec<(String, i64)> = match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| {
                let mut st = c.prepare_cached("SELECT key, value FROM fhir_usage")?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .query("SELECT key, value FROM fhir_usage", &[])
                        .await?
                        .iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                        .collect())
                })
            })
            .await?
        }
    };
    let mut u = Usage::default();
    for (k, v) in pairs {
        match k.as_str() {
            "patients" => u.patients = v.max(0) as u64,
            "bytes" => u.bytes = v.max(0) as u64,
            _ => {}
        }
    }
    Ok(u)
}
