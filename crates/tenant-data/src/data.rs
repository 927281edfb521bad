//! The one entry point to tenant data: [`TenantData`] routes a tenant to its store (SQLite
//! registry or a named PostgreSQL server) and hands out a [`TenantDb`] bound to that tenant.

use std::{collections::BTreeMap, sync::Arc};

use tenantplane_core::{IsolationMode, Tenant};

use crate::{
    DataError, Result,
    fair::PlanWeights,
    migrate::{MigrationReport, MigrationSet},
    pg::{PgServer, TxFuture},
    sqlite::SqliteRegistry,
};

/// All tenant stores of a deployment.
#[derive(Debug)]
pub struct TenantData {
    sqlite: SqliteRegistry,
    servers: BTreeMap<String, Arc<PgServer>>,
    set: Arc<MigrationSet>,
    weights: Arc<PlanWeights>,
}

/// A tenant's database handle: the only way component code reaches tenant data. It is bound
/// to one tenant; no method takes another tenant's id.
#[derive(Debug, Clone, Copy)]
pub enum TenantDb<'a> {
    /// A SQLite file.
    Sqlite(SqliteTenant<'a>),
    /// A PostgreSQL database, schema or shared tables.
    Pg(PgTenant<'a>),
}

impl TenantDb<'_> {
    /// The tenant this handle is bound to (for minting ids that name it).
    pub fn tenant_id(&self) -> tenantplane_core::TenantId {
        match self {
            Self::Sqlite(s) => s.tenant.id,
            Self::Pg(p) => p.tenant.id,
        }
    }

    /// A new resource id minted by this tenant (see `tenantplane_core::id_tags`).
    pub fn mint_id(&self) -> uuid::Uuid {
        tenantplane_core::id_tags::mint(self.tenant_id())
    }
}

/// A `sqlite` tenant's handle.
#[derive(Debug, Clone, Copy)]
pub struct SqliteTenant<'a> {
    reg: &'a SqliteRegistry,
    tenant: &'a Tenant,
}

impl SqliteTenant<'_> {
    /// Runs `f` on the tenant's connection, on the bounded blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.reg.run(self.tenant, f).await
    }
}

/// A PostgreSQL tenant's handle.
#[derive(Debug, Clone, Copy)]
pub struct PgTenant<'a> {
    server: &'a PgServer,
    tenant: &'a Tenant,
}

impl PgTenant<'_> {
    /// Runs `f` in a transaction with the tenant's context set for that transaction only.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnOnce(&'t tokio_postgres::Transaction<'t>) -> TxFuture<'t, T> + Send,
    {
        self.server.transaction(self.tenant, f).await
    }

    /// One statement in a transaction with the tenant's context, in one round trip (see
    /// [`PgServer::query_once`]).
    pub async fn query_once(
        &self,
        sql: &str,
        params: &[crate::literal::Param<'_>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.server.query_once(self.tenant, sql, params).await
    }

    /// One statement in a transaction with the tenant's context as one simple-protocol
    /// message, answers as text (see [`PgServer::query_text_once`]).
    pub async fn query_text_once(
        &self,
        sql: &str,
        params: &[crate::literal::Param<'_>],
    ) -> Result<Vec<tokio_postgres::SimpleQueryRow>> {
        self.server.query_text_once(self.tenant, sql, params).await
    }

    /// A transaction whose closure decides whether to commit (`(value, commit)`).
    pub async fn transaction_deciding<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnOnce(&'t tokio_postgres::Transaction<'t>) -> TxFuture<'t, (T, bool)> + Send,
    {
        self.server.transaction_deciding(self.tenant, f).await
    }
}

enum Backend<'a> {
    Sqlite(&'a SqliteRegistry),
    Pg(&'a PgServer),
}

impl TenantData {
    /// Stores over a SQLite registry and named PostgreSQL servers, all serving `set`.
    pub fn new(
        mut sqlite: SqliteRegistry,
        servers: impl IntoIterator<Item = PgServer>,
        set: Arc<MigrationSet>,
    ) -> Self {
        let weights = Arc::new(PlanWeights::default());
        sqlite.set_weights(weights.clone());
        Self {
            sqlite,
            servers: servers
                .into_iter()
                .map(|mut s| {
                    s.set_weights(weights.clone());
                    (s.name().to_owned(), Arc::new(s))
                })
                .collect(),
            set,
            weights,
        }
    }

    /// Sets every plan's fair-share weight (from the plans' quotas, kept current by the
    /// control plane).
    pub fn set_plan_weights(&self, weights: impl IntoIterator<Item = (String, u32)>) {
        self.weights.replace(weights);
    }

    /// The migrations every tenant store must have.
    pub fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    /// The schema version the binary serves.
    pub fn schema_version(&self) -> u32 {
        self.set.schema_version()
    }

    /// The SQLite registry.
    pub fn sqlite(&self) -> &SqliteRegistry {
        &self.sqlite
    }

    /// The PostgreSQL servers, by name.
    pub fn servers(&self) -> impl Iterator<Item = &Arc<PgServer>> {
        self.servers.values()
    }

    /// One server.
    pub fn server(&self, name: &str) -> Option<&Arc<PgServer>> {
        self.servers.get(name)
    }

    fn backend(&self, t: &Tenant) -> Result<Backend<'_>> {
        if t.isolation == IsolationMode::Sqlite {
            return Ok(Backend::Sqlite(&self.sqlite));
        }
        let name = t.placement.as_deref().ok_or_else(|| {
            DataError::Unavailable(format!("{} tenant without a placement", t.isolation))
        })?;
        self.servers
            .get(name)
            .map(|s| Backend::Pg(s))
            .ok_or_else(|| DataError::Unavailable(format!("unknown database server '{name}'")))
    }

    /// Creates (or adopts, if ours) the tenant's store and migrates it.
    pub async fn provision(&self, t: &Tenant) -> Result<MigrationReport> {
        match self.backend(t)? {
            Backend::Sqlite(r) => r.provision(t).await,
            Backend::Pg(s) => s.provision(t).await,
        }
    }

    /// Brings an existing store to the binary's schema version.
    pub async fn migrate(&self, t: &Tenant) -> Result<MigrationReport> {
        match self.backend(t)? {
            Backend::Sqlite(r) => r.migrate(t).await,
            Backend::Pg(s) => s.migrate(t).await,
        }
    }

    /// The bytes the tenant's store takes: its SQLite file and write-ahead log, its
    /// database, its schema's relations, or its share of the shared tables.
    pub async fn store_bytes(&self, t: &Tenant) -> Result<u64> {
        match self.backend(t)? {
            Backend::Sqlite(r) => {
                let path = r.path_of(&t.id);
                let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                Ok(size(&path) + size(std::path::Path::new(&wal)))
            }
            Backend::Pg(s) => s.store_bytes(t).await,
        }
    }

    /// Drops the tenant's store (file, database, schema or rows). Idempotent.
    pub async fn drop_tenant(&self, t: &Tenant) -> Result<()> {
        match self.backend(t)? {
            Backend::Sqlite(r) => r.drop_tenant(t.id).await,
            Backend::Pg(s) => s.drop_tenant(t).await,
        }
    }

    /// The tenant's handle, if its store is at the version this binary needs (as recorded
    /// in the catalog); [`DataError::Outdated`] otherwise.
    pub fn handle<'a>(&'a self, t: &'a Tenant) -> Result<TenantDb<'a>> {
        let need = self.set.schema_version();
        if t.schema_version != need {
            return Err(DataError::Outdated {
                have: t.schema_version,
                need,
            });
        }
        Ok(match self.backend(t)? {
            Backend::Sqlite(reg) => TenantDb::Sqlite(SqliteTenant { reg, tenant: t }),
            Backend::Pg(server) => TenantDb::Pg(PgTenant { server, tenant: t }),
        })
    }
}
