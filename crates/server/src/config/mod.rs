//! Typed configuration: defaults → `tenantplane.toml` → `TENANTPLANE__SECTION__KEY`
//! environment variables → command-line flags. Unknown keys are rejected everywhere.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod audit;
mod costs;
pub use audit::{AuditConfig, RetentionDays};
pub use costs::{CostsConfig, KubernetesConfig};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and edge behaviour.
    pub server: ServerConfig,
    /// Local storage.
    pub storage: StorageConfig,
    /// The control-plane catalog.
    pub catalog: CatalogConfig,
    /// First-start operator bootstrap.
    pub bootstrap: BootstrapConfig,
    /// Tenant defaults and lifecycle timings.
    pub tenants: TenantsConfig,
    /// Tenant data stores: SQLite files and PostgreSQL servers.
    pub data: DataConfig,
    /// Tenant users: tokens, password hashing, the platform key.
    pub identity: IdentitySettings,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Request metering.
    pub metering: MeteringConfig,
    /// Prices of the cost reports.
    pub costs: CostsConfig,
    /// The tenants' audit logs.
    pub audit: AuditConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Tenants are reachable at `{slug}.{base_domain}`.
    pub base_domain: String,
    /// Peers allowed to name the tenant with `X-Tenant-Id` (CIDRs). Empty: nobody.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish on shutdown, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Per-request timeout, in seconds.
    pub request_timeout_secs: u64,
    /// Hosts on which the platform routes (`/api/v1`, `/healthz`, `/readyz`, `/metrics`)
    /// answer, e.g. `["admin.tenantplane.example"]`. Empty: any host that names no tenant
    /// (tenant hosts — custom domains, `{slug}.{base_domain}`, `/t/{slug}/` — never serve
    /// them).
    pub platform_hosts: Vec<String>,
    /// A separate listener for the platform routes. When set, `listen` serves tenants only.
    pub platform_listen: Option<SocketAddr>,
    /// A separate listener for `/metrics` only (unauthenticated, like a Prometheus
    /// exporter port). When set, `/metrics` answers nowhere else.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token Prometheus presents for `/metrics` on the platform address (besides
    /// any operator token). Unset: operator tokens only.
    pub metrics_token: Option<String>,
    /// The platform's external URL (`https://tenantplane.example`), whose scheme and port
    /// tenant links (`fullUrl`, `Location`, `self`/`next`) use. Unset: `http://{listen}`.
    /// `X-Forwarded-Proto` is honoured only from `trusted_proxies`.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_domain: "localhost".into(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            shutdown_timeout_secs: 30,
            request_timeout_secs: 60,
            platform_hosts: Vec::new(),
            platform_listen: None,
            metrics_listen: None,
            metrics_token: None,
            public_url: None,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where embedded data lives (the SQLite catalog, later tenant files).
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tenantplane-data"),
        }
    }
}

/// `[catalog]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `postgres://…` for a PostgreSQL catalog; empty for `{data_dir}/catalog.db`.
    pub url: String,
    /// PostgreSQL connections in the catalog pool.
    pub pool_size: usize,
    /// How often the in-memory tenant index polls the catalog for changes made by other
    /// replicas or processes, in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            poll_interval_ms: 1000,
        }
    }
}

/// `[bootstrap]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// A file holding the first operator's token (for automation); when unset, a token is
    /// generated and printed once.
    pub token_file: Option<PathBuf>,
    /// Name of the first operator.
    pub operator_name: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            token_file: None,
            operator_name: "admin".into(),
        }
    }
}

/// `[tenants]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    /// Plan of new tenants when the request names none.
    pub default_plan: String,
    /// How long a deleted tenant stays restorable, in hours.
    pub deletion_grace_hours: u64,
    /// How often the purger looks for tenants whose grace period ended, in seconds.
    pub purge_interval_secs: u64,
    /// Standby pool size per isolation mode (`sqlite`, and per server for `pg-schema`,
    /// `pg-shared`, `pg-database`): stores provisioned ahead so a new tenant claims one
    /// instead of waiting for its store to be created. 0 or absent: no pool.
    pub standby: std::collections::BTreeMap<tenantplane_core::IsolationMode, usize>,
    /// How often the standby pools are checked (also right after each claim), in seconds.
    pub standby_refill_secs: u64,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            default_plan: "small".into(),
            deletion_grace_hours: 7 * 24,
            purge_interval_secs: 60,
            standby: tenantplane_core::IsolationMode::ALL
                .iter()
                .map(|m| (*m, 2))
                .collect(),
            standby_refill_secs: 30,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Most tenant SQLite databases open at once; 0 means 256 (fewer when the
    /// file-descriptor limit is low). The peak of open databases sets the memory SQLite
    /// keeps.
    pub sqlite_max_open: usize,
    /// Most SQLite jobs running at once; 0 means two per core.
    pub sqlite_max_blocking: usize,
    /// How long a request waits for SQLite capacity before 503, in milliseconds.
    pub sqlite_busy_wait_ms: u64,
    /// A tenant SQLite database unused for this many seconds is closed (its page cache
    /// freed); it reopens on the next request (~0.1 ms).
    pub sqlite_idle_close_secs: u64,
    /// Page cache per open tenant SQLite database, in KiB.
    pub sqlite_cache_kib: u32,
    /// SQLite's memory in the whole process, in MiB: past it, SQLite frees cached pages of
    /// any open database before allocating more (0: no limit).
    pub sqlite_memory_mib: u64,
    /// Bring tenant stores up to date when the server starts.
    pub migrate_on_start: bool,
    /// Tenants migrated at once by `migrate run` and at start (bounded further by each
    /// server's connection budget).
    pub migrate_concurrency: usize,
    /// PostgreSQL servers holding tenants, by name.
    pub servers: std::collections::BTreeMap<String, PgServerSettings>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            sqlite_max_open: 0,
            sqlite_max_blocking: 0,
            sqlite_busy_wait_ms: 5000,
            sqlite_idle_close_secs: 60,
            sqlite_cache_kib: 128,
            sqlite_memory_mib: 16,
            migrate_on_start: true,
            migrate_concurrency: 4,
            servers: Default::default(),
        }
    }
}

/// `[data.servers.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgServerSettings {
    /// Owner connection URL; its database holds pg-schema and pg-shared tenants.
    pub url: String,
    /// Application connection URL when it differs (e.g. PgBouncer in transaction mode).
    pub app_url: Option<String>,
    /// Application role (created if missing; must not be superuser or BYPASSRLS).
    pub app_role: String,
    /// Its password.
    pub app_password: Option<String>,
    /// Most application connections open on this server at once.
    pub budget: usize,
    /// Most application connections to one pg-database tenant database.
    pub per_database: usize,
    /// Connections one tenant may hold at once per unit of its plan's weight (never the
    /// whole budget); tenants waiting for a connection are served in fair order.
    pub per_tenant: usize,
    /// How long a request waits for a connection before 503, in milliseconds.
    pub wait_ms: u64,
    /// Idle application connections are closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Isolation modes placed on this server.
    pub modes: Vec<tenantplane_core::IsolationMode>,
}

impl Default for PgServerSettings {
    fn default() -> Self {
        use tenantplane_core::IsolationMode as M;
        // One source of truth for the limits: the tenant-data defaults.
        let d = tenantplane_tenant_data::pg::PgServerConfig::new("", "");
        Self {
            url: String::new(),
            app_url: None,
            app_role: d.app_role,
            app_password: None,
            budget: d.budget,
            per_database: d.per_database,
            per_tenant: d.per_tenant,
            wait_ms: d.wait.as_millis() as u64,
            idle_timeout_secs: d.idle_timeout.as_secs(),
            modes: vec![M::PgDatabase, M::PgSchema, M::PgShared],
        }
    }
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// File holding the platform key (64 hex characters) that seals tenants' private
    /// signing keys. Unset: `{data_dir}/platform.key`, generated (mode 0600) on first start.
    pub platform_key_file: Option<PathBuf>,
    /// The platform key itself (prefer `platform_key_file`); redacted when printed.
    pub platform_key: Option<String>,
    /// Access-token lifetime, in seconds.
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime, in seconds.
    pub refresh_ttl_secs: u64,
    /// Argon2id memory, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Admit `http://` single sign-on providers and redirect URIs (development and tests
    /// only; production providers are `https`).
    pub sso_allow_http: bool,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        let a = tenantplane_identity::password::Argon2Params::default();
        Self {
            platform_key_file: None,
            platform_key: None,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            argon2_memory_kib: a.memory_kib,
            argon2_iterations: a.iterations,
            argon2_parallelism: a.parallelism,
            sso_allow_http: false,
        }
    }
}

/// `[limits]`: request rate limits (GCRA) and login protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per minute from one client address (0 disables).
    pub per_ip_per_minute: u32,
    /// Most client addresses tracked at once; past it the oldest state is dropped.
    pub max_tracked_ips: usize,
    /// Per-tenant limits from the plan's `requests_per_minute`.
    pub per_tenant: bool,
    /// Login attempts per minute from one client address (a hospital's staff may share
    /// one NAT address; accounts are protected by the lockout below).
    pub login_per_ip_per_minute: u32,
    /// Failed logins for one account before it is locked out.
    pub login_failures_before_lockout: u32,
    /// Longest lockout, in seconds (doubling from 1 s).
    pub login_lockout_max_secs: u64,
    /// Share the request limits with other replicas through this Redis
    /// (`redis://[:password@]host:port/db`); unset: limits are per process.
    pub redis_url: Option<String>,
    /// Prefix of the rate-limit keys in Redis.
    pub redis_prefix: String,
    /// Longest wait for Redis per check, in milliseconds; past it the request is limited
    /// by the process's own limiter.
    pub redis_timeout_ms: u64,
    /// How long an expensive request (search, history, Bundle) waits for one of its
    /// tenant's `max_concurrent_heavy` slots before 429, in milliseconds.
    pub heavy_wait_ms: u64,
    /// Most expensive requests one tenant runs at once whatever its plan; 0: half the
    /// machine's cores (at least one), so no tenant's expensive work takes every core.
    pub heavy_per_tenant_max: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_ip_per_minute: 1000,
            max_tracked_ips: 200_000,
            per_tenant: true,
            login_per_ip_per_minute: 300,
            login_failures_before_lockout: 5,
            login_lockout_max_secs: 900,
            redis_url: None,
            redis_prefix: "tenantplane:".into(),
            redis_timeout_ms: 50,
            heavy_wait_ms: 2000,
            heavy_per_tenant_max: 0,
        }
    }
}

/// `[metering]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// How often this replica adds its request counts to the catalog, in seconds (the
    /// monthly request quota is exact up to one interval of the other replicas' traffic;
    /// a crash loses at most one interval of this replica's usage).
    pub flush_interval_secs: u64,
    /// Minute rows of the usage ledger older than this many hours are rolled up to hours.
    pub minute_rows_hours: u64,
    /// Idempotency keys of meter events are kept this many days; older events are refused.
    pub event_key_days: u64,
    /// How often each tenant's store size, users and patients are sampled, in seconds (0:
    /// never; storage costs then have no data).
    pub sample_interval_secs: u64,
    /// The busiest tenants that get latency histograms of their own (`/metrics`); the
    /// others share the per-route-class and per-plan histograms, so series stay bounded.
    pub top_tenants: usize,
    /// Tenants (slugs) that always get histograms of their own.
    pub pinned_tenants: Vec<String>,
    /// How often every active tenant is probed through the full edge path, in seconds
    /// (its uptime as the SLA sees it; 0: never).
    pub probe_interval_secs: u64,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            flush_interval_secs: 5,
            minute_rows_hours: 24,
            event_key_days: 7,
            sample_interval_secs: 900,
            top_tenants: 20,
            pinned_tenants: Vec::new(),
            probe_interval_secs: 60,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `tenantplane_server=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be merged or contained unknown/ill-typed keys.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A named config file does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Config {
    /// What the control plane needs of this configuration.
    pub fn control_settings(&self) -> tenantplane_control::ControlSettings {
        tenantplane_control::ControlSettings {
            base_domain: self.server.base_domain.clone(),
            default_plan: self.tenants.default_plan.clone(),
            deletion_grace_hours: self.tenants.deletion_grace_hours,
            servers: self
                .data
                .servers
                .iter()
                .map(|(name, s)| (name.clone(), s.modes.clone()))
                .collect(),
            standby: self.tenants.standby.clone(),
            audit_retention: tenantplane_control::audit_ops::Retention {
                hospital_days: self.audit.retention_days.hospital,
                other_days: self.audit.retention_days.other,
            },
            event_window: tenantplane_metering::events::EventWindow {
                keys_for_secs: (self.metering.event_key_days.max(1) * 86_400) as i64,
                minutes_for_secs: (self.metering.minute_rows_hours.max(1) * 3_600) as i64,
            },
            alerting: tenantplane_control::alerts::AlertSettings {
                backoff_secs: self.costs.webhook_backoff_secs,
                max_attempts: self.costs.webhook_max_attempts,
            },
            kubernetes: self.costs.kubernetes.as_ref().map(|k| {
                tenantplane_control::kube::KubeSettings {
                    prometheus_url: k.prometheus_url.clone(),
                    cluster: k.cluster.clone(),
                    tenant_label: k.tenant_label.clone(),
                    resolution_secs: k.resolution_secs,
                }
            }),
        }
    }

    /// Loads defaults, then `file` (explicit, must exist) or `./tenantplane.toml` (if
    /// present), then the environment, then `overrides` (flags, as a partial TOML-like tree).
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) if !f.exists() => return Err(ConfigError::MissingFile(f.to_path_buf())),
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None if Path::new("tenantplane.toml").exists() => {
                fig = fig.merge(Toml::file_exact("tenantplane.toml"))
            }
            None => {}
        }
        fig = fig.merge(Env::prefixed("TENANTPLANE__").split("__"));
        fig = fig.merge(overrides);
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Semantic checks beyond types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bd = &self.server.base_domain;
        let ok = !bd.is_empty()
            && bd.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "server.base_domain '{bd}' is not a lowercase domain name"
            )));
        }
        for h in &self.server.platform_hosts {
            if tenantplane_core::DomainName::from_host_header(h).is_none()
                && h.parse::<std::net::IpAddr>().is_err()
            {
                return Err(ConfigError::Invalid(format!(
                    "server.platform_hosts: '{h}' is not a host name"
                )));
            }
        }
        if let Some(t) = &self.server.metrics_token
            && t.len() < 16
        {
            return Err(ConfigError::Invalid(
                "server.metrics_token must be at least 16 characters".into(),
            ));
        }
        if let Some(u) = &self.server.public_url {
            PublicUrl::parse(u)
                .map_err(|e| ConfigError::Invalid(format!("server.public_url: {e}")))?;
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes must be at least 1024".into(),
            ));
        }
        for (name, srv) in &self.data.servers {
            if name.is_empty()
                || name.len() > 40
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(ConfigError::Invalid(format!(
                    "data.servers.{name}: names are 1-40 lowercase letters, digits or '-'"
                )));
            }
            if !(srv.url.starts_with("postgres://") || srv.url.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid(format!(
                    "data.servers.{name}.url must be a postgres:// URL"
                )));
            }
            if srv.budget == 0 || srv.per_database == 0 {
                return Err(ConfigError::Invalid(format!(
                    "data.servers.{name}: budget and per_database must be at least 1"
                )));
            }
            if srv.modes.contains(&tenantplane_core::IsolationMode::Sqlite) {
                return Err(ConfigError::Invalid(format!(
                    "data.servers.{name}.modes: sqlite tenants live in files, not on a server"
                )));
            }
        }
        self.costs.sheet()?;
        self.audit.validate()?;
        if self.metering.sample_interval_secs > 3_600 {
            return Err(ConfigError::Invalid(
                "metering.sample_interval_secs is at most 3600 (each hour needs a sample)".into(),
            ));
        }
        if self.data.migrate_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "data.migrate_concurrency must be at least 1".into(),
            ));
        }
        let id = &self.identity;
        if id.access_ttl_secs < 30 || id.access_ttl_secs > 24 * 3600 {
            return Err(ConfigError::Invalid(
                "identity.access_ttl_secs must be between 30 and 86400".into(),
            ));
        }
        if id.refresh_ttl_secs < id.access_ttl_secs {
            return Err(ConfigError::Invalid(
                "identity.refresh_ttl_secs must be at least identity.access_ttl_secs".into(),
            ));
        }
        if id.argon2_memory_kib < 8 * id.argon2_parallelism.max(1)
            || id.argon2_iterations == 0
            || id.argon2_parallelism == 0
        {
            return Err(ConfigError::Invalid(
                "identity.argon2_*: memory ≥ 8 KiB per lane, iterations and parallelism ≥ 1".into(),
            ));
        }
        if let Some(k) = &id.platform_key
            && let Err(e) = tenantplane_identity::keys::PlatformKey::parse(k)
        {
            return Err(ConfigError::Invalid(format!("identity.platform_key: {e}")));
        }
        if self.catalog.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "catalog.poll_interval_ms must be greater than 0".into(),
            ));
        }
        Ok(())
    }

    /// Where the catalog lives: the configured URL or the embedded SQLite file.
    pub fn catalog_location(&self) -> String {
        if self.catalog.url.is_empty() {
            self.storage
                .data_dir
                .join("catalog.db")
                .to_string_lossy()
                .into_owned()
        } else {
            self.catalog.url.clone()
        }
    }

    /// A copy safe to print: passwords in URLs replaced by `***`.
    pub fn redacted(&self) -> Self {
        let mut c = self.clone();
        c.catalog.url = redact_url(&c.catalog.url);
        c.limits.redis_url = c.limits.redis_url.as_deref().map(redact_url);
        if c.server.metrics_token.is_some() {
            c.server.metrics_token = Some("***".into());
        }
        if c.identity.platform_key.is_some() {
            c.identity.platform_key = Some("***".into());
        }
        for srv in c.data.servers.values_mut() {
            srv.url = redact_url(&srv.url);
            srv.app_url = srv.app_url.as_deref().map(redact_url);
            if srv.app_password.is_some() {
                srv.app_password = Some("***".into());
            }
        }
        c
    }
}

/// The scheme and port of the platform's external URL (`server.public_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host as written (no port).
    pub host: String,
    /// An explicit port (`None`: the scheme's default).
    pub port: Option<u16>,
}

impl PublicUrl {
    /// Parses `http(s)://host[:port][/]`.
    pub fn parse(u: &str) -> Result<Self, String> {
        let (scheme, rest) = if let Some(r) = u.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = u.strip_prefix("http://") {
            ("http", r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err("expected scheme://host[:port] with no path".into());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(p) => (h, Some(p)),
                Err(_) if rest.starts_with('[') && rest.ends_with(']') => (rest, None),
                Err(_) => return Err("the port is not a number".into()),
            },
            _ => (rest, None),
        };
        let port = port.filter(|p| !matches!((scheme, p), ("http", 80) | ("https", 443)));
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `:port` when explicit, else empty.
    pub fn port_suffix(&self) -> String {
        self.port.map(|p| format!(":{p}")).unwrap_or_default()
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.port_suffix())
    }
}

impl ServerConfig {
    /// The platform's external URL: `public_url`, else `http://{listen}`.
    pub fn public(&self) -> PublicUrl {
        self.public_url
            .as_deref()
            .and_then(|u| PublicUrl::parse(u).ok())
            .unwrap_or_else(|| PublicUrl {
                scheme: "http",
                host: match self.listen.ip() {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                },
                port: Some(self.listen.port()),
            })
    }
}

/// Replaces the password of `scheme://user:password@host…` (and `password=` pairs) by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map(|j| start + j)
            .unwrap_or(out.len());
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://tp:s3cret@db:5432/catalog"),
            "postgres://tp:***@db:5432/catalog"
        );
        assert_eq!(
            redact_url("postgres://db/catalog?user=x&password=hunter2&sslmode=require"),
            "postgres://db/catalog?user=x&password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://tp@db/c"), "postgres://tp@db/c");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }
}
