//! The usage ledger on the embedded catalog (see [`crate::usage`]). Writes run in
//! `IMMEDIATE` transactions, so an offline command on the same file waits instead of
//! failing half-way.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use tenantplane_core::TenantId;

use crate::{
    CatalogError, Result, SqliteCatalog,
    sqlite::internal,
    usage::{
        EventsOutcome, GaugeRow, HOUR, MINUTE, MeterEvent, StoredPrices, UsageQuery, UsageRow,
        UsageStore, UsageSum, merged,
    },
};

fn tenant_of(s: &str) -> Result<TenantId> {
    s.parse()
        .map_err(|_| CatalogError::Internal(format!("bad tenant id in the ledger: {s}")))
}

fn add_rows(tx: &rusqlite::Transaction<'_>, rows: &[UsageRow]) -> Result<()> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO usage_ledger (tenant_id, bucket, span, meter, value) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, bucket, span, meter) \
             DO UPDATE SET value = value + excluded.value",
        )
        .map_err(internal)?;
    for r in rows {
        st.execute(params![
            r.tenant.to_string(),
            r.bucket,
            r.span,
            r.meter,
            r.value
        ])
        .map_err(internal)?;
    }
    Ok(())
}

#[async_trait]
impl UsageStore for SqliteCatalog {
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<()> {
        let rows = merged(rows);
        if rows.is_empty() {
            return Ok(());
        }
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            add_rows(&tx, &rows)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn record_events(
        &self,
        events: &[MeterEvent],
        received_at: i64,
    ) -> Result<EventsOutcome> {
        let events = events.to_vec();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let mut fresh = Vec::with_capacity(events.len());
            let mut reused = Vec::new();
            let mut rows = Vec::new();
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO usage_events (tenant_id, key, received_at, digest) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    )
                    .map_err(internal)?;
                let mut get = tx
                    .prepare_cached(
                        "SELECT digest FROM usage_events WHERE tenant_id = ?1 AND key = ?2",
                    )
                    .map_err(internal)?;
                for e in &events {
                    let id = e.row.tenant.to_string();
                    let n = ins
                        .execute(params![id, e.key, received_at, &e.digest[..]])
                        .map_err(internal)?;
                    if n == 1 {
                        fresh.push(true);
                        rows.push(e.row.clone());
                        continue;
                    }
                    fresh.push(false);
                    let had: Option<Vec<u8>> = get
                        .query_row(params![id, e.key], |r| r.get(0))
                        .optional()
                        .map_err(internal)?;
                    if had.as_deref() != Some(&e.digest[..]) {
                        reused.push(e.key.clone());
                    }
                }
            }
            if !reused.is_empty() {
                // Dropping the transaction rolls it back: nothing of the batch is kept.
                return Ok(EventsOutcome::KeyReused(reused));
            }
            add_rows(&tx, &merged(&rows))?;
            tx.commit().map_err(internal)?;
            Ok(EventsOutcome::Recorded(fresh))
        })
        .await
    }

    async fn prune_events(&self, before: i64) -> Result<u64> {
        self.with(move |c| {
            c.execute("DELETE FROM usage_events WHERE received_at < ?1", [before])
                .map(|n| n as u64)
                .map_err(internal)
        })
        .await
    }

    async fn roll_up(&self, before: i64) -> Result<u64> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            tx.execute(
                "INSERT INTO usage_ledger (tenant_id, bucket, span, meter, value) \
                 SELECT tenant_id, bucket - (bucket % ?1), ?1, meter, sum(value) \
                 FROM usage_ledger WHERE span = ?2 AND bucket < ?3 \
                 GROUP BY tenant_id, bucket - (bucket % ?1), meter \
                 ORDER BY 1, 2, 4 \
                 ON CONFLICT (tenant_id, bucket, span, meter) \
                 DO UPDATE SET value = value + excluded.value",
                params![HOUR, MINUTE, before],
            )
            .map_err(internal)?;
            let moved = tx
                .execute(
                    "DELETE FROM usage_ledger WHERE span = ?1 AND bucket < ?2",
                    params![MINUTE, before],
                )
                .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(moved as u64)
        })
        .await
    }

    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageSum>> {
        let q = q.clone();
        self.with(move |c| {
            // Two statements, so one tenant's query uses the primary key.
            let sql = if q.tenant.is_some() {
                "SELECT tenant_id, ?1 + ((bucket - ?1) / ?3) * ?3 AS s, meter, sum(value) \
                 FROM usage_ledger WHERE tenant_id = ?4 AND bucket >= ?1 AND bucket < ?2 \
                 GROUP BY tenant_id, s, meter ORDER BY tenant_id, s, meter"
            } else {
                "SELECT tenant_id, ?1 + ((bucket - ?1) / ?3) * ?3 AS s, meter, sum(value) \
                 FROM usage_ledger WHERE bucket >= ?1 AND bucket < ?2 AND ?4 IS NULL \
                 GROUP BY tenant_id, s, meter ORDER BY tenant_id, s, meter"
            };
            let mut st = c.prepare_cached(sql).map_err(internal)?;
            let tenant = q.tenant.map(|t| t.to_string());
            let rows = st
                .query_map(params![q.from, q.to, q.step.max(1), tenant], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(internal)?;
            let mut out = Vec::new();
            for r in rows {
                let (t, step_start, meter, value) = r.map_err(internal)?;
                out.push(UsageSum {
                    tenant: tenant_of(&t)?,
                    step_start,
                    meter,
                    value,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn set_gauges(&self, rows: &[GaugeRow]) -> Result<()> {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| (a.tenant, a.hour, &a.measure).cmp(&(b.tenant, b.hour, &b.measure)));
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO usage_gauges (tenant_id, hour, measure, value) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id, hour, measure) \
                         DO UPDATE SET value = excluded.value",
                    )
                    .map_err(internal)?;
                for r in &rows {
                    st.execute(params![r.tenant.to_string(), r.hour, r.measure, r.value])
                        .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn gauges(&self, from: i64, to: i64, tenant: Option<TenantId>) -> Result<Vec<GaugeRow>> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT tenant_id, hour, measure, value FROM usage_gauges \
                     WHERE hour >= ?1 AND hour < ?2 AND (?3 IS NULL OR tenant_id = ?3) \
                     ORDER BY tenant_id, hour, measure",
                )
                .map_err(internal)?;
            let rows = st
                .query_map(params![from, to, tenant.map(|t| t.to_string())], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(internal)?;
            let mut out = Vec::new();
            for r in rows {
                let (t, hour, measure, value) = r.map_err(internal)?;
                out.push(GaugeRow {
                    tenant: tenant_of(&t)?,
                    hour,
                    measure,
                    value,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn prices(&self) -> Result<Option<StoredPrices>> {
        self.with(|c| {
            let row: Option<(i64, String)> = c
                .query_row(
                    "SELECT version, doc FROM price_sheet WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(internal)?;
            row.map(|(version, doc)| {
                Ok(StoredPrices {
                    doc: crate::decode(&doc)?,
                    version: version.max(0) as u64,
                })
            })
            .transpose()
        })
        .await
    }

    async fn put_prices(&self, doc: &serde_json::Value, expected: u64) -> Result<u64> {
        let doc = crate::encode(doc)?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let current: Option<i64> = tx
                .query_row("SELECT version FROM price_sheet WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(internal)?;
            let current = current.unwrap_or(0).max(0) as u64;
            if current != expected {
                return Err(CatalogError::VersionMismatch { current });
            }
            let next = current + 1;
            tx.execute(
                "INSERT INTO price_sheet (id, version, doc) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
                params![next as i64, doc],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(next)
        })
        .await
    }
}
