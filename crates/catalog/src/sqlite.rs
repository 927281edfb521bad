//! The embedded catalog: one SQLite file in WAL mode, `synchronous=FULL` (an acknowledged
//! catalog write survives a crash), all work on the blocking pool behind one connection.
//! Write transactions start `IMMEDIATE`, so a second process on the same file (the offline
//! `tenantplane operator` commands) waits on `busy_timeout` instead of failing mid-transaction.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tenantplane_core::{
    Operator, OperatorId, Plan, PlanName, Tenant, TenantId, TenantRef, TenantStatus,
    plan::builtin_plans,
};
use time::OffsetDateTime;

use crate::{
    CatalogError, CatalogStore, ChangeBatch, Conflict, Result, StandbyState, StandbyStore,
    TenantCounts, TenantPage, TenantQuery, decode, encode, migrations, rfc3339,
    standby::{placement_key, placement_of},
};

/// SQLite-backed catalog.
#[derive(Clone)]
pub struct SqliteCatalog {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCatalog")
            .field("path", &self.path)
            .finish()
    }
}

pub(crate) fn internal(e: rusqlite::Error) -> CatalogError {
    CatalogError::Internal(e.to_string())
}

/// Maps a UNIQUE violation to the conflict it means.
fn unique_violation(e: &rusqlite::Error) -> Option<String> {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(msg.clone())
        }
        _ => None,
    }
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = p.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CatalogError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let conn = Connection::open(&p).map_err(|e| {
                CatalogError::Unavailable(format!("cannot open {}: {e}", p.display()))
            })?;
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
                 PRAGMA busy_timeout=5000;",
            )
            .map_err(internal)?;
            Ok(conn)
        })
        .await
        .map_err(|e| CatalogError::Internal(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| CatalogError::Internal(e.to_string()))?
    }
}

fn next_seq(tx: &Transaction<'_>) -> Result<i64> {
    tx.query_row(
        "UPDATE catalog_seq SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |r| r.get(0),
    )
    .map_err(internal)
}

fn write_domains(tx: &Transaction<'_>, t: &Tenant) -> Result<()> {
    let id = t.id.to_string();
    tx.execute("DELETE FROM tenant_domains WHERE tenant_id = ?1", [&id])
        .map_err(internal)?;
    for d in &t.custom_domains {
        tx.execute(
            "INSERT INTO tenant_domains (name, tenant_id) VALUES (?1, ?2)",
            params![d.as_str(), id],
        )
        .map_err(|e| match unique_violation(&e) {
            Some(_) => CatalogError::Conflict(Conflict::Domain(d.to_string())),
            None => internal(e),
        })?;
    }
    Ok(())
}

/// `delete_after` is stored as Unix seconds so that SQL comparisons are exact.
fn opt_unix(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(OffsetDateTime::unix_timestamp)
}

fn row_doc(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    r.get(0)
}

/// Runs `sql` and decodes the JSON document in the first column of every row.
fn docs<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(internal)?;
    let raw = stmt
        .query_map(params, row_doc)
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(internal)?;
    raw.iter().map(|d| decode(d)).collect()
}

fn version_of(tx: &Transaction<'_>, sql: &str, key: &str) -> Result<Option<u64>> {
    tx.query_row(sql, [key], |r| r.get::<_, i64>(0))
        .optional()
        .map_err(internal)
        .map(|v| v.map(|v| v as u64))
}

/// Inserts a tenant and its domains, drawing its change sequence number.
fn insert_tenant(tx: &Transaction<'_>, t: &Tenant) -> Result<()> {
    let seq = next_seq(tx)?;
    let res = tx.execute(
        "INSERT INTO tenants (id, slug, display_name, status, profile, plan, isolation, \
         delete_after, version, change_seq, doc, schema_version, placement) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            t.id.to_string(),
            t.slug.as_str(),
            t.display_name,
            t.status.as_str(),
            t.profile.as_str(),
            t.plan.as_str(),
            t.isolation.as_str(),
            opt_unix(t.delete_after),
            t.version as i64,
            seq,
            encode(t)?,
            t.schema_version,
            t.placement
        ],
    );
    if let Err(e) = res {
        return Err(match unique_violation(&e) {
            Some(msg) if msg.contains("tenants.slug") => {
                CatalogError::Conflict(Conflict::Slug(t.slug.to_string()))
            }
            Some(_) => CatalogError::Conflict(Conflict::Id),
            None => internal(e),
        });
    }
    write_domains(tx, t)
}

fn standby_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, i64, String, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn standby_of(
    (id, isolation, placement, version, state, at): (String, String, String, i64, String, String),
) -> Result<StandbyStore> {
    Ok(StandbyStore {
        id: id
            .parse()
            .map_err(|_| CatalogError::Internal(format!("standby id '{id}'")))?,
        isolation: isolation.parse().map_err(CatalogError::Internal)?,
        placement: placement_of(placement),
        schema_version: version.max(0) as u32,
        state: state.parse()?,
        updated_at: OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
            .map_err(|e| CatalogError::Internal(format!("time: {e}")))?,
    })
}

#[async_trait]
impl CatalogStore for SqliteCatalog {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS catalog_migrations (version INTEGER PRIMARY KEY, \
                 name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT",
            )
            .map_err(internal)?;
            let current: i64 = tx
                .query_row(
                    "SELECT coalesce(max(version), 0) FROM catalog_migrations",
                    [],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            for m in migrations::SQLITE.iter().filter(|m| m.version > current) {
                tx.execute_batch(m.sql).map_err(internal)?;
                tx.execute(
                    "INSERT INTO catalog_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    params![m.version, m.name, rfc3339(OffsetDateTime::now_utc())?],
                )
                .map_err(internal)?;
            }
            let plans: i64 = tx
                .query_row("SELECT count(*) FROM plans", [], |r| r.get(0))
                .map_err(internal)?;
            if plans == 0 {
                for p in builtin_plans() {
                    tx.execute(
                        "INSERT INTO plans (name, version, doc) VALUES (?1, ?2, ?3)",
                        params![p.name.as_str(), p.version as i64, encode(&p)?],
                    )
                    .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.with(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| CatalogError::Unavailable(e.to_string()))
        })
        .await
    }

    async fn create_tenant(&self, tenant: &Tenant) -> Result<Tenant> {
        let t = tenant.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            insert_tenant(&tx, &t)?;
            tx.commit().map_err(internal)?;
            Ok(t)
        })
        .await
    }

    async fn get_tenant(&self, r: &TenantRef) -> Result<Option<Tenant>> {
        let (sql, key) = match r {
            TenantRef::Id(id) => ("SELECT doc FROM tenants WHERE id = ?1", id.to_string()),
            TenantRef::Slug(s) => ("SELECT doc FROM tenants WHERE slug = ?1", s.to_string()),
        };
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row(sql, [key], row_doc)
                .optional()
                .map_err(internal)?;
            doc.map(|d| decode(&d)).transpose()
        })
        .await
    }

    async fn list_tenants(&self, q: &TenantQuery) -> Result<TenantPage> {
        let q = q.clone();
        self.with(move |c| {
            let mut sql = String::from("SELECT doc FROM tenants WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            let mut push = |clause: &str, v: String, sql: &mut String| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(s) = q.status {
                push(" AND status = ?", s.as_str().into(), &mut sql);
            }
            if let Some(p) = q.profile {
                push(" AND profile = ?", p.as_str().into(), &mut sql);
            }
            if let Some(p) = &q.plan {
                push(" AND plan = ?", p.to_string(), &mut sql);
            }
            if let Some(i) = q.isolation {
                push(" AND isolation = ?", i.as_str().into(), &mut sql);
            }
            if let Some(a) = q.after {
                push(" AND id > ?", a.to_string(), &mut sql);
            }
            if let Some(v) = q.schema_below {
                push(" AND schema_version < ?", v.to_string(), &mut sql);
            }
            if let Some(text) = q.q.as_deref().filter(|s| !s.is_empty()) {
                let t = text.to_lowercase();
                args.push(t.clone());
                let n = args.len();
                sql.push_str(&format!(
                    " AND (substr(slug, 1, length(?{n})) = ?{n} OR instr(lower(display_name), ?{n}) > 0)"
                ));
            }
            sql.push_str(&format!(" ORDER BY id LIMIT {}", q.limit + 1));
            let mut items: Vec<Tenant> =
                docs(c, &sql, rusqlite::params_from_iter(args.iter()))?;
            let has_more = items.len() > q.limit;
            items.truncate(q.limit);
            Ok(TenantPage { items, has_more })
        })
        .await
    }

    async fn update_tenant(&self, tenant: &Tenant, expected_version: u64) -> Result<Tenant> {
        let mut t = tenant.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            let id = t.id.to_string();
            let current = version_of(&tx, "SELECT version FROM tenants WHERE id = ?1", &id)?
                .ok_or(CatalogError::NotFound)?;
            if current != expected_version {
                return Err(CatalogError::VersionMismatch { current });
            }
            t.version = expected_version + 1;
            let seq = next_seq(&tx)?;
            tx.execute(
                "UPDATE tenants SET display_name = ?2, status = ?3, profile = ?4, plan = ?5, \
                 isolation = ?6, delete_after = ?7, version = ?8, change_seq = ?9, doc = ?10, \
                 schema_version = ?11, placement = ?12 WHERE id = ?1",
                params![
                    id,
                    t.display_name,
                    t.status.as_str(),
                    t.profile.as_str(),
                    t.plan.as_str(),
                    t.isolation.as_str(),
                    opt_unix(t.delete_after),
                    t.version as i64,
                    seq,
                    encode(&t)?,
                    t.schema_version,
                    t.placement
                ],
            )
            .map_err(internal)?;
            write_domains(&tx, &t)?;
            tx.commit().map_err(internal)?;
            Ok(t)
        })
        .await
    }

    async fn changes_since(&self, seq: u64, limit: usize) -> Result<ChangeBatch> {
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc, change_seq FROM tenants WHERE change_seq > ?1 \
                     ORDER BY change_seq LIMIT ?2",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![seq as i64, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            let mut last_seq = seq;
            let mut tenants = Vec::with_capacity(rows.len());
            for (doc, s) in rows {
                tenants.push(decode(&doc)?);
                last_seq = last_seq.max(s as u64);
            }
            Ok(ChangeBatch { tenants, last_seq })
        })
        .await
    }

    async fn due_for_purge(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Tenant>> {
        let now = now.unix_timestamp();
        self.with(move |c| {
            docs(
                c,
                "SELECT doc FROM tenants WHERE status = 'deleting' AND delete_after <= ?1 \
                 ORDER BY delete_after LIMIT ?2",
                params![now, limit as i64],
            )
        })
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(TenantStatus, u64)>> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT status, count(*) FROM tenants GROUP BY status ORDER BY status")
                .map_err(internal)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            rows.into_iter()
                .map(|(s, n)| {
                    TenantStatus::from_str(&s)
                        .map(|s| (s, n as u64))
                        .map_err(CatalogError::Internal)
                })
                .collect()
        })
        .await
    }

    async fn tenant_counts(&self) -> Result<Vec<TenantCounts>> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT isolation, status, schema_version, placement, count(*) FROM tenants \
                     GROUP BY isolation, status, schema_version, placement",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            rows.into_iter()
                .map(|(i, s, v, p, n)| TenantCounts::parse(&i, &s, v, p, n))
                .collect()
        })
        .await
    }

    async fn list_plans(&self) -> Result<Vec<Plan>> {
        self.with(|c| docs(c, "SELECT doc FROM plans ORDER BY name", []))
            .await
    }

    async fn get_plan(&self, name: &PlanName) -> Result<Option<Plan>> {
        let name = name.to_string();
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM plans WHERE name = ?1", [name], row_doc)
                .optional()
                .map_err(internal)?;
            doc.map(|d| decode(&d)).transpose()
        })
        .await
    }

    async fn update_plan(&self, plan: &Plan, expected_version: u64) -> Result<Plan> {
        let mut p = plan.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            let current = version_of(
                &tx,
                "SELECT version FROM plans WHERE name = ?1",
                p.name.as_str(),
            )?
            .ok_or(CatalogError::NotFound)?;
            if current != expected_version {
                return Err(CatalogError::VersionMismatch { current });
            }
            p.version = expected_version + 1;
            tx.execute(
                "UPDATE plans SET version = ?2, doc = ?3 WHERE name = ?1",
                params![p.name.as_str(), p.version as i64, encode(&p)?],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(p)
        })
        .await
    }

    async fn create_operator(&self, op: &Operator) -> Result<()> {
        let op = op.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO operators (id, name, doc) VALUES (?1, ?2, ?3)",
                params![op.id.to_string(), op.name, encode(&op)?],
            )
            .map_err(|e| match unique_violation(&e) {
                Some(_) => CatalogError::Conflict(Conflict::OperatorName(op.name.clone())),
                None => internal(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn get_operator(&self, id: OperatorId) -> Result<Option<Operator>> {
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM operators WHERE id = ?1",
                    [id.to_string()],
                    row_doc,
                )
                .optional()
                .map_err(internal)?;
            doc.map(|d| decode(&d)).transpose()
        })
        .await
    }

    async fn get_operator_by_name(&self, name: &str) -> Result<Option<Operator>> {
        let name = name.to_owned();
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM operators WHERE name = ?1", [name], row_doc)
                .optional()
                .map_err(internal)?;
            doc.map(|d| decode(&d)).transpose()
        })
        .await
    }

    async fn list_operators(&self) -> Result<Vec<Operator>> {
        self.with(|c| docs(c, "SELECT doc FROM operators ORDER BY name", []))
            .await
    }

    async fn update_operator(&self, op: &Operator) -> Result<()> {
        let op = op.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE operators SET name = ?2, doc = ?3 WHERE id = ?1",
                    params![op.id.to_string(), op.name, encode(&op)?],
                )
                .map_err(internal)?;
            if n == 0 {
                Err(CatalogError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn add_requests(
        &self,
        month: &str,
        counts: &[(TenantId, u64)],
    ) -> Result<Vec<(TenantId, u64)>> {
        let month = month.to_owned();
        let mut counts = counts.to_vec();
        counts.sort_by_key(|(t, _)| *t);
        self.with(move |c| {
            let tx = c.transaction().map_err(internal)?;
            let mut out = Vec::with_capacity(counts.len());
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO usage_monthly (tenant_id, month, requests) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (tenant_id, month) DO UPDATE SET requests = requests + excluded.requests \
                         RETURNING requests",
                    )
                    .map_err(internal)?;
                for (t, n) in &counts {
                    let n = i64::try_from(*n).unwrap_or(i64::MAX);
                    let total: i64 = st
                        .query_row(params![t.to_string(), month, n], |r| r.get(0))
                        .map_err(internal)?;
                    out.push((*t, total.max(0) as u64));
                }
            }
            tx.commit().map_err(internal)?;
            Ok(out)
        })
        .await
    }

    async fn requests_in(&self, tenant: TenantId, month: &str) -> Result<u64> {
        let month = month.to_owned();
        self.with(move |c| {
            let n: Option<i64> = c
                .query_row(
                    "SELECT requests FROM usage_monthly WHERE tenant_id = ?1 AND month = ?2",
                    params![tenant.to_string(), month],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            Ok(n.unwrap_or(0).max(0) as u64)
        })
        .await
    }

    async fn add_standby(&self, st: &StandbyStore, max: usize) -> Result<bool> {
        let st = st.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            let place = placement_key(&st.placement).to_owned();
            let have: i64 = tx
                .query_row(
                    "SELECT count(*) FROM standby_stores \
                     WHERE isolation = ?1 AND placement = ?2 AND state <> 'retiring'",
                    params![st.isolation.as_str(), place],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            if have as usize >= max {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO standby_stores (id, isolation, placement, schema_version, state, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    st.id.to_string(),
                    st.isolation.as_str(),
                    place,
                    st.schema_version,
                    st.state.as_str(),
                    rfc3339(st.updated_at)?
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(true)
        })
        .await
    }

    async fn set_standby(
        &self,
        id: TenantId,
        from: StandbyState,
        to: StandbyState,
        schema_version: u32,
    ) -> Result<bool> {
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE standby_stores SET state = ?3, schema_version = ?4, updated_at = ?5 \
                     WHERE id = ?1 AND state = ?2",
                    params![
                        id.to_string(),
                        from.as_str(),
                        to.as_str(),
                        schema_version,
                        rfc3339(OffsetDateTime::now_utc())?
                    ],
                )
                .map_err(internal)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_standby(&self) -> Result<Vec<StandbyStore>> {
        self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT id, isolation, placement, schema_version, state, updated_at \
                     FROM standby_stores ORDER BY updated_at, id",
                )
                .map_err(internal)?;
            let rows = st
                .query_map([], standby_row)
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            rows.into_iter().map(standby_of).collect()
        })
        .await
    }

    async fn remove_standby(&self, id: TenantId) -> Result<()> {
        self.with(move |c| {
            c.execute("DELETE FROM standby_stores WHERE id = ?1", [id.to_string()])
                .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn create_tenant_on_standby(&self, tenant: &Tenant) -> Result<Option<Tenant>> {
        let mut t = tenant.clone();
        self.with(move |c| {
            // IMMEDIATE: claims are serialised on the write lock, so a store goes to one.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            let id: Option<String> = tx
                .query_row(
                    "DELETE FROM standby_stores WHERE id = (SELECT id FROM standby_stores \
                     WHERE isolation = ?1 AND placement = ?2 AND state = 'ready' \
                     AND schema_version = ?3 ORDER BY updated_at, id LIMIT 1) RETURNING id",
                    params![
                        t.isolation.as_str(),
                        placement_key(&t.placement),
                        t.schema_version
                    ],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            let Some(id) = id else {
                return Ok(None);
            };
            t.id = id
                .parse()
                .map_err(|_| CatalogError::Internal(format!("standby id '{id}'")))?;
            insert_tenant(&tx, &t)?;
            tx.commit().map_err(internal)?;
            Ok(Some(t))
        })
        .await
    }
}
