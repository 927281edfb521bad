//! Budgets and alerts on the PostgreSQL catalog (see [`crate::budgets`]). Due deliveries
//! are claimed with `FOR UPDATE SKIP LOCKED`, so replicas share the work without sending an
//! attempt twice.

use async_trait::async_trait;
use tenantplane_core::TenantId;
use tokio_postgres::{Row, types::Json};
use uuid::Uuid;

use crate::{
    PgCatalog, Result,
    budgets::{AlertRow, Attempt, BudgetStore, DeliveryRow, StoredBudget},
    postgres::db_err,
};

const ALERT_COLUMNS: &str = "id, budget_id, tenant_id, period_start, kind, threshold, created_at, \
     payload, delivered_at, attempts, next_attempt_at, last_error";

fn alert(r: &Row) -> AlertRow {
    AlertRow {
        id: r.get(0),
        budget: r.get(1),
        tenant: TenantId::from_uuid(r.get(2)),
        period_start: r.get(3),
        kind: r.get(4),
        threshold: r.get(5),
        created_at: r.get(6),
        payload: r.get::<_, Json<serde_json::Value>>(7).0,
        delivered_at: r.get(8),
        attempts: r.get(9),
        next_attempt_at: r.get(10),
        last_error: r.get(11),
    }
}

#[async_trait]
impl BudgetStore for PgCatalog {
    async fn put_budget(&self, b: &StoredBudget) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO budgets (id, created_at, doc) VALUES ($1, $2, $3)",
            &[&b.id, &b.created_at, &Json(&b.doc)],
        )
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn budgets(&self) -> Result<Vec<StoredBudget>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, created_at, doc FROM budgets ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| StoredBudget {
                id: r.get(0),
                created_at: r.get(1),
                doc: r.get::<_, Json<serde_json::Value>>(2).0,
            })
            .collect())
    }

    async fn delete_budget(&self, id: Uuid) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM budgets WHERE id = $1", &[&id])
            .await
            .map_err(db_err)?
            == 1)
    }

    async fn insert_alert(&self, a: &AlertRow) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute(
            "INSERT INTO budget_alerts (id, budget_id, tenant_id, period_start, kind, threshold, \
             created_at, payload, delivered_at, attempts, next_attempt_at, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 0, $9, NULL) ON CONFLICT DO NOTHING",
            &[
                &a.id,
                &a.budget,
                a.tenant.as_uuid(),
                &a.period_start,
                &a.kind,
                &a.threshold,
                &a.created_at,
                &Json(&a.payload),
                &a.next_attempt_at,
            ],
        )
        .await
        .map_err(db_err)?
            == 1)
    }

    async fn alerts(
        &self,
        tenant: Option<TenantId>,
        budget: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AlertRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM budget_alerts \
                     WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::uuid IS NULL OR budget_id = $2) \
                     ORDER BY created_at DESC, id LIMIT $3"
                ),
                &[&tenant.map(|t| *t.as_uuid()), &budget, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(alert).collect())
    }

    async fn claim_due(&self, now: i64, lease: i64, limit: usize) -> Result<Vec<AlertRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE budget_alerts SET next_attempt_at = $2 WHERE id IN \
                     (SELECT id FROM budget_alerts WHERE next_attempt_at <= $1 \
                      ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     RETURNING {ALERT_COLUMNS}"
                ),
                &[&now, &(now + lease), &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(alert).collect())
    }

    async fn record_attempt(&self, id: Uuid, a: &Attempt) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO alert_deliveries (alert_id, attempt, at, status, error) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&id, &a.attempt, &a.at, &a.status, &a.error],
        )
        .await
        .map_err(db_err)?;
        tx.execute(
            "UPDATE budget_alerts SET attempts = greatest(attempts, $2), \
             delivered_at = CASE WHEN $3 THEN $4 ELSE delivered_at END, \
             next_attempt_at = $5, last_error = $6 WHERE id = $1",
            &[
                &id,
                &a.attempt,
                &a.delivered,
                &a.at,
                &a.next_attempt_at,
                &a.error,
            ],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn deliveries(&self, alert: Uuid) -> Result<Vec<DeliveryRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT attempt, at, status, error FROM alert_deliveries \
                 WHERE alert_id = $1 ORDER BY attempt",
                &[&alert],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRow {
                attempt: r.get(0),
                at: r.get(1),
                status: r.get(2),
                error: r.get(3),
            })
            .collect())
    }
}
