//! PostgreSQL tenant data for the `pg-schema` and `pg-shared` modes (ADR 003).
//!
//! One server = two pools: an owner pool for DDL and migrations, and an application pool
//! (a role that owns nothing and cannot bypass row-level security) whose size is the
//! server's connection budget. Every tenant transaction sets its context with
//! transaction-scoped statements only (`SET LOCAL search_path`, `set_config(…, true)`), so
//! a pooled connection — or a PgBouncer server connection in transaction mode — never
//! carries one tenant's context into another tenant's transaction.

use std::{future::Future, pin::Pin, str::FromStr, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tenantplane_core::{IsolationMode, Tenant, TenantId};
use tokio_postgres::NoTls;

use crate::{
    DataError, Result,
    migrate::{Dialect, MigrationReport, MigrationSet},
};

/// The schema holding the shared tables of `pg-shared` tenants.
pub const SHARED_SCHEMA: &str = "tp_shared";

/// A boxed future borrowing the transaction.
pub type TxFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a>>;

/// Settings of one PostgreSQL server (database) holding tenants.
#[derive(Debug, Clone)]
pub struct PgServerConfig {
    /// Name used in placement records.
    pub name: String,
    /// Owner connection URL (runs DDL and migrations).
    pub url: String,
    /// Application connection URL, when it differs from the owner's (e.g. through PgBouncer in
    /// transaction mode); the user is always `app_role`.
    pub app_url: Option<String>,
    /// Application role (no table ownership, no BYPASSRLS).
    pub app_role: String,
    /// Its password, if the server requires one.
    pub app_password: Option<String>,
    /// Connection budget: most application connections open at once.
    pub budget: usize,
    /// How long a transaction waits for a connection before [`DataError::Busy`].
    pub wait: Duration,
}

/// One server.
pub struct PgServer {
    cfg: PgServerConfig,
    owner: Pool,
    app: Pool,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

fn db(e: tokio_postgres::Error) -> DataError {
    DataError::Db(e.to_string())
}

fn pool_err(e: PoolError) -> DataError {
    match e {
        PoolError::Timeout(_) => DataError::Busy,
        other => DataError::Unavailable(other.to_string()),
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn pool(cfg: tokio_postgres::Config, size: usize, wait: Duration) -> Result<Pool> {
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| DataError::Unavailable(e.to_string()))
}

/// The schema of a `pg-schema` tenant.
pub fn tenant_schema(id: &TenantId) -> String {
    format!("t_{}", id.as_uuid().simple())
}

impl PgServer {
    /// Connects both pools and makes sure the application role exists without privileges
    /// it must not have.
    pub async fn connect(cfg: PgServerConfig) -> Result<Self> {
        let owner_cfg = tokio_postgres::Config::from_str(&cfg.url)
            .map_err(|e| DataError::Unavailable(format!("invalid url: {e}")))?;
        let mut app_cfg = match &cfg.app_url {
            Some(u) => tokio_postgres::Config::from_str(u)
                .map_err(|e| DataError::Unavailable(format!("invalid app url: {e}")))?,
            None => owner_cfg.clone(),
        };
        app_cfg.user(&cfg.app_role);
        if let Some(p) = &cfg.app_password {
            app_cfg.password(p);
        }
        let owner = pool(owner_cfg, 2, Duration::from_secs(30))?;
        let app = pool(app_cfg, cfg.budget, cfg.wait)?;
        let me = Self { cfg, owner, app };
        me.ensure_app_role().await?;
        Ok(me)
    }

    async fn ensure_app_role(&self) -> Result<()> {
        let c = self.owner.get().await.map_err(pool_err)?;
        let role = &self.cfg.app_role;
        let exists = c
            .query_opt(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[role],
            )
            .await
            .map_err(db)?;
        match exists {
            Some(r) if r.get::<_, bool>(0) || r.get::<_, bool>(1) => {
                Err(DataError::Unavailable(format!(
                    "application role {role} is a superuser or has BYPASSRLS; row-level security would not apply"
                )))
            }
            Some(_) => Ok(()),
            None => {
                // Another test or replica may create it concurrently.
                let sql = format!(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS",
                    quote_ident(role)
                );
                match c.batch_execute(&sql).await {
                    Ok(()) => Ok(()),
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) =>
                    {
                        Ok(())
                    }
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(db(e)),
                }
            }
        }
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Applies `set` to `schema` as the owner (one transaction per step, ledger in the
    /// schema) and grants the application role DML on it.
    async fn migrate_schema(&self, schema: &str, set: &MigrationSet) -> Result<MigrationReport> {
        let mut c = self.owner.get().await.map_err(pool_err)?;
        let s = quote_ident(schema);
        c.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; \
             CREATE TABLE IF NOT EXISTS {s}.tp_migrations (component TEXT NOT NULL, \
             version INTEGER NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version));"
        ))
        .await
        .map_err(db)?;
        let mut applied = Vec::new();
        for m in set.iter() {
            let sum = m.checksum(Dialect::Postgres);
            let have = c
                .query_opt(
                    &format!("SELECT checksum FROM {s}.tp_migrations WHERE component = $1 AND version = $2"),
                    &[&m.component, &(m.version as i32)],
                )
                .await
                .map_err(db)?;
            match have {
                Some(r) if r.get::<_, String>(0) == sum => continue,
                Some(_) => {
                    return Err(DataError::ChecksumMismatch {
                        component: m.component.into(),
                        version: m.version,
                    });
                }
                None => {}
            }
            let fail = |e: tokio_postgres::Error| DataError::Migration {
                component: m.component.into(),
                version: m.version,
                message: e.to_string(),
            };
            let tx = c.transaction().await.map_err(fail)?;
            tx.batch_execute(&format!("SET LOCAL search_path TO {s}"))
                .await
                .map_err(fail)?;
            tx.batch_execute(m.postgres).await.map_err(fail)?;
            tx.execute(
                &format!("INSERT INTO {s}.tp_migrations (component, version, name, checksum) VALUES ($1, $2, $3, $4)"),
                &[&m.component, &(m.version as i32), &m.name, &sum],
            )
            .await
            .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            applied.push(format!("{}/{}", m.component, m.version));
        }
        let role = quote_ident(&self.cfg.app_role);
        c.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {s} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role}; \
             REVOKE ALL ON {s}.tp_migrations FROM {role};"
        ))
        .await
        .map_err(db)?;
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {s}.tp_migrations"), &[])
            .await
            .map_err(db)?
            .get(0);
        Ok(MigrationReport {
            applied,
            schema_version: n as u32,
        })
    }

    /// Brings the shared tables of `pg-shared` tenants up to date (once per database).
    pub async fn prepare_shared(&self, set: &MigrationSet) -> Result<MigrationReport> {
        self.migrate_schema(SHARED_SCHEMA, set).await
    }

    /// Creates (or adopts, if it is ours) the store of a `pg-schema` tenant, migrated.
    /// A schema that exists without our ledger but with tables is refused.
    pub async fn provision(&self, tenant: &Tenant, set: &MigrationSet) -> Result<MigrationReport> {
        match tenant.isolation {
            IsolationMode::PgSchema => {
                let schema = tenant_schema(&tenant.id);
                let c = self.owner.get().await.map_err(pool_err)?;
                let row = c
                    .query_one(
                        "SELECT count(*) FILTER (WHERE table_name <> 'tp_migrations'), \
                                count(*) FILTER (WHERE table_name = 'tp_migrations') \
                         FROM information_schema.tables WHERE table_schema = $1",
                        &[&schema],
                    )
                    .await
                    .map_err(db)?;
                let (others, ledger): (i64, i64) = (row.get(0), row.get(1));
                if others > 0 && ledger == 0 {
                    return Err(DataError::Unavailable(format!(
                        "schema {schema} exists and holds tables Tenantplane did not create"
                    )));
                }
                drop(c);
                self.migrate_schema(&schema, set).await
            }
            IsolationMode::PgShared => self.prepare_shared(set).await,
            other => Err(DataError::Unavailable(format!(
                "{other} tenants are not served by PgServer"
            ))),
        }
    }

    /// Drops a `pg-schema` tenant's schema, or deletes a `pg-shared` tenant's rows from every
    /// shared table (as the owner, with the tenant set). Idempotent.
    pub async fn drop_tenant(&self, tenant: &Tenant) -> Result<()> {
        let mut c = self.owner.get().await.map_err(pool_err)?;
        match tenant.isolation {
            IsolationMode::PgSchema => {
                c.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(&tenant_schema(&tenant.id))
                ))
                .await
                .map_err(db)?;
            }
            IsolationMode::PgShared => {
                let tables: Vec<String> = c
                    .query(
                        "SELECT table_name::text FROM information_schema.columns \
                         WHERE table_schema = $1 AND column_name = 'tenant_id'",
                        &[&SHARED_SCHEMA],
                    )
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let tx = c.transaction().await.map_err(db)?;
                for t in tables {
                    tx.execute(
                        &format!(
                            "DELETE FROM {}.{} WHERE tenant_id = $1",
                            quote_ident(SHARED_SCHEMA),
                            quote_ident(&t)
                        ),
                        &[tenant.id.as_uuid()],
                    )
                    .await
                    .map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs `f` in a transaction of the tenant, with its context set for this transaction
    /// only. Waits at most the configured time for a connection of the budget.
    pub async fn transaction<T, F>(&self, tenant: &Tenant, f: F) -> Result<T>
    where
        T: Send,
        F: for<'a> FnOnce(&'a deadpool_postgres::Transaction<'a>) -> TxFuture<'a, T> + Send,
    {
        let schema = match tenant.isolation {
            IsolationMode::PgSchema => tenant_schema(&tenant.id),
            IsolationMode::PgShared => SHARED_SCHEMA.to_owned(),
            other => {
                return Err(DataError::Unavailable(format!(
                    "{other} tenants are not served by PgServer"
                )));
            }
        };
        let mut c = self.app.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(db)?;
        // One round-trip: schema for name resolution, tenant id for the RLS policies.
        tx.execute(
            "SELECT set_config('search_path', $1, true), set_config('app.tenant_id', $2, true)",
            &[&quote_ident(&schema), &tenant.id.to_string()],
        )
        .await
        .map_err(db)?;
        let out = f(&tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    /// A connection of the application pool with no tenant context (for leak tests).
    #[doc(hidden)]
    pub async fn raw_app_client(&self) -> Result<deadpool_postgres::Object> {
        self.app.get().await.map_err(pool_err)
    }
}
