//! The usage ledger on the PostgreSQL catalog (see [`crate::usage`]). Counters are added
//! with one multi-row `unnest` upsert per flush; the roll-up deletes the minute rows and
//! adds their sums to the hours in one statement, so two replicas rolling up at once move
//! each row once.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use tenantplane_core::TenantId;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::{
    CatalogError, PgCatalog, Result,
    postgres::db_err,
    usage::{
        EventsOutcome, GaugeRow, HOUR, MINUTE, MeterEvent, StoredPrices, UsageQuery, UsageRow,
        UsageStore, UsageSum, merged,
    },
};

const ADD_ROWS: &str = "INSERT INTO usage_ledger (tenant_id, bucket, span, meter, value) \
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::bigint[]) \
    ON CONFLICT (tenant_id, bucket, span, meter) \
    DO UPDATE SET value = usage_ledger.value + excluded.value";

type Columns = (Vec<Uuid>, Vec<i64>, Vec<i32>, Vec<String>, Vec<i64>);

fn columns(rows: &[UsageRow]) -> Result<Columns> {
    let mut c: Columns = Default::default();
    for r in rows {
        c.0.push(*r.tenant.as_uuid());
        c.1.push(r.bucket);
        c.2.push(
            i32::try_from(r.span)
                .map_err(|_| CatalogError::Internal(format!("span {}", r.span)))?,
        );
        c.3.push(r.meter.clone());
        c.4.push(r.value);
    }
    Ok(c)
}

async fn add_rows(c: &impl deadpool_postgres::GenericClient, rows: &[UsageRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let (t, b, s, m, v) = columns(rows)?;
    c.execute(ADD_ROWS, &[&t, &b, &s, &m, &v])
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl UsageStore for PgCatalog {
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<()> {
        let rows = merged(rows);
        let c = self.client().await?;
        add_rows(&c, &rows).await
    }

    async fn record_events(
        &self,
        events: &[MeterEvent],
        received_at: i64,
    ) -> Result<EventsOutcome> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let tenants: Vec<Uuid> = events.iter().map(|e| *e.row.tenant.as_uuid()).collect();
        let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        let digests: Vec<&[u8]> = events.iter().map(|e| &e.digest[..]).collect();
        // New keys are inserted; a key another transaction is inserting waits for it.
        let inserted = tx
            .query(
                "INSERT INTO usage_events (tenant_id, key, received_at, digest) \
                 SELECT t, k, $1, d FROM unnest($2::uuid[], $3::text[], $4::bytea[]) AS e(t, k, d) \
                 ON CONFLICT DO NOTHING RETURNING tenant_id, key",
                &[&received_at, &tenants, &keys, &digests],
            )
            .await
            .map_err(db_err)?;
        let fresh_keys: HashSet<(Uuid, String)> = inserted
            .iter()
            .map(|r| (r.get::<_, Uuid>(0), r.get::<_, String>(1)))
            .collect();
        let is_fresh =
            |e: &MeterEvent| fresh_keys.contains(&(*e.row.tenant.as_uuid(), e.key.clone()));
        let old: Vec<&MeterEvent> = events.iter().filter(|e| !is_fresh(e)).collect();
        let mut reused = Vec::new();
        if !old.is_empty() {
            let ot: Vec<Uuid> = old.iter().map(|e| *e.row.tenant.as_uuid()).collect();
            let ok: Vec<&str> = old.iter().map(|e| e.key.as_str()).collect();
            let had = tx
                .query(
                    "SELECT u.tenant_id, u.key, u.digest FROM usage_events u \
                     JOIN unnest($1::uuid[], $2::text[]) AS e(t, k) ON u.tenant_id = e.t AND u.key = e.k",
                    &[&ot, &ok],
                )
                .await
                .map_err(db_err)?;
            let had: HashMap<(Uuid, String), Vec<u8>> = had
                .iter()
                .map(|r| {
                    (
                        (r.get::<_, Uuid>(0), r.get::<_, String>(1)),
                        r.get::<_, Vec<u8>>(2),
                    )
                })
                .collect();
            for e in old {
                let k = (*e.row.tenant.as_uuid(), e.key.clone());
                if had.get(&k).map(Vec::as_slice) != Some(&e.digest[..]) {
                    reused.push(e.key.clone());
                }
            }
        }
        // Within the batch: a key sent twice counts once, and only with the same content.
        let mut seen: HashMap<(Uuid, &str), &[u8; 32]> = HashMap::new();
        let mut fresh = Vec::with_capacity(events.len());
        let mut rows = Vec::new();
        for e in events {
            let new = match seen.entry((*e.row.tenant.as_uuid(), e.key.as_str())) {
                std::collections::hash_map::Entry::Occupied(o) => {
                    if *o.get() != &e.digest && !reused.contains(&e.key) {
                        reused.push(e.key.clone());
                    }
                    false
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(&e.digest);
                    is_fresh(e)
                }
            };
            fresh.push(new);
            if new {
                rows.push(e.row.clone());
            }
        }
        if !reused.is_empty() {
            tx.rollback().await.map_err(db_err)?;
            return Ok(EventsOutcome::KeyReused(reused));
        }
        add_rows(&tx, &merged(&rows)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(EventsOutcome::Recorded(fresh))
    }

    async fn prune_events(&self, before: i64) -> Result<u64> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM usage_events WHERE received_at < $1",
            &[&before],
        )
        .await
        .map_err(db_err)
    }

    async fn roll_up(&self, before: i64) -> Result<u64> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "WITH moved AS (DELETE FROM usage_ledger WHERE span = $2 AND bucket < $3 \
                   RETURNING tenant_id, bucket, meter, value), \
                 summed AS (SELECT tenant_id, bucket - (bucket % $1) AS hour, meter, \
                   sum(value)::bigint AS value FROM moved GROUP BY 1, 2, 3), \
                 added AS (INSERT INTO usage_ledger (tenant_id, bucket, span, meter, value) \
                   SELECT tenant_id, hour, $4::int, meter, value FROM summed \
                   ORDER BY 1, 2, 3 \
                   ON CONFLICT (tenant_id, bucket, span, meter) \
                   DO UPDATE SET value = usage_ledger.value + excluded.value RETURNING 1) \
                 SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM added)",
                &[&HOUR, &(MINUTE as i32), &before, &(HOUR as i32)],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageSum>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT tenant_id, $1 + ((bucket - $1) / $3) * $3 AS s, meter, \
                 sum(value)::bigint FROM usage_ledger \
                 WHERE bucket >= $1 AND bucket < $2 \
                 AND ($4::uuid IS NULL OR tenant_id = $4) \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                &[
                    &q.from,
                    &q.to,
                    &q.step.max(1),
                    &q.tenant.map(|t| *t.as_uuid()),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| UsageSum {
                tenant: TenantId::from_uuid(r.get(0)),
                step_start: r.get(1),
                meter: r.get(2),
                value: r.get(3),
            })
            .collect())
    }

    async fn set_gauges(&self, rows: &[GaugeRow]) -> Result<()> {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| (a.tenant, a.hour, &a.measure).cmp(&(b.tenant, b.hour, &b.measure)));
        rows.dedup_by(|a, b| (a.tenant, a.hour, &a.measure) == (b.tenant, b.hour, &b.measure));
        if rows.is_empty() {
            return Ok(());
        }
        let t: Vec<Uuid> = rows.iter().map(|r| *r.tenant.as_uuid()).collect();
        let h: Vec<i64> = rows.iter().map(|r| r.hour).collect();
        let m: Vec<&str> = rows.iter().map(|r| r.measure.as_str()).collect();
        let v: Vec<i64> = rows.iter().map(|r| r.value).collect();
        let c = self.client().await?;
        c.execute(
            "INSERT INTO usage_gauges (tenant_id, hour, measure, value) \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[]) \
             ON CONFLICT (tenant_id, hour, measure) DO UPDATE SET value = excluded.value",
            &[&t, &h, &m, &v],
        )
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn gauges(&self, from: i64, to: i64, tenant: Option<TenantId>) -> Result<Vec<GaugeRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT tenant_id, hour, measure, value FROM usage_gauges \
                 WHERE hour >= $1 AND hour < $2 AND ($3::uuid IS NULL OR tenant_id = $3) \
                 ORDER BY 1, 2, 3",
                &[&from, &to, &tenant.map(|t| *t.as_uuid())],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| GaugeRow {
                tenant: TenantId::from_uuid(r.get(0)),
                hour: r.get(1),
                measure: r.get(2),
                value: r.get(3),
            })
            .collect())
    }

    async fn prices(&self) -> Result<Option<StoredPrices>> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT version, doc FROM price_sheet WHERE id = 1", &[])
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| StoredPrices {
            version: r.get::<_, i64>(0).max(0) as u64,
            doc: r.get::<_, Json<serde_json::Value>>(1).0,
        }))
    }

    async fn put_prices(&self, doc: &serde_json::Value, expected: u64) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let current = tx
            .query_opt(
                "SELECT version FROM price_sheet WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(db_err)?
            .map(|r| r.get::<_, i64>(0).max(0) as u64)
            .unwrap_or(0);
        if current != expected {
            return Err(CatalogError::VersionMismatch { current });
        }
        let next = current + 1;
        let n = tx
            .execute(
                "INSERT INTO price_sheet (id, version, doc) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, doc = excluded.doc \
                 WHERE price_sheet.version = $3",
                &[&(next as i64), &Json(doc), &(current as i64)],
            )
            .await
            .map_err(db_err)?;
        if n != 1 {
            return Err(CatalogError::VersionMismatch { current });
        }
        tx.commit().await.map_err(db_err)?;
        Ok(next)
    }
}
