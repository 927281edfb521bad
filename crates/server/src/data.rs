//! Tenant data for the server: opening the stores named in `[data]`.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tenantplane_tenant_data::{
    TenantData,
    migrate::MigrationSet,
    pg::{PgServer, PgServerConfig},
    sqlite::{SqliteConfig, SqliteRegistry, fd_based_cap},
};

use crate::config::{Config, redact_url};

/// Opens, with the migrations of every component in `set`, the SQLite registry (`{data_dir}/tenants`) and connects every configured
/// PostgreSQL server. A server that is down is not fatal (its tenants fail until it is back).
pub async fn open(config: &Config, set: MigrationSet) -> anyhow::Result<TenantData> {
    let set = Arc::new(set);
    let mut sc = SqliteConfig::new(config.storage.data_dir.join("tenants"));
    if config.data.sqlite_max_open > 0 {
        sc.max_open = config.data.sqlite_max_open.min(fd_based_cap(usize::MAX));
    }
    if config.data.sqlite_max_blocking > 0 {
        sc.max_blocking = config.data.sqlite_max_blocking;
    }
    sc.busy_wait = Duration::from_millis(config.data.sqlite_busy_wait_ms);
    sc.idle_close = Duration::from_secs(config.data.sqlite_idle_close_secs.max(1));
    sc.cache_kib = config.data.sqlite_cache_kib;
    sc.memory_kib = config.data.sqlite_memory_mib.saturating_mul(1024);
    let sqlite = SqliteRegistry::new(sc, set.clone()).context("opening the tenant file store")?;
    let mut servers = Vec::new();
    for (name, s) in &config.data.servers {
        let cfg = PgServerConfig {
            name: name.clone(),
            url: s.url.clone(),
            app_url: s.app_url.clone(),
            app_role: s.app_role.clone(),
            app_password: s.app_password.clone(),
            budget: s.budget,
            per_database: s.per_database,
            per_tenant: s.per_tenant,
            wait: Duration::from_millis(s.wait_ms),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs.max(1)),
        };
        let server = PgServer::connect(cfg, set.clone())
            .await
            .with_context(|| format!("data.servers.{name} ({})", redact_url(&s.url)))?;
        servers.push(server);
    }
    Ok(TenantData::new(sqlite, servers, set))
}
