//! How many bytes a tenant's store takes on its PostgreSQL server: its database
//! (`pg-database`), its schema's relations (`pg-schema`), or its share of the shared tables
//! (`pg-shared`: its rows' bytes, each table's indexes and TOAST in the same proportion).

use tenantplane_core::{IsolationMode, Tenant};

use super::{
    PgServer, SHARED_SCHEMA, not_served, owner_err, pool_err, quote_ident, shared_tables,
    tenant_database, tenant_schema,
};
use crate::Result;

impl PgServer {
    /// The bytes `tenant`'s store takes on this server.
    pub async fn store_bytes(&self, tenant: &Tenant) -> Result<u64> {
        self.ready().await?;
        let mut c = self.owner.get().await.map_err(pool_err)?;
        let bytes: i64 = match tenant.isolation {
            IsolationMode::PgDatabase => c
                .query_opt(
                    "SELECT pg_database_size(datname) FROM pg_database WHERE datname = $1",
                    &[&tenant_database(&tenant.id)],
                )
                .await
                .map_err(owner_err)?
                .map(|r| r.get(0))
                .unwrap_or(0),
            IsolationMode::PgSchema => c
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                    &[&tenant_schema(&tenant.id)],
                )
                .await
                .map_err(owner_err)?
                .get(0),
            IsolationMode::PgShared => {
                let tables = shared_tables(&c).await?;
                // Under the tenant's own context, so row security holds for any owner role.
                let tx = c.transaction().await.map_err(owner_err)?;
                tx.execute(
                    "SELECT set_config('app.tenant_id', $1, true)",
                    &[&tenant.id.to_string()],
                )
                .await
                .map_err(owner_err)?;
                let mut total = 0f64;
                for t in tables {
                    let q = format!(
                        "SELECT coalesce(sum(pg_column_size(x.*)), 0)::float8, \
                         pg_total_relation_size('{s}.{t}'::regclass)::float8, \
                         greatest(pg_relation_size('{s}.{t}'::regclass), 1)::float8 \
                         FROM {s}.{t} x WHERE tenant_id = $1",
                        s = quote_ident(SHARED_SCHEMA),
                        t = quote_ident(&t)
                    );
                    let r = tx
                        .query_one(&q, &[tenant.id.as_uuid()])
                        .await
                        .map_err(owner_err)?;
                    let (rows, all, heap): (f64, f64, f64) = (r.get(0), r.get(1), r.get(2));
                    total += rows * (all / heap).max(1.0);
                }
                tx.commit().await.map_err(owner_err)?;
                total.round() as i64
            }
            IsolationMode::Sqlite => return Err(not_served(tenant.isolation)),
        };
        Ok(bytes.max(0) as u64)
    }
}
