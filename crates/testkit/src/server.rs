//! Boots the real server in-process on 127.0.0.1:0 with a temporary data directory.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use tenantplane_client::Client;
use tenantplane_control::Control;
use tenantplane_server::{Config, Server, config::PgServerSettings, limits::Limits};
use tenantplane_tenant_data::migrate::{Migration, MigrationSet};
use tokio::{sync::oneshot, task::JoinHandle};

/// How to configure a [`TestServer`].
#[derive(Debug, Clone, Default)]
pub struct TestServerOptions {
    /// `postgres://…` for a PostgreSQL catalog; `None` for embedded SQLite.
    pub catalog_url: Option<String>,
    /// Base domain (default `tp.test`).
    pub base_domain: Option<String>,
    /// Trusted proxy CIDRs.
    pub trusted_proxies: Vec<String>,
    /// Body limit.
    pub max_body_bytes: Option<usize>,
    /// Catalog poll interval (default 100 ms so cross-replica tests are quick).
    pub poll_interval_ms: Option<u64>,
    /// Deletion grace period in hours.
    pub deletion_grace_hours: Option<u64>,
    /// Purge interval in seconds.
    pub purge_interval_secs: Option<u64>,
    /// Reuse this data directory instead of a fresh one (restart tests).
    pub data_dir: Option<PathBuf>,
    /// Bootstrap token (default: a fixed test token).
    pub token: Option<String>,
    /// Per-request time limit in seconds.
    pub request_timeout_secs: Option<u64>,
    /// PostgreSQL servers holding tenants (`[data.servers]`).
    pub data_servers: std::collections::BTreeMap<String, PgServerSettings>,
    /// Tenant-store migrations beyond the built-in components'.
    pub extra_migrations: Vec<Migration>,
    /// Migrate tenant stores at start (default true).
    pub migrate_on_start: Option<bool>,
    /// Rate limits (default: the product defaults).
    pub limits: Option<tenantplane_server::config::LimitsConfig>,
    /// Identity settings (default: product defaults with Argon2id at 8 MiB × 1 pass, so
    /// suites with many logins stay quick; the benchmarks use the real defaults).
    pub identity: Option<tenantplane_server::config::IdentitySettings>,
    /// `[metering] flush_interval_secs`.
    pub metering_flush_secs: Option<u64>,
    /// `[costs]` (the price sheet seeded at start).
    pub costs: Option<tenantplane_server::config::CostsConfig>,
    /// `server.platform_listen`: the platform routes on their own listener.
    pub platform_listen: Option<SocketAddr>,
    /// `server.metrics_listen`: `/metrics` on its own listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Audit sinks added at boot.
    pub audit_sinks: Vec<std::sync::Arc<dyn tenantplane_audit::AuditSink>>,
    /// `[tenants] standby` sizes (default: no standby pools, so suites see only the stores
    /// their tenants own; the standby tests set them).
    pub standby: std::collections::BTreeMap<tenantplane_core::IsolationMode, usize>,
}

/// A running in-process server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bootstrap operator's token.
    pub token: String,
    /// A client authenticated as the bootstrap operator.
    pub client: Client,
    /// The effective configuration.
    pub config: Config,
    /// The control plane (for direct inspection in tests).
    pub control: Arc<Control>,
    /// The rate limits.
    pub limits: Arc<Limits>,
    /// The data directory (kept alive while the server runs, unless supplied).
    pub dir: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The token tests use unless told otherwise.
pub const TEST_TOKEN: &str = "tpo_test-token-0123456789abcdefghijklmnop";

impl TestServer {
    /// A server with an embedded SQLite catalog.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(TestServerOptions::default()).await
    }

    /// A server whose tenants may also live on one PostgreSQL server named `pg1` (a fresh
    /// database of the throwaway cluster) accepting the three PostgreSQL modes.
    pub async fn start_with_pg_data(budget: usize) -> anyhow::Result<Self> {
        Self::start_with(TestServerOptions {
            data_servers: pg_data_server("pg1", budget).await?,
            ..Default::default()
        })
        .await
    }

    /// A server with a fresh PostgreSQL catalog database.
    pub async fn start_pg() -> anyhow::Result<Self> {
        let url = crate::pg::fresh_database().await?;
        Self::start_with(TestServerOptions {
            catalog_url: Some(url),
            ..Default::default()
        })
        .await
    }

    /// A server configured by `opts`.
    pub async fn start_with(opts: TestServerOptions) -> anyhow::Result<Self> {
        let (dir, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let token = opts.token.clone().unwrap_or_else(|| TEST_TOKEN.to_owned());
        let token_file = data_dir.join("bootstrap-token");
        std::fs::create_dir_all(&data_dir)?;
        std::fs::write(&token_file, &token)?;
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse()?;
        config.server.base_domain = opts.base_domain.clone().unwrap_or_else(|| "tp.test".into());
        config.server.trusted_proxies = opts
            .trusted_proxies
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .context("trusted proxy")?;
        if let Some(m) = opts.max_body_bytes {
            config.server.max_body_bytes = m;
        }
        config.server.shutdown_timeout_secs = 5;
        config.server.platform_listen = opts.platform_listen;
        config.server.metrics_listen = opts.metrics_listen;
        if let Some(t) = opts.request_timeout_secs {
            config.server.request_timeout_secs = t;
        }
        config.storage.data_dir = data_dir;
        config.catalog.url = opts.catalog_url.clone().unwrap_or_default();
        config.catalog.poll_interval_ms = opts.poll_interval_ms.unwrap_or(100);
        if let Some(h) = opts.deletion_grace_hours {
            config.tenants.deletion_grace_hours = h;
        }
        if let Some(s) = opts.purge_interval_secs {
            config.tenants.purge_interval_secs = s;
        }
        config.bootstrap.token_file = Some(token_file);
        config.tenants.standby = opts.standby.clone();
        config.data.servers = opts.data_servers.clone();
        if let Some(l) = &opts.limits {
            config.limits = l.clone();
        }
        config.identity =
            opts.identity
                .clone()
                .unwrap_or_else(|| tenantplane_server::config::IdentitySettings {
                    argon2_memory_kib: 8 * 1024,
                    argon2_iterations: 1,
                    ..Default::default()
                });
        if let Some(c) = &opts.costs {
            config.costs = c.clone();
        }
        if let Some(n) = opts.metering_flush_secs {
            config.metering.flush_interval_secs = n;
        }
        if let Some(m) = opts.migrate_on_start {
            config.data.migrate_on_start = m;
        }
        let mut all = tenantplane_control::placement::component_migrations();
        all.extend(opts.extra_migrations.iter().copied());
        let server = Server::build_with_sinks(
            config.clone(),
            MigrationSet::new(all)?,
            opts.audit_sinks.clone(),
        )
        .await?;
        server.bootstrap().await?;
        let control = server.control();
        let limits = server.limits();
        let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.serve(listener, async move {
            let _ = rx.await;
        }));
        let client = Client::new(&format!("http://{addr}"), Some(token.clone()));
        Ok(Self {
            addr,
            token,
            client,
            config,
            control,
            limits,
            dir,
            shutdown: Some(tx),
            handle: Some(handle),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Client {
        self.client.with_token(None)
    }

    /// Graceful shutdown; waits until the server stopped.
    pub async fn stop(mut self) -> anyhow::Result<Option<tempfile::TempDir>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await??;
        }
        Ok(self.dir.take())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `[data.servers.<name>]` for a fresh database of the throwaway cluster, application role
/// `tp_app`.
pub async fn pg_data_server(
    name: &str,
    budget: usize,
) -> anyhow::Result<std::collections::BTreeMap<String, PgServerSettings>> {
    let url = crate::pg::fresh_database().await?;
    Ok([(
        name.to_owned(),
        PgServerSettings {
            url,
            app_role: "tp_app".into(),
            budget,
            ..Default::default()
        },
    )]
    .into())
}
