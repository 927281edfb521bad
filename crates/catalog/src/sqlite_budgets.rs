//! Budgets and alerts on the embedded catalog (see [`crate::budgets`]).

use async_trait::async_trait;
use rusqlite::{Row, TransactionBehavior, params};
use tenantplane_core::TenantId;
use uuid::Uuid;

use crate::{
    CatalogError, Result, SqliteCatalog,
    budgets::{AlertRow, Attempt, BudgetStore, DeliveryRow, StoredBudget},
    sqlite::internal,
};

const ALERT_COLUMNS: &str = "id, budget_id, tenant_id, period_start, kind, threshold, created_at, \
     payload, delivered_at, attempts, next_attempt_at, last_error";

fn uuid(s: &str) -> Result<Uuid> {
    s.parse()
        .map_err(|_| CatalogError::Internal(format!("bad id in the catalog: {s}")))
}

type RawAlert = (
    String,
    String,
    String,
    i64,
    String,
    i32,
    i64,
    String,
    Option<i64>,
    i32,
    Option<i64>,
    Option<String>,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawAlert> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

fn alert(x: RawAlert) -> Result<AlertRow> {
    Ok(AlertRow {
        id: uuid(&x.0)?,
        budget: uuid(&x.1)?,
        tenant: TenantId::from_uuid(uuid(&x.2)?),
        period_start: x.3,
        kind: x.4,
        threshold: x.5,
        created_at: x.6,
        payload: crate::decode(&x.7)?,
        delivered_at: x.8,
        attempts: x.9,
        next_attempt_at: x.10,
        last_error: x.11,
    })
}

#[async_trait]
impl BudgetStore for SqliteCatalog {
    async fn put_budget(&self, b: &StoredBudget) -> Result<()> {
        let (id, at, doc) = (b.id.to_string(), b.created_at, crate::encode(&b.doc)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO budgets (id, created_at, doc) VALUES (?1, ?2, ?3)",
                params![id, at, doc],
            )
            .map(|_| ())
            .map_err(internal)
        })
        .await
    }

    async fn budgets(&self) -> Result<Vec<StoredBudget>> {
        self.with(|c| {
            let mut st = c
                .prepare_cached("SELECT id, created_at, doc FROM budgets ORDER BY created_at, id")
                .map_err(internal)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(internal)?;
            let mut out = Vec::new();
            for r in rows {
                let (id, created_at, doc) = r.map_err(internal)?;
                out.push(StoredBudget {
                    id: uuid(&id)?,
                    created_at,
                    doc: crate::decode(&doc)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn delete_budget(&self, id: Uuid) -> Result<bool> {
        self.with(move |c| {
            c.execute("DELETE FROM budgets WHERE id = ?1", [id.to_string()])
                .map(|n| n == 1)
                .map_err(internal)
        })
        .await
    }

    async fn insert_alert(&self, a: &AlertRow) -> Result<bool> {
        let a = a.clone();
        let payload = crate::encode(&a.payload)?;
        self.with(move |c| {
            c.execute(
                "INSERT INTO budget_alerts (id, budget_id, tenant_id, period_start, kind, threshold, \
                 created_at, payload, delivered_at, attempts, next_attempt_at, last_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, 0, ?9, NULL) ON CONFLICT DO NOTHING",
                params![
                    a.id.to_string(),
                    a.budget.to_string(),
                    a.tenant.to_string(),
                    a.period_start,
                    a.kind,
                    a.threshold,
                    a.created_at,
                    payload,
                    a.next_attempt_at
                ],
            )
            .map(|n| n == 1)
            .map_err(internal)
        })
        .await
    }

    async fn alerts(
        &self,
        tenant: Option<TenantId>,
        budget: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AlertRow>> {
        self.with(move |c| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM budget_alerts \
                 WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR budget_id = ?2) \
                 ORDER BY created_at DESC, id LIMIT ?3"
            );
            let mut st = c.prepare_cached(&sql).map_err(internal)?;
            let rows = st
                .query_map(
                    params![
                        tenant.map(|t| t.to_string()),
                        budget.map(|b| b.to_string()),
                        limit as i64
                    ],
                    raw,
                )
                .map_err(internal)?;
            rows.map(|r| alert(r.map_err(internal)?)).collect()
        })
        .await
    }

    async fn claim_due(&self, now: i64, lease: i64, limit: usize) -> Result<Vec<AlertRow>> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let claimed = {
                let sql = format!(
                    "UPDATE budget_alerts SET next_attempt_at = ?2 WHERE id IN \
                     (SELECT id FROM budget_alerts WHERE next_attempt_at <= ?1 \
                      ORDER BY next_attempt_at LIMIT ?3) RETURNING {ALERT_COLUMNS}"
                );
                let mut st = tx.prepare(&sql).map_err(internal)?;
                let rows = st
                    .query_map(params![now, now + lease, limit as i64], raw)
                    .map_err(internal)?;
                rows.map(|r| alert(r.map_err(internal)?))
                    .collect::<Result<Vec<_>>>()?
            };
            tx.commit().map_err(internal)?;
            Ok(claimed)
        })
        .await
    }

    async fn record_attempt(&self, id: Uuid, a: &Attempt) -> Result<()> {
        let a = a.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            tx.execute(
                "INSERT INTO alert_deliveries (alert_id, attempt, at, status, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![id.to_string(), a.attempt, a.at, a.status, a.error],
            )
            .map_err(internal)?;
            tx.execute(
                "UPDATE budget_alerts SET attempts = max(attempts, ?2), \
                 delivered_at = CASE WHEN ?3 THEN ?4 ELSE delivered_at END, \
                 next_attempt_at = ?5, last_error = ?6 WHERE id = ?1",
                params![
                    id.to_string(),
                    a.attempt,
                    a.delivered,
                    a.at,
                    a.next_attempt_at,
                    a.error
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn deliveries(&self, alert: Uuid) -> Result<Vec<DeliveryRow>> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT attempt, at, status, error FROM alert_deliveries \
                     WHERE alert_id = ?1 ORDER BY attempt",
                )
                .map_err(internal)?;
            let rows = st
                .query_map([alert.to_string()], |r| {
                    Ok(DeliveryRow {
                        attempt: r.get(0)?,
                        at: r.get(1)?,
                        status: r.get(2)?,
                        error: r.get(3)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }
}
