//! Tenant data for the server: opening the stores named in `[data]`, the migration set of
//! this binary, and the placement policy for new tenants.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tenantplane_core::IsolationMode;
use tenantplane_tenant_data::{
    TenantData,
    migrate::MigrationSet,
    pg::{PgServer, PgServerConfig},
    sqlite::{SqliteConfig, SqliteRegistry, fd_based_cap},
};

use crate::config::{Config, redact_url};

/// Every component's migrations, in registration order (a component may build on the
/// tables of those before it).
pub fn component_migrations() -> Vec<tenantplane_tenant_data::migrate::Migration> {
    let mut all = tenantplane_tenant_data::builtin_migrations();
    all.extend_from_slice(tenantplane_identity::schema::MIGRATIONS);
    all.extend_from_slice(tenantplane_records::schema::MIGRATIONS);
    all
}

/// Every component's migrations, as embedded in this binary.
pub fn migrations() -> anyhow::Result<MigrationSet> {
    MigrationSet::new(component_migrations()).context("the binary's migration set is inconsistent")
}

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

/// Where a new tenant of `mode` goes: `None` for sqlite; otherwise the server accepting the
/// mode with the fewest tenants (ties by name). `Err` when no server accepts it.
pub fn place(
    config: &Config,
    counts: &std::collections::HashMap<String, usize>,
    mode: IsolationMode,
) -> Result<Option<String>, String> {
    if mode == IsolationMode::Sqlite {
        return Ok(None);
    }
    config
        .data
        .servers
        .iter()
        .filter(|(_, s)| s.modes.contains(&mode))
        .min_by_key(|(name, _)| (counts.get(*name).copied().unwrap_or(0), (*name).clone()))
        .map(|(name, _)| Some(name.clone()))
        .ok_or_else(|| format!("no database server accepts {mode} tenants (see [data.servers])"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PgServerSettings;

    #[test]
    fn placement_prefers_the_emptiest_server_accepting_the_mode() {
        let mut c = Config::default();
        for n in ["a", "b"] {
            c.data.servers.insert(
                n.into(),
                PgServerSettings {
                    url: "postgres://x/y".into(),
                    ..Default::default()
                },
            );
        }
        c.data.servers.get_mut("b").unwrap().modes = vec![IsolationMode::PgShared];
        let mut counts = std::collections::HashMap::new();
        assert_eq!(place(&c, &counts, IsolationMode::Sqlite), Ok(None));
        assert_eq!(
            place(&c, &counts, IsolationMode::PgShared),
            Ok(Some("a".into()))
        );
        counts.insert("a".to_string(), 3);
        assert_eq!(
            place(&c, &counts, IsolationMode::PgShared),
            Ok(Some("b".into()))
        );
        assert_eq!(
            place(&c, &counts, IsolationMode::PgDatabase),
            Ok(Some("a".into()))
        );
        c.data.servers.clear();
        assert!(place(&c, &counts, IsolationMode::PgSchema).is_err());
    }
}
