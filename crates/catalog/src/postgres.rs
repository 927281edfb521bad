//! The PostgreSQL catalog, for deployments with several gateway replicas.
//!
//! Tenant writes take a transaction-scoped advisory lock before drawing their change
//! sequence number, so sequence numbers become visible in order and a replica polling
//! `change_seq > last` never skips a change that commits late.

use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tenantplane_core::{
    Operator, OperatorId, Plan, PlanName, Tenant, TenantId, TenantRef, TenantStatus,
    plan::builtin_plans,
};
use time::OffsetDateTime;
use tokio_postgres::{NoTls, error::SqlState, types::Json};

use crate::{
    CatalogError, CatalogStore, ChangeBatch, Conflict, Result, StandbyState, StandbyStore,
    TenantCounts, TenantPage, TenantQuery, migrations,
    standby::{placement_key, placement_of},
};

/// Lock key serialising catalog writes that draw a change sequence number.
const CHANGE_LOCK: i64 = 0x7465_6e61_6e74;
/// Lock key serialising concurrent migrations from several replicas.
const MIGRATE_LOCK: i64 = 0x7465_6e61_6e75;
/// Lock key serialising replicas adding standby stores (the pool's size holds).
const STANDBY_LOCK: i64 = 0x7465_6e61_6e76;

/// PostgreSQL-backed catalog.
#[derive(Clone)]
pub struct PgCatalog {
    pool: Pool,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCatalog").finish_non_exhaustive()
    }
}

pub(crate) fn db_err(e: tokio_postgres::Error) -> CatalogError {
    let lost = e
        .as_db_error()
        .is_some_and(|d| tenantplane_core::error::pg_connection_lost(d.code().code()));
    if e.is_closed() || e.as_db_error().is_none() || lost {
        CatalogError::Unavailable(e.to_string())
    } else {
        CatalogError::Internal(e.to_string())
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> CatalogError {
    CatalogError::Unavailable(e.to_string())
}

fn unique_constraint(e: &tokio_postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    (db.code() == &SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or("").to_owned())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgCatalog {
    /// Connects to the catalog database at `url` with a pool of `pool_size` connections.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self> {
        let cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| CatalogError::Unavailable(format!("invalid catalog url: {e}")))?;
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| CatalogError::Internal(e.to_string()))?;
        let me = Self { pool };
        me.ping().await?;
        Ok(me)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn query_docs<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<T>> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(db_err)?;
        let rows = c.query(&st, args).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                r.try_get::<_, Json<T>>(0)
                    .map(|j| j.0)
                    .map_err(|e| CatalogError::Internal(e.to_string()))
            })
            .collect()
    }
}

/// Replaces the tenant's domains (`fresh`: a new tenant, which has none yet).
async fn write_domains(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Tenant,
    fresh: bool,
) -> Result<()> {
    let id = *t.id.as_uuid();
    if !fresh {
        let st = tx
            .prepare_cached("DELETE FROM tenant_domains WHERE tenant_id = $1")
            .await
            .map_err(db_err)?;
        tx.execute(&st, &[&id]).await.map_err(db_err)?;
    }
    for d in &t.custom_domains {
        tx.execute(
            "INSERT INTO tenant_domains (name, tenant_id) VALUES ($1, $2)",
            &[&d.as_str(), &id],
        )
        .await
        .map_err(|e| match unique_constraint(&e) {
            Some(_) => CatalogError::Conflict(Conflict::Domain(d.to_string())),
            None => db_err(e),
        })?;
    }
    Ok(())
}

async fn next_seq(tx: &deadpool_postgres::Transaction<'_>) -> Result<i64> {
    let st = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1), nextval('catalog_change_seq')")
        .await
        .map_err(db_err)?;
    let row = tx.query_one(&st, &[&CHANGE_LOCK]).await.map_err(db_err)?;
    row.try_get(1).map_err(db_err)
}

/// Inserts a tenant and its domains, drawing its change sequence number.
async fn insert_tenant(tx: &deadpool_postgres::Transaction<'_>, t: &Tenant) -> Result<()> {
    let seq = next_seq(tx).await?;
    let st = tx
        .prepare_cached(
            "INSERT INTO tenants (id, slug, display_name, status, profile, plan, isolation, \
             delete_after, version, change_seq, doc, schema_version, placement) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &st,
        &[
            t.id.as_uuid(),
            &t.slug.as_str(),
            &t.display_name,
            &t.status.as_str(),
            &t.profile.as_str(),
            &t.plan.as_str(),
            &t.isolation.as_str(),
            &t.delete_after,
            &to_i64(t.version),
            &seq,
            &Json(t),
            &(t.schema_version as i32),
            &t.placement,
        ],
    )
    .await
    .map_err(|e| insert_error(e, t))?;
    write_domains(tx, t, true).await
}

/// A failed tenant insert: a slug or id taken is a conflict, the rest a database error.
fn insert_error(e: tokio_postgres::Error, t: &Tenant) -> CatalogError {
    match unique_constraint(&e) {
        Some(c) if c.contains("slug") => CatalogError::Conflict(Conflict::Slug(t.slug.to_string())),
        Some(_) => CatalogError::Conflict(Conflict::Id),
        None => db_err(e),
    }
}

/// Claims a ready standby store for `tenant` and records the tenant under the store's id,
/// as one statement (on `c`: a client, its own transaction and one round trip; or the
/// transaction that goes on to write the custom domains): the store's row deleted
/// (`FOR UPDATE SKIP LOCKED`, so concurrent claims on other replicas take other stores; the
/// row lock plus the delete hand each out once), the change sequence drawn under the change
/// lock, and the tenant inserted — its id written into the stored document as well. A slug
/// taken fails the statement: nothing is claimed.
async fn claim_standby<C: deadpool_postgres::GenericClient>(
    c: &C,
    tenant: &Tenant,
) -> Result<Option<Tenant>> {
    let st = c
        .prepare_cached(
            "WITH claimed AS (DELETE FROM standby_stores WHERE id = (SELECT id \
             FROM standby_stores WHERE isolation = $1 AND placement = $2 \
             AND state = 'ready' AND schema_version = $3 ORDER BY updated_at, id LIMIT 1 \
             FOR UPDATE SKIP LOCKED) RETURNING id), \
             seq AS (SELECT pg_advisory_xact_lock($4) AS locked, \
             nextval('catalog_change_seq') AS n FROM claimed) \
             INSERT INTO tenants (id, slug, display_name, status, profile, plan, isolation, \
             delete_after, version, change_seq, doc, schema_version, placement) \
             SELECT claimed.id, $5, $6, $7, $8, $9, $1, $10, $11, seq.n, \
             jsonb_set($12::jsonb, '{id}', to_jsonb(claimed.id::text)), $3, $13 \
             FROM claimed, seq RETURNING id",
        )
        .await
        .map_err(db_err)?;
    let row = c
        .query_opt(
            &st,
            &[
                &tenant.isolation.as_str(),
                &placement_key(&tenant.placement),
                &(tenant.schema_version as i32),
                &CHANGE_LOCK,
                &tenant.slug.as_str(),
                &tenant.display_name,
                &tenant.status.as_str(),
                &tenant.profile.as_str(),
                &tenant.plan.as_str(),
                &tenant.delete_after,
                &to_i64(tenant.version),
                &Json(tenant),
                &tenant.placement,
            ],
        )
        .await
        .map_err(|e| insert_error(e, tenant))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut t = tenant.clone();
    t.id = TenantId::from_uuid(
        row.try_get(0)
            .map_err(|e| CatalogError::Internal(e.to_string()))?,
    );
    Ok(Some(t))
}

fn standby_row(r: &tokio_postgres::Row) -> Result<StandbyStore> {
    let bad = |e: tokio_postgres::Error| CatalogError::Internal(e.to_string());
    Ok(StandbyStore {
        id: TenantId::from_uuid(r.try_get(0).map_err(bad)?),
        isolation: r
            .try_get::<_, String>(1)
            .map_err(bad)?
            .parse()
            .map_err(CatalogError::Internal)?,
        placement: placement_of(r.try_get(2).map_err(bad)?),
        schema_version: r.try_get::<_, i32>(3).map_err(bad)?.max(0) as u32,
        state: r.try_get::<_, String>(4).map_err(bad)?.parse()?,
        updated_at: r.try_get(5).map_err(bad)?,
    })
}

#[async_trait]
impl CatalogStore for PgCatalog {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(db_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS catalog_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db_err)?;
        let current: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM catalog_migrations",
                &[],
            )
            .await
            .map_err(db_err)?
            .get(0);
        for m in migrations::POSTGRES.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql).await.map_err(db_err)?;
            tx.execute(
                "INSERT INTO catalog_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .map_err(db_err)?;
        }
        let plans: i64 = tx
            .query_one("SELECT count(*) FROM plans", &[])
            .await
            .map_err(db_err)?
            .get(0);
        if plans == 0 {
            for p in builtin_plans() {
                tx.execute(
                    "INSERT INTO plans (name, version, doc) VALUES ($1, $2, $3)",
                    &[&p.name.as_str(), &to_i64(p.version), &Json(&p)],
                )
                .await
                .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)
    }

    async fn ping(&self) -> Result<()> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(db_err)?;
        Ok(())
    }

    async fn create_tenant(&self, t: &Tenant) -> Result<Tenant> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        insert_tenant(&tx, t).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(t.clone())
    }

    async fn get_tenant(&self, r: &TenantRef) -> Result<Option<Tenant>> {
        let docs: Vec<Tenant> = match r {
            TenantRef::Id(id) => {
                self.query_docs("SELECT doc FROM tenants WHERE id = $1", &[id.as_uuid()])
                    .await?
            }
            TenantRef::Slug(s) => {
                self.query_docs("SELECT doc FROM tenants WHERE slug = $1", &[&s.as_str()])
                    .await?
            }
        };
        Ok(docs.into_iter().next())
    }

    async fn list_tenants(&self, q: &TenantQuery) -> Result<TenantPage> {
        let status = q.status.map(|s| s.as_str());
        let profile = q.profile.map(|p| p.as_str());
        let plan = q.plan.as_ref().map(|p| p.as_str());
        let isolation = q.isolation.map(|i| i.as_str());
        let after = q.after.map(|a| *a.as_uuid());
        let text =
            q.q.as_deref()
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase);
        let limit = to_i64(q.limit as u64 + 1);
        let below = q.schema_below.map(|v| v as i32);
        let mut items: Vec<Tenant> = self
            .query_docs(
                "SELECT doc FROM tenants WHERE ($1::text IS NULL OR status = $1) \
                 AND ($2::text IS NULL OR profile = $2) AND ($3::text IS NULL OR plan = $3) \
                 AND ($4::text IS NULL OR isolation = $4) AND ($5::uuid IS NULL OR id > $5) \
                 AND ($6::text IS NULL OR starts_with(slug, $6) \
                      OR strpos(lower(display_name), $6) > 0) \
                 AND ($8::int IS NULL OR schema_version < $8) \
                 ORDER BY id LIMIT $7",
                &[
                    &status, &profile, &plan, &isolation, &after, &text, &limit, &below,
                ],
            )
            .await?;
        let has_more = items.len() > q.limit;
        items.truncate(q.limit);
        Ok(TenantPage { items, has_more })
    }

    async fn update_tenant(&self, tenant: &Tenant, expected_version: u64) -> Result<Tenant> {
        let mut t = tenant.clone();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let seq = next_seq(&tx).await?;
        let lock = tx
            .prepare_cached("SELECT version FROM tenants WHERE id = $1 FOR UPDATE")
            .await
            .map_err(db_err)?;
        let row = tx
            .query_opt(&lock, &[t.id.as_uuid()])
            .await
            .map_err(db_err)?
            .ok_or(CatalogError::NotFound)?;
        let current = row.get::<_, i64>(0) as u64;
        if current != expected_version {
            return Err(CatalogError::VersionMismatch { current });
        }
        t.version = expected_version + 1;
        let st = tx
            .prepare_cached(
                "UPDATE tenants SET display_name = $2, status = $3, profile = $4, plan = $5, \
                 isolation = $6, delete_after = $7, version = $8, change_seq = $9, doc = $10, \
                 schema_version = $11, placement = $12 WHERE id = $1",
            )
            .await
            .map_err(db_err)?;
        tx.execute(
            &st,
            &[
                t.id.as_uuid(),
                &t.display_name,
                &t.status.as_str(),
                &t.profile.as_str(),
                &t.plan.as_str(),
                &t.isolation.as_str(),
                &t.delete_after,
                &to_i64(t.version),
                &seq,
                &Json(&t),
                &(t.schema_version as i32),
                &t.placement,
            ],
        )
        .await
        .map_err(db_err)?;
        write_domains(&tx, &t, false).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(t)
    }

    async fn changes_since(&self, seq: u64, limit: usize) -> Result<ChangeBatch> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT doc, change_seq FROM tenants WHERE change_seq > $1 \
                 ORDER BY change_seq LIMIT $2",
                &[&to_i64(seq), &to_i64(limit as u64)],
            )
            .await
            .map_err(db_err)?;
        let mut last_seq = seq;
        let mut tenants = Vec::with_capacity(rows.len());
        for r in rows {
            let doc: Json<Tenant> = r
                .try_get(0)
                .map_err(|e| CatalogError::Internal(e.to_string()))?;
            let s: i64 = r.get(1);
            tenants.push(doc.0);
            last_seq = last_seq.max(s as u64);
        }
        Ok(ChangeBatch { tenants, last_seq })
    }

    async fn due_for_purge(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Tenant>> {
        self.query_docs(
            "SELECT doc FROM tenants WHERE status = 'deleting' AND delete_after <= $1 \
             ORDER BY delete_after LIMIT $2",
            &[&now, &to_i64(limit as u64)],
        )
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(TenantStatus, u64)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT status, count(*) FROM tenants GROUP BY status ORDER BY status",
                &[],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let s: String = r.get(0);
                let n: i64 = r.get(1);
                TenantStatus::from_str(&s)
                    .map(|s| (s, n as u64))
                    .map_err(CatalogError::Internal)
            })
            .collect()
    }

    async fn tenant_counts(&self) -> Result<Vec<TenantCounts>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT isolation, status, schema_version, placement, count(*) FROM tenants \
                 GROUP BY isolation, status, schema_version, placement",
                &[],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                TenantCounts::parse(
                    r.get(0),
                    r.get(1),
                    r.get::<_, i32>(2) as i64,
                    r.get(3),
                    r.get(4),
                )
            })
            .collect()
    }

    async fn list_plans(&self) -> Result<Vec<Plan>> {
        self.query_docs("SELECT doc FROM plans ORDER BY name", &[])
            .await
    }

    async fn get_plan(&self, name: &PlanName) -> Result<Option<Plan>> {
        Ok(self
            .query_docs("SELECT doc FROM plans WHERE name = $1", &[&name.as_str()])
            .await?
            .into_iter()
            .next())
    }

    async fn update_plan(&self, plan: &Plan, expected_version: u64) -> Result<Plan> {
        let mut p = plan.clone();
        p.version = expected_version + 1;
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE plans SET version = $2, doc = $3 WHERE name = $1 AND version = $4",
                &[
                    &p.name.as_str(),
                    &to_i64(p.version),
                    &Json(&p),
                    &to_i64(expected_version),
                ],
            )
            .await
            .map_err(db_err)?;
        if n == 1 {
            return Ok(p);
        }
        let row = c
            .query_opt(
                "SELECT version FROM plans WHERE name = $1",
                &[&p.name.as_str()],
            )
            .await
            .map_err(db_err)?;
        match row {
            None => Err(CatalogError::NotFound),
            Some(r) => Err(CatalogError::VersionMismatch {
                current: r.get::<_, i64>(0) as u64,
            }),
        }
    }

    async fn create_operator(&self, op: &Operator) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO operators (id, name, doc) VALUES ($1, $2, $3)",
            &[op.id.as_uuid(), &op.name, &Json(op)],
        )
        .await
        .map_err(|e| match unique_constraint(&e) {
            Some(_) => CatalogError::Conflict(Conflict::OperatorName(op.name.clone())),
            None => db_err(e),
        })?;
        Ok(())
    }

    async fn get_operator(&self, id: OperatorId) -> Result<Option<Operator>> {
        Ok(self
            .query_docs("SELECT doc FROM operators WHERE id = $1", &[id.as_uuid()])
            .await?
            .into_iter()
            .next())
    }

    async fn get_operator_by_name(&self, name: &str) -> Result<Option<Operator>> {
        Ok(self
            .query_docs("SELECT doc FROM operators WHERE name = $1", &[&name])
            .await?
            .into_iter()
            .next())
    }

    async fn list_operators(&self) -> Result<Vec<Operator>> {
        self.query_docs("SELECT doc FROM operators ORDER BY name", &[])
            .await
    }

    async fn update_operator(&self, op: &Operator) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE operators SET name = $2, doc = $3 WHERE id = $1",
                &[op.id.as_uuid(), &op.name, &Json(op)],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            Err(CatalogError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn add_requests(
        &self,
        month: &str,
        counts: &[(TenantId, u64)],
    ) -> Result<Vec<(TenantId, u64)>> {
        let mut counts = counts.to_vec();
        // One order for every replica: concurrent flushes cannot deadlock.
        counts.sort_by_key(|(t, _)| *t);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let st = tx
            .prepare_cached(
                "INSERT INTO usage_monthly (tenant_id, month, requests) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, month) DO UPDATE SET requests = usage_monthly.requests + excluded.requests \
                 RETURNING requests",
            )
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(counts.len());
        for (t, n) in &counts {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            let row = tx
                .query_one(&st, &[t.as_uuid(), &month, &n])
                .await
                .map_err(db_err)?;
            out.push((*t, row.get::<_, i64>(0).max(0) as u64));
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn requests_in(&self, tenant: TenantId, month: &str) -> Result<u64> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT requests FROM usage_monthly WHERE tenant_id = $1 AND month = $2",
                &[tenant.as_uuid(), &month],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
    }

    async fn add_standby(&self, st: &StandbyStore, max: usize) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STANDBY_LOCK])
            .await
            .map_err(db_err)?;
        let place = placement_key(&st.placement);
        let have: i64 = tx
            .query_one(
                "SELECT count(*) FROM standby_stores \
                 WHERE isolation = $1 AND placement = $2 AND state <> 'retiring'",
                &[&st.isolation.as_str(), &place],
            )
            .await
            .map_err(db_err)?
            .get(0);
        if have as usize >= max {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO standby_stores (id, isolation, placement, schema_version, state, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                st.id.as_uuid(),
                &st.isolation.as_str(),
                &place,
                &(st.schema_version as i32),
                &st.state.as_str(),
                &st.updated_at,
            ],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn set_standby(
        &self,
        id: TenantId,
        from: StandbyState,
        to: StandbyState,
        schema_version: u32,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE standby_stores SET state = $3, schema_version = $4, updated_at = now() \
                 WHERE id = $1 AND state = $2",
                &[
                    id.as_uuid(),
                    &from.as_str(),
                    &to.as_str(),
                    &(schema_version as i32),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn list_standby(&self) -> Result<Vec<StandbyStore>> {
        let c = self.client().await?;
        c.query(
            "SELECT id, isolation, placement, schema_version, state, updated_at \
             FROM standby_stores ORDER BY updated_at, id",
            &[],
        )
        .await
        .map_err(db_err)?
        .iter()
        .map(standby_row)
        .collect()
    }

    async fn remove_standby(&self, id: TenantId) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM standby_stores WHERE id = $1", &[id.as_uuid()])
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn create_tenant_on_standby(&self, tenant: &Tenant) -> Result<Option<Tenant>> {
        let mut c = self.client().await?;
        if tenant.custom_domains.is_empty() {
            return claim_standby(&c, tenant).await;
        }
        let tx = c.transaction().await.map_err(db_err)?;
        let Some(t) = claim_standby(&tx, tenant).await? else {
            return Ok(None);
        };
        write_domains(&tx, &t, true).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(t))
    }
}
