//! The composition of the HTTP server — the only module that knows every surface: the
//! whole state and its narrow per-surface views (`FromRef`), building the server from its
//! configuration, the routers ([`routes`]), the background tasks ([`tasks`]) and graceful
//! shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::extract::FromRef;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tenantplane_control::Control;

use crate::{
    config::Config,
    limits::Limits,
    state::{BaseDomain, GateState, Links, TenantSide},
};
pub use crate::{
    platform_routes::install_metrics,
    surface::{Surface, request_host},
};

mod keys;
mod routes;
mod tasks;

pub use keys::load_platform_key;

/// Everything the server holds. Handlers never see it whole: each takes the narrow view
/// of its surface (see [`crate::state`]), built here.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    control: Arc<Control>,
    limits: Arc<Limits>,
    config: Arc<Config>,
    links: Links,
    base_domain: BaseDomain,
}

impl FromRef<AppState> for Arc<Control> {
    fn from_ref(s: &AppState) -> Self {
        s.control.clone()
    }
}

impl FromRef<AppState> for Arc<Config> {
    fn from_ref(s: &AppState) -> Self {
        s.config.clone()
    }
}

impl FromRef<AppState> for Arc<Limits> {
    fn from_ref(s: &AppState) -> Self {
        s.limits.clone()
    }
}

impl FromRef<AppState> for BaseDomain {
    fn from_ref(s: &AppState) -> Self {
        s.base_domain.clone()
    }
}

impl FromRef<AppState> for TenantSide {
    fn from_ref(s: &AppState) -> Self {
        TenantSide {
            data: s.control.data().clone(),
            identity: s.control.identity().clone(),
            audit: s.control.audit().clone(),
            index: s.control.index().clone(),
            plans: s.control.plan_quotas().clone(),
            heavy: s.limits.heavy().clone(),
        }
    }
}

impl FromRef<AppState> for GateState {
    fn from_ref(s: &AppState) -> Self {
        GateState {
            index: s.control.index().clone(),
            plans: s.control.plan_quotas().clone(),
            limits: s.limits.clone(),
            meter: s.control.meter().clone(),
            audit: s.control.audit().clone(),
            links: s.links.clone(),
            base_domain: s.base_domain.clone(),
        }
    }
}

/// A configured server, its catalog open and migrated and its tenant index loaded.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    config: Arc<Config>,
    /// The audit writer's queue, taken by `serve_on` (one writer per process).
    audit_queue: std::sync::Mutex<Option<tenantplane_control::audit_writer::AuditQueueReceiver>>,
}

impl Server {
    /// Opens the catalog, migrates it and loads every tenant into memory; tenant stores
    /// carry the migrations of this binary's components.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(
            config,
            tenantplane_control::placement::migrations()
                .context("the binary's migration set is inconsistent")?,
        )
        .await
    }

    /// Like [`build`](Self::build), with the tenant-store migrations of the components this
    /// server hosts given explicitly (embedders adding components; tests of fleet
    /// migrations).
    pub async fn build_with(
        config: Config,
        migrations: tenantplane_tenant_data::migrate::MigrationSet,
    ) -> anyhow::Result<Self> {
        Self::build_with_sinks(config, migrations, Vec::new()).await
    }

    /// Like [`build_with`](Self::build_with), with audit sinks that receive every security
    /// event and clinical access besides the built-in telemetry (a persistent audit log, a
    /// SIEM forwarder): plugged in here, at boot, without touching a handler.
    pub async fn build_with_sinks(
        config: Config,
        migrations: tenantplane_tenant_data::migrate::MigrationSet,
        audit_sinks: Vec<Arc<dyn tenantplane_audit::AuditSink>>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let config = Arc::new(config);
        let location = config.catalog_location();
        let catalog = tenantplane_catalog::open(&location, config.catalog.pool_size)
            .await
            .with_context(|| {
                format!(
                    "opening the catalog at {}",
                    crate::config::redact_url(&location)
                )
            })?;
        catalog.migrate().await.context("migrating the catalog")?;
        let index = Arc::new(tenantplane_control::TenantIndex::new(
            &config.server.base_domain,
            config.server.trusted_proxies.clone(),
        ));
        let data = Arc::new(
            crate::data::open(&config, migrations)
                .await
                .context("opening tenant data stores")?,
        );
        let identity = Arc::new(keys::identity_from(&config)?);
        // Every event reaches its tenant's own log through the asynchronous writer.
        let (audit_queue, audit_rx) =
            tenantplane_control::audit_writer::queue(config.audit.queue_capacity);
        let audit_sinks =
            std::iter::once(Arc::new(audit_queue) as Arc<dyn tenantplane_audit::AuditSink>)
                .chain(audit_sinks);
        // Resource ids name their tenant under a key only this deployment holds. (The
        // first server of a process installs it; tests run several with their own keys
        // and still agree with themselves.)
        tenantplane_core::id_tags::install_key(identity.derived_key("resource-id-tags"));
        let control = Arc::new(Control::new(
            tenantplane_control::Parts {
                catalog,
                index: index.clone(),
                data,
                identity,
                audit: Arc::new(audit_sinks.into_iter().fold(
                    tenantplane_audit::AuditLog::with_telemetry(
                        10_000,
                        50_000,
                        // Tenants by slug in metrics, as the request metrics name them.
                        tenantplane_audit::TelemetrySink::labelled({
                            let index = index.clone();
                            Arc::new(move |id| index.get(&id).map(|t| t.slug.to_string()))
                        }),
                    ),
                    |log, sink| log.with_sink(sink),
                )),
                meter: Arc::new(tenantplane_metering::RequestMeter::with_top_tenants(
                    config.metering.top_tenants,
                )),
            },
            config.control_settings(),
        ));
        let limits = Arc::new(Limits::new(config.limits.clone()));
        if let Some(url) = &config.limits.redis_url {
            let shared = crate::limits::redis::RedisGcra::connect(
                url,
                &config.limits.redis_prefix,
                Duration::from_millis(config.limits.redis_timeout_ms.max(1)),
            )
            .await
            .with_context(|| {
                format!(
                    "limits.redis_url is set but {} does not answer",
                    crate::config::redact_url(url)
                )
            })?;
            limits.share(shared);
            tracing::info!("rate limits shared through Redis");
        }
        control
            .refresh_plans()
            .await
            .map_err(|e| anyhow::anyhow!("loading plans: {e}"))?;
        let default_plan: tenantplane_core::PlanName = config
            .tenants
            .default_plan
            .parse()
            .map_err(|e| anyhow::anyhow!("tenants.default_plan: {e}"))?;
        if control.catalog().get_plan(&default_plan).await?.is_none() {
            anyhow::bail!("tenants.default_plan: no plan named '{default_plan}' in the catalog");
        }
        let loaded = control.sync_index().await?;
        tracing::info!(
            tenants = loaded,
            catalog = control.catalog().backend(),
            "tenant index loaded"
        );
        Ok(Self {
            state: AppState {
                base_domain: BaseDomain(control.base_domain().into()),
                links: Links(Arc::new(arc_swap::ArcSwap::from_pointee(
                    config.server.public(),
                ))),
                control,
                limits,
                config: config.clone(),
            },
            config,
            audit_queue: std::sync::Mutex::new(Some(audit_rx)),
        })
    }

    /// The control plane (for in-process use: CLI commands, tests).
    pub fn control(&self) -> Arc<Control> {
        self.state.control.clone()
    }

    /// The rate limits (for tests).
    pub fn limits(&self) -> Arc<Limits> {
        self.state.limits.clone()
    }

    /// Creates the first operator if there is none and stores the configured price sheet if
    /// the catalog holds none; returns a generated token to show once.
    pub async fn bootstrap(&self) -> anyhow::Result<Option<String>> {
        if let Some(sheet) = self.config.costs.sheet()? {
            self.state
                .control
                .seed_prices(&sheet)
                .await
                .context("storing the configured price sheet")?;
        }
        self.state
            .control
            .bootstrap(
                self.config.bootstrap.token_file.as_deref(),
                &self.config.bootstrap.operator_name,
            )
            .await
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish
    /// (up to `server.shutdown_timeout_secs`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut extra = Vec::new();
        let srv = &self.config.server;
        for (addr, surface, what) in [
            (
                srv.platform_listen,
                Surface::Platform,
                "server.platform_listen",
            ),
            (
                srv.metrics_listen,
                Surface::Metrics,
                "server.metrics_listen",
            ),
        ] {
            if let Some(addr) = addr {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("{what}: cannot listen on {addr}"))?;
                tracing::info!(address = %l.local_addr()?, surface = ?surface, "listening");
                extra.push((l, surface));
            }
        }
        self.serve_on(listener, extra, shutdown).await
    }

    /// Serves the main `listener` and the `extra` listeners (each with its surface) until
    /// `shutdown` completes.
    pub async fn serve_on(
        self,
        listener: TcpListener,
        extra: Vec<(TcpListener, Surface)>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if self.config.server.public_url.is_none()
            && let Ok(addr) = listener.local_addr()
        {
            let mut p = self.config.server.public();
            p.port = Some(addr.port());
            self.state.links.0.store(Arc::new(p));
        }
        let main_surface = if extra.iter().any(|(_, s)| *s == Surface::Platform) {
            Surface::Tenants
        } else {
            Surface::All
        };
        let cancel = CancellationToken::new();
        // The uptime probe requests tenants through the main listener (loopback).
        let probe_base = listener.local_addr().ok().map(|a| {
            let ip = if a.ip().is_unspecified() {
                match a.ip() {
                    std::net::IpAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
                    std::net::IpAddr::V6(_) => {
                        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                    }
                }
            } else {
                a.ip()
            };
            format!("http://{}", SocketAddr::new(ip, a.port()))
        });
        let tasks = self.spawn_background(cancel.clone(), probe_base);
        // The audit writer stops after the listeners: events of in-flight requests are
        // written too.
        let listeners_done = CancellationToken::new();
        let audit_writer = self
            .audit_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|rx| {
                tokio::spawn(tenantplane_control::audit_writer::run(
                    self.state.control.clone(),
                    rx,
                    tenantplane_control::audit_writer::WriterPolicy {
                        flush: Duration::from_millis(self.config.audit.flush_interval_ms),
                        ..Default::default()
                    },
                    listeners_done.clone(),
                ))
            });
        let grace = Duration::from_secs(self.config.server.shutdown_timeout_secs);
        let stop = cancel.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing in-flight requests");
            stop.cancel();
        };
        let mut servers = Vec::new();
        for (l, surface) in std::iter::once((listener, main_surface)).chain(extra) {
            let app = self.router_for(surface);
            let c = cancel.clone();
            servers.push(tokio::spawn(async move {
                axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move { c.cancelled().await })
                    .await
            }));
        }
        let all = async {
            for s in servers {
                match s.await {
                    Ok(r) => r.context("serving")?,
                    Err(e) => anyhow::bail!("a listener task failed: {e}"),
                }
            }
            Ok::<(), anyhow::Error>(())
        };
        let forced = async {
            cancel.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::spawn(graceful);
        tokio::select! {
            r = all => r?,
            () = forced => tracing::warn!("shutdown timeout reached; dropping remaining connections"),
        }
        cancel.cancel();
        listeners_done.cancel();
        if let Some(w) = audit_writer {
            let _ = w.await;
        }
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!("server stopped");
        Ok(())
    }
}
