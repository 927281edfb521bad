//! PostgreSQL tenant data for the `pg-database`, `pg-schema` and `pg-shared` modes (ADR 003).
//!
//! One server = an owner pool for DDL and migrations on its main database, direct owner
//! connections to tenant databases while they are migrated, and one application
//! [`BudgetPool`] (a role that owns nothing and cannot bypass row-level security) whose
//! open connections never exceed the server's budget, however many tenant databases exist.
//!
//! - `pg-schema`: schema `t_<uuid>` in the main database;
//! - `pg-shared`: shared tables in schema `tp_shared` of the main database, rows keyed by
//!   `tenant_id` under forced row-level security;
//! - `pg-database`: database `tp_<uuid>`, cloned with `CREATE DATABASE … TEMPLATE` from a
//!   pre-migrated template database, tables in its schema `tenant`.
//!
//! Every tenant transaction sets its context with transaction-scoped statements only
//! (`set_config('search_path', …, true)`, `set_config('app.tenant_id', …, true)`), so a
//! pooled connection — or a PgBouncer server connection in transaction mode — never carries
//! one tenant's context into another tenant's transaction.

use std::{future::Future, pin::Pin, str::FromStr, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tenantplane_core::{IsolationMode, Tenant, TenantId};
use tokio_postgres::{Client, NoTls, error::SqlState};

mod sizes;
mod statements;

use crate::{
    DataError, Result,
    fair::{FairShare, PlanWeights, SharePermit, key_of},
    migrate::{Dialect, MigrationReport, MigrationSet},
    pgpool::{BudgetPool, PoolLimits, PoolUse, PooledClient},
};

/// The schema holding the shared tables of `pg-shared` tenants.
pub const SHARED_SCHEMA: &str = "tp_shared";

/// The schema holding a `pg-database` tenant's tables inside its database.
pub const DATABASE_SCHEMA: &str = "tenant";

/// A boxed future borrowing the transaction.
pub type TxFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a>>;

/// Settings of one PostgreSQL server holding tenants.
#[derive(Debug, Clone)]
pub struct PgServerConfig {
    /// Name used in placement records.
    pub name: String,
    /// Owner connection URL (runs DDL and migrations); its database is the server's main
    /// database (pg-schema and pg-shared tenants, and the maintenance connection).
    pub url: String,
    /// Application connection URL, when it differs from the owner's (e.g. through PgBouncer in
    /// transaction mode); the user is always `app_role`.
    pub app_url: Option<String>,
    /// Application role (no table ownership, no BYPASSRLS).
    pub app_role: String,
    /// Its password, if the server requires one.
    pub app_password: Option<String>,
    /// Connection budget: most application connections open at once on this server.
    pub budget: usize,
    /// Most application connections to one `pg-database` tenant database.
    pub per_database: usize,
    /// Connections one tenant of plan weight 1 may hold at once (× its plan's weight, and
    /// never the whole budget); tenants waiting for a connection are served fairly.
    pub per_tenant: usize,
    /// How long a transaction waits for a connection before [`DataError::Busy`].
    pub wait: Duration,
    /// Idle application connections are closed after this long.
    pub idle_timeout: Duration,
}

impl PgServerConfig {
    /// Defaults for a server at `url`: budget 20, 2 connections per tenant database, 4 per
    /// tenant per unit of plan weight, 5 s wait,
    /// 60 s idle timeout, application role `tenantplane_app`.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            app_url: None,
            app_role: "tenantplane_app".into(),
            app_password: None,
            budget: 20,
            per_database: 2,
            per_tenant: 4,
            wait: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// One server.
pub struct PgServer {
    cfg: PgServerConfig,
    set: Arc<MigrationSet>,
    owner_cfg: tokio_postgres::Config,
    owner: Pool,
    app: Arc<BudgetPool>,
    /// Each tenant's share of the budget, and fair queueing for it.
    share: Arc<FairShare>,
    weights: Arc<PlanWeights>,
    main_db: String,
    template_db: String,
    template: tokio::sync::Mutex<bool>,
    role_checked: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

/// A database error for logs: SQLSTATE and message only — never the `DETAIL`, which can
/// quote row values (health data).
///
/// A terminated or lost connection (SQLSTATE class 08, `57P01`–`57P03`: the server shut
/// down, crashed or is starting) is the store being unavailable, not a failed statement.
pub(crate) fn db(e: tokio_postgres::Error) -> DataError {
    match e.as_db_error() {
        Some(d) if tenantplane_core::error::pg_connection_lost(d.code().code()) => {
            DataError::Unavailable(format!("{}: {}", d.code().code(), d.message()))
        }
        Some(d) if *d.code() == SqlState::CHECK_VIOLATION && d.constraint().is_some() => {
            DataError::Refused {
                constraint: d.constraint().unwrap_or_default().to_owned(),
            }
        }
        Some(d) => DataError::Db(format!("{}: {}", d.code().code(), d.message())),
        None => DataError::Unavailable(e.to_string()),
    }
}

/// Connection-level failures (server down, refused) are `Unavailable`; the rest `Db`.
fn owner_err(e: tokio_postgres::Error) -> DataError {
    db(e)
}

fn pool_err(e: PoolError) -> DataError {
    match e {
        PoolError::Timeout(_) => DataError::Busy,
        PoolError::Backend(e) => owner_err(e),
        other => DataError::Unavailable(other.to_string()),
    }
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The statement that sets a transaction's context: the schema for name resolution, the
/// tenant id for the RLS policies, both for this transaction only.
const CONTEXT_SQL: &str =
    "SELECT set_config('search_path', $1, true), set_config('app.tenant_id', $2, true)";

/// Sets the transaction's context in one round trip (typed parameters, no separate
/// prepare): the schema for name resolution, the tenant id for the RLS policies.
async fn set_context(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    tenant: &Tenant,
) -> Result<()> {
    use tokio_postgres::types::Type;
    let (path, id) = (quote_ident(schema), tenant.id.to_string());
    tx.execute_typed(CONTEXT_SQL, &[(&path, Type::TEXT), (&id, Type::TEXT)])
        .await
        .map_err(db)?;
    Ok(())
}

/// The schema of a `pg-schema` tenant.
pub fn tenant_schema(id: &TenantId) -> String {
    format!("t_{}", id.as_uuid().simple())
}

/// The database of a `pg-database` tenant.
pub fn tenant_database(id: &TenantId) -> String {
    format!("tp_{}", id.as_uuid().simple())
}

/// Applies `set` to `schema` over an owner connection (one transaction per step, ledger in
/// the schema) and grants `app_role` DML on it.
async fn migrate_schema(
    c: &mut Client,
    schema: &str,
    set: &MigrationSet,
    app_role: &str,
) -> Result<MigrationReport> {
    let s = quote_ident(schema);
    // Concurrent provisioning of pg-shared tenants races on the shared schema: serialise
    // migrations of one schema on an advisory lock held for this session.
    c.execute(
        "SELECT pg_advisory_lock(hashtext('tenantplane-migrate:' || $1))",
        &[&schema],
    )
    .await
    .map_err(owner_err)?;
    let out = migrate_schema_locked(c, &s, set, app_role).await;
    let unlock = c
        .execute(
            "SELECT pg_advisory_unlock(hashtext('tenantplane-migrate:' || $1))",
            &[&schema],
        )
        .await;
    let out = out?;
    unlock.map_err(owner_err)?;
    Ok(out)
}

async fn migrate_schema_locked(
    c: &mut Client,
    s: &str,
    set: &MigrationSet,
    app_role: &str,
) -> Result<MigrationReport> {
    c.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; \
         CREATE TABLE IF NOT EXISTS {s}.tp_migrations (component TEXT NOT NULL, \
         version INTEGER NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version));"
    ))
    .await
    .map_err(owner_err)?;
    let done: std::collections::HashMap<(String, i32), String> = c
        .query(
            &format!("SELECT component, version, checksum FROM {s}.tp_migrations"),
            &[],
        )
        .await
        .map_err(owner_err)?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let mut applied = Vec::new();
    for m in set.iter() {
        let sum = m.checksum(Dialect::Postgres);
        match done.get(&(m.component.to_owned(), m.version as i32)) {
            Some(have) if *have == sum => continue,
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
            message: e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
        };
        let tx = c.transaction().await.map_err(fail)?;
        tx.execute("SELECT set_config('search_path', $1, true)", &[&s])
            .await
            .map_err(fail)?;
        tx.batch_execute(m.postgres).await.map_err(fail)?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.tp_migrations (component, version, name, checksum) \
                 VALUES ($1, $2, $3, $4)"
            ),
            &[&m.component, &(m.version as i32), &m.name, &sum],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        applied.push(format!("{}/{}", m.component, m.version));
    }
    if !applied.is_empty() || done.is_empty() {
        let role = quote_ident(app_role);
        c.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {s} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role}; \
             REVOKE ALL ON {s}.tp_migrations FROM {role};"
        ))
        .await
        .map_err(owner_err)?;
    }
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {s}.tp_migrations"), &[])
        .await
        .map_err(owner_err)?
        .get(0);
    Ok(MigrationReport {
        applied,
        schema_version: n as u32,
    })
}

/// Tables in user schemas of the connected database, other than our ledger.
async fn foreign_tables(c: &Client, schema: Option<&str>) -> Result<(i64, i64)> {
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE table_name <> 'tp_migrations'), \
                    count(*) FILTER (WHERE table_name = 'tp_migrations') \
             FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
               AND ($1::text IS NULL OR table_schema = $1)",
            &[&schema],
        )
        .await
        .map_err(owner_err)?;
    Ok((row.get(0), row.get(1)))
}

impl PgServer {
    /// Connects, makes sure the application role exists without privileges it must not
    /// have, and brings the shared schema and the `pg-database` template up to `set`.
    pub async fn connect(cfg: PgServerConfig, set: Arc<MigrationSet>) -> Result<Self> {
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
        let main_db = owner_cfg
            .get_dbname()
            .map(str::to_owned)
            .or_else(|| owner_cfg.get_user().map(str::to_owned))
            .unwrap_or_else(|| "postgres".into());
        let template_db = format!("{}_tpl", main_db.chars().take(50).collect::<String>());
        let mgr = Manager::from_config(
            owner_cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let owner = Pool::builder(mgr)
            .max_size(2)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| DataError::Unavailable(e.to_string()))?;
        let app = BudgetPool::new(
            app_cfg,
            main_db.clone(),
            PoolLimits {
                budget: cfg.budget.max(1),
                per_database: cfg.per_database.max(1),
                wait: cfg.wait,
                idle_timeout: cfg.idle_timeout,
            },
        );
        let share = FairShare::new(cfg.budget.max(1), cfg.per_tenant, cfg.wait);
        let me = Self {
            cfg,
            set,
            owner_cfg,
            owner,
            app,
            share,
            weights: Arc::default(),
            main_db,
            template_db,
            template: tokio::sync::Mutex::new(false),
            role_checked: tokio::sync::OnceCell::new(),
        };
        // A server that is down at start is not fatal: its tenants fail until it is back,
        // everyone else is served. A misconfigured role is fatal.
        match me.ready().await {
            Ok(()) => {}
            Err(DataError::Unavailable(e)) if !e.contains("application role") => {
                tracing::warn!(server = %me.cfg.name, error = %e, "database server unreachable at start");
            }
            Err(e) => return Err(e),
        }
        Ok(me)
    }

    /// Checks the application role once (lazily, if the server was down at start).
    async fn ready(&self) -> Result<()> {
        self.role_checked
            .get_or_try_init(|| self.ensure_app_role())
            .await
            .map(|_| ())
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
            .map_err(owner_err)?;
        match exists {
            Some(r) if r.get::<_, bool>(0) || r.get::<_, bool>(1) => {
                Err(DataError::Unavailable(format!(
                    "application role {role} is a superuser or has BYPASSRLS; row-level security would not apply"
                )))
            }
            Some(_) => Ok(()),
            None => {
                let sql = format!(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS",
                    quote_ident(role)
                );
                match c.batch_execute(&sql).await {
                    Ok(()) => Ok(()),
                    // Another replica may create it concurrently.
                    Err(e)
                        if e.code() == Some(&SqlState::DUPLICATE_OBJECT)
                            || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(owner_err(e)),
                }
            }
        }
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Application connections in use.
    pub fn usage(&self) -> PoolUse {
        self.app.usage()
    }

    /// The fair share of the server's connections: slots held, requests waiting, refusals.
    pub fn share_use(&self) -> crate::fair::ShareUse {
        self.share.usage()
    }

    /// Uses `weights` for the plans' shares (the tenant data's one table).
    pub(crate) fn set_weights(&mut self, weights: Arc<PlanWeights>) {
        self.weights = weights;
    }

    /// The tenant's share of the budget, then a connection of the pool; both are given back
    /// when the caller drops them.
    async fn tenant_conn(
        &self,
        tenant: &Tenant,
        dbname: &str,
    ) -> Result<(PooledClient, SharePermit)> {
        let permit = self
            .share
            .acquire(key_of(tenant), self.weights.of(tenant))
            .await?;
        let c = self.app.get(dbname).await?;
        Ok((c, permit))
    }

    /// The migration set this server serves.
    pub fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    /// A direct owner connection to `dbname` (tenant databases, the template).
    async fn owner_connect(&self, dbname: &str) -> Result<Client> {
        let mut cfg = self.owner_cfg.clone();
        cfg.dbname(dbname);
        cfg.connect_timeout(Duration::from_secs(10));
        let (client, conn) = cfg.connect(NoTls).await.map_err(owner_err)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "owner connection closed");
            }
        });
        Ok(client)
    }

    async fn database_exists(&self, name: &str) -> Result<bool> {
        let c = self.owner.get().await.map_err(pool_err)?;
        Ok(
            c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .map_err(owner_err)?
                .is_some(),
        )
    }

    /// Creates the `pg-database` template if missing and migrates it to the set (once per
    /// process; serialised across replicas on an advisory lock).
    async fn ensure_template(&self) -> Result<()> {
        let mut ready = self.template.lock().await;
        if *ready {
            return Ok(());
        }
        let c = self.owner.get().await.map_err(pool_err)?;
        c.execute(
            "SELECT pg_advisory_lock(hashtext('tenantplane-template:' || $1))",
            &[&self.template_db],
        )
        .await
        .map_err(owner_err)?;
        let out = async {
            if !self.database_exists(&self.template_db).await? {
                match c
                    .batch_execute(&format!(
                        "CREATE DATABASE {} TEMPLATE template0",
                        quote_ident(&self.template_db)
                    ))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
                    Err(e) => return Err(owner_err(e)),
                }
            }
            let mut t = self.owner_connect(&self.template_db).await?;
            migrate_schema(&mut t, DATABASE_SCHEMA, &self.set, &self.cfg.app_role).await?;
            // Close the connection before anyone clones the template.
            drop(t);
            Ok(())
        }
        .await;
        let unlock = c
            .execute(
                "SELECT pg_advisory_unlock(hashtext('tenantplane-template:' || $1))",
                &[&self.template_db],
            )
            .await;
        out?;
        unlock.map_err(owner_err)?;
        *ready = true;
        Ok(())
    }

    /// Brings the shared tables of `pg-shared` tenants up to date (once per database).
    pub async fn prepare_shared(&self) -> Result<MigrationReport> {
        self.ready().await?;
        let mut c = self.owner.get().await.map_err(pool_err)?;
        migrate_schema(&mut c, SHARED_SCHEMA, &self.set, &self.cfg.app_role).await
    }

    /// Creates (or adopts, if it is ours) the tenant's store and brings it to the set's
    /// version. A schema or database that exists with tables we did not create is refused.
    pub async fn provision(&self, tenant: &Tenant) -> Result<MigrationReport> {
        self.ready().await?;
        match tenant.isolation {
            IsolationMode::PgSchema => {
                let schema = tenant_schema(&tenant.id);
                let mut c = self.owner.get().await.map_err(pool_err)?;
                let (others, ledger) = foreign_tables(&c, Some(&schema)).await?;
                if others > 0 && ledger == 0 {
                    return Err(DataError::Foreign(format!(
                        "schema {schema} exists and holds tables Tenantplane did not create"
                    )));
                }
                migrate_schema(&mut c, &schema, &self.set, &self.cfg.app_role).await
            }
            IsolationMode::PgShared => self.prepare_shared().await,
            IsolationMode::PgDatabase => self.provision_database(tenant).await,
            IsolationMode::Sqlite => Err(not_served(tenant.isolation)),
        }
    }

    async fn provision_database(&self, tenant: &Tenant) -> Result<MigrationReport> {
        let name = tenant_database(&tenant.id);
        if !self.database_exists(&name).await? {
            self.ensure_template().await?;
            let c = self.owner.get().await.map_err(pool_err)?;
            let sql = format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(&self.template_db)
            );
            let mut tries = 0;
            loop {
                match c.batch_execute(&sql).await {
                    Ok(()) => break,
                    Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => break,
                    // The template is briefly in use (another replica migrating it).
                    Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(owner_err(e)),
                }
            }
        }
        let mut c = self.owner_connect(&name).await?;
        let (others, ledger) = foreign_tables(&c, None).await?;
        if others > 0 && ledger == 0 {
            return Err(DataError::Foreign(format!(
                "database {name} exists and holds tables Tenantplane did not create"
            )));
        }
        migrate_schema(&mut c, DATABASE_SCHEMA, &self.set, &self.cfg.app_role).await
    }

    /// Brings an existing tenant store to the set's version (fleet migrations). Unlike
    /// [`provision`](Self::provision), never creates a missing store.
    pub async fn migrate(&self, tenant: &Tenant) -> Result<MigrationReport> {
        self.ready().await?;
        match tenant.isolation {
            IsolationMode::PgSchema => {
                let schema = tenant_schema(&tenant.id);
                let mut c = self.owner.get().await.map_err(pool_err)?;
                let (_, ledger) = foreign_tables(&c, Some(&schema)).await?;
                if ledger == 0 {
                    return Err(DataError::Unavailable(format!(
                        "schema {schema} is missing"
                    )));
                }
                migrate_schema(&mut c, &schema, &self.set, &self.cfg.app_role).await
            }
            IsolationMode::PgShared => self.prepare_shared().await,
            IsolationMode::PgDatabase => {
                let name = tenant_database(&tenant.id);
                if !self.database_exists(&name).await? {
                    return Err(DataError::Unavailable(format!(
                        "database {name} is missing"
                    )));
                }
                let mut c = self.owner_connect(&name).await?;
                migrate_schema(&mut c, DATABASE_SCHEMA, &self.set, &self.cfg.app_role).await
            }
            IsolationMode::Sqlite => Err(not_served(tenant.isolation)),
        }
    }

    /// Drops a `pg-schema` tenant's schema or a `pg-database` tenant's database, or deletes
    /// a `pg-shared` tenant's rows from every shared table. Idempotent.
    pub async fn drop_tenant(&self, tenant: &Tenant) -> Result<()> {
        self.ready().await?;
        let mut c = self.owner.get().await.map_err(pool_err)?;
        match tenant.isolation {
            IsolationMode::PgSchema => {
                c.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(&tenant_schema(&tenant.id))
                ))
                .await
                .map_err(owner_err)?;
            }
            IsolationMode::PgDatabase => {
                let name = tenant_database(&tenant.id);
                self.app.close_idle(&name);
                c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ))
                .await
                .map_err(owner_err)?;
            }
            IsolationMode::PgShared => {
                let tables = shared_tables(&c).await?;
                let tx = c.transaction().await.map_err(owner_err)?;
                // The audit log's guards let its rows go only with the whole tenant.
                tx.batch_execute("SET LOCAL tenantplane.erase = 'on'")
                    .await
                    .map_err(owner_err)?;
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
                    .map_err(owner_err)?;
                }
                tx.commit().await.map_err(owner_err)?;
            }
            IsolationMode::Sqlite => return Err(not_served(tenant.isolation)),
        }
        Ok(())
    }

    /// Where a tenant's transactions go: (database, schema).
    fn route(&self, tenant: &Tenant) -> Result<(String, String)> {
        Ok(match tenant.isolation {
            IsolationMode::PgSchema => (self.main_db.clone(), tenant_schema(&tenant.id)),
            IsolationMode::PgShared => (self.main_db.clone(), SHARED_SCHEMA.to_owned()),
            IsolationMode::PgDatabase => (tenant_database(&tenant.id), DATABASE_SCHEMA.to_owned()),
            IsolationMode::Sqlite => return Err(not_served(tenant.isolation)),
        })
    }

    /// A connection of the application pool to the main database (or `dbname`) with no
    /// tenant context (for leak tests).
    #[doc(hidden)]
    pub async fn raw_app_client(&self, dbname: Option<&str>) -> Result<PooledClient> {
        self.app.get(dbname.unwrap_or(&self.main_db)).await
    }
}

/// The shared schema's tables that hold tenant rows (a `tenant_id` column).
async fn shared_tables(c: &Client) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND column_name = 'tenant_id'",
        &[&SHARED_SCHEMA],
    )
    .await
    .map_err(owner_err)?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

fn not_served(mode: IsolationMode) -> DataError {
    DataError::Unavailable(format!("{mode} tenants are not served by PgServer"))
}
