//! Composition of the HTTP server: state, router, background tasks and graceful shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::Request,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use tenantplane_control::Control;

use crate::{
    api,
    config::Config,
    platform_routes::{api_not_found, healthz, method_not_allowed, metrics_route, readyz},
    problem::ApiError,
    surface::{Dispatch, check_host, scope_request_id},
    tenant_api,
};
pub use crate::{
    platform_routes::install_metrics,
    surface::{Surface, request_host},
};

/// What the server holds: the control plane and the edge's own parts.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The control plane.
    pub control: Arc<Control>,
    /// Rate limits.
    pub limits: Arc<crate::limits::Limits>,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The platform's external URL (scheme, host, port) that tenant links are built on.
    public: Arc<arc_swap::ArcSwap<crate::config::PublicUrl>>,
}

impl AppState {
    /// The platform's external URL.
    pub fn public(&self) -> Arc<crate::config::PublicUrl> {
        self.public.load_full()
    }

    /// Sets the platform's external URL (the listener's real port when none is configured).
    pub fn set_public(&self, p: crate::config::PublicUrl) {
        self.public.store(Arc::new(p));
    }
}

/// A configured server, its catalog open and migrated and its tenant index loaded.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    config: Arc<Config>,
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
        let identity = Arc::new(identity_from(&config)?);
        // Resource ids name their tenant under a key only this deployment holds. (The
        // first server of a process installs it; tests run several with their own keys
        // and still agree with themselves.)
        tenantplane_core::id_tags::install_key(identity.derived_key("resource-id-tags"));
        let control = Arc::new(Control::new(
            tenantplane_control::Parts {
                catalog,
                index,
                data,
                identity,
                audit: Arc::new(tenantplane_audit::AuditLog::default()),
                meter: Arc::new(tenantplane_metering::RequestMeter::new()),
            },
            config.control_settings(),
        ));
        let limits = Arc::new(crate::limits::Limits::new(config.limits.clone()));
        if let Some(url) = &config.limits.redis_url {
            let shared = crate::shared_limits::RedisGcra::connect(
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
                public: Arc::new(arc_swap::ArcSwap::from_pointee(config.server.public())),
                control,
                limits,
                config: config.clone(),
            },
            config,
        })
    }

    /// The control plane (for in-process use: CLI commands, tests).
    pub fn control(&self) -> Arc<Control> {
        self.state.control.clone()
    }

    /// The rate limits (for tests).
    pub fn limits(&self) -> Arc<crate::limits::Limits> {
        self.state.limits.clone()
    }

    /// Creates the first operator if there is none; returns a generated token to show once.
    pub async fn bootstrap(&self) -> anyhow::Result<Option<String>> {
        self.state
            .control
            .bootstrap(
                self.config.bootstrap.token_file.as_deref(),
                &self.config.bootstrap.operator_name,
            )
            .await
    }

    /// The router of a listener that serves every surface (tenants and the platform).
    pub fn router(&self) -> Router {
        self.router_for(Surface::All)
    }

    /// The router of a listener serving `surface`. Platform routes answer only on the
    /// platform's hosts (never on a tenant's), tenant routes only on tenant addresses;
    /// `/metrics` needs a bearer token unless it has its own listener.
    pub fn router_for(&self, surface: Surface) -> Router {
        let state = self.state.clone();
        let metrics_open = surface == Surface::Metrics;
        let metrics_here = match surface {
            Surface::Metrics => true,
            _ => self.config.server.metrics_listen.is_none(),
        };
        let mut platform = Router::new();
        if surface != Surface::Metrics {
            platform = platform
                .route("/healthz", get(healthz))
                .route("/readyz", get(readyz))
                .merge(api::router())
                .route("/api/v1/{*rest}", axum::routing::any(api_not_found));
        } else {
            platform = platform.route("/healthz", get(healthz));
        }
        if metrics_here {
            platform = platform.route(
                "/metrics",
                get(move |s: State<AppState>, h: axum::http::HeaderMap| {
                    metrics_route(s, h, metrics_open)
                }),
            );
        }
        let tenant = tenant_api::service(state.clone());
        let platform = platform.method_not_allowed_fallback(method_not_allowed);
        // Paths the platform does not serve go to tenant resolution (which answers
        // `tenant-not-found` when the address names no tenant) on a listener that serves
        // tenants; a platform-only listener answers 404.
        let platform = if matches!(surface, Surface::All) {
            platform.fallback_service(tenant.clone())
        } else {
            platform.fallback(api_not_found)
        }
        .with_state(state.clone());
        let dispatch = Dispatch {
            state: state.clone(),
            platform: if surface == Surface::Tenants {
                None
            } else {
                Some(platform)
            },
            tenant: matches!(surface, Surface::All | Surface::Tenants),
            platform_hosts: self
                .config
                .server
                .platform_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        };
        let dispatch = Arc::new(dispatch);
        Router::new()
            .fallback_service(tower::service_fn(move |req: axum::extract::Request| {
                let d = dispatch.clone();
                let tenant = tenant.clone();
                async move { Ok::<_, std::convert::Infallible>(d.route(req, tenant).await) }
            }))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                limit_per_ip,
            ))
            .layer(DefaultBodyLimit::max(self.config.server.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_secs(self.config.server.request_timeout_secs.max(1)),
                request_timeout,
            ))
            // Outside the limits and the timeout: their answers under /fhir are
            // OperationOutcomes too.
            .layer(axum::middleware::from_fn(crate::fhir_api::outcome_errors))
            .layer(axum::middleware::from_fn(check_host))
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let rid = req
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|r| r.header_value().to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(),
                        request_id = %rid, tenant_id = tracing::field::Empty)
                }),
            )
            .layer(axum::middleware::from_fn(scope_request_id))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
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
            self.state.set_public(p);
        }
        let main_surface = if extra.iter().any(|(_, s)| *s == Surface::Platform) {
            Surface::Tenants
        } else {
            Surface::All
        };
        let cancel = CancellationToken::new();
        let tasks = self.spawn_background(cancel.clone());
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
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!("server stopped");
        Ok(())
    }

    fn spawn_background(&self, cancel: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let svc = self.state.control.clone();
        let poll = Duration::from_millis(self.config.catalog.poll_interval_ms);
        let c1 = cancel.clone();
        let c3 = cancel.clone();
        let c4 = cancel.clone();
        let poller = tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = c1.cancelled() => break,
                    _ = tick.tick() => {
                        match svc.sync_index().await {
                            Ok(n) if n > 0 => tracing::debug!(changed = n, "tenant index refreshed"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "tenant index refresh failed"),
                        }
                        metrics::gauge!("tenantplane_tenants_indexed").set(svc.index().len() as f64);
                        if let Err(e) = svc.refresh_plans().await {
                            tracing::warn!(error = %e, "plan refresh failed");
                        }
                    }
                }
            }
        });
        let svc = self.state.control.clone();
        let every = Duration::from_secs(self.config.tenants.purge_interval_secs.max(1));
        let idle_every =
            Duration::from_secs((self.config.data.sqlite_idle_close_secs / 2).clamp(1, 30));
        let purger = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut idle_tick = tokio::time::interval(idle_every);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = svc.purge_due().await {
                            tracing::warn!(error = %e, "purge run failed");
                        }
                    }
                    _ = idle_tick.tick() => {
                        let freed = svc.identity().hasher().trim(Duration::from_secs(30));
                        if freed > 0 {
                            tracing::debug!(bytes = freed, "freed idle Argon2 memory");
                        }
                        match svc.data().sqlite().close_idle().await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(closed = n, "closed idle tenant databases"),
                            Err(e) => tracing::warn!(error = %e, "closing idle tenant databases failed"),
                        }
                    }
                }
            }
        });
        // At start: finish tenants left mid-provisioning, then (if configured) bring every
        // tenant store to this binary's schema version. Tenants are served as soon as their
        // own store is at the version (the handle checks), not after the whole fleet.
        let svc = self.state.control.clone();
        let migrate = self.config.data.migrate_on_start;
        let concurrency = self.config.data.migrate_concurrency;
        // Compile the FHIR schema validators of the common types off the request path.
        tokio::task::spawn_blocking(|| {
            tenantplane_records::validate::warm_up(tenantplane_records::validate::COMMON_TYPES)
        });
        let startup = tokio::spawn(async move {
            match svc.resume_provisioning().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tenants = n, "resumed interrupted provisioning"),
                Err(e) => tracing::warn!(error = %e, "resuming provisioning failed"),
            }
            if migrate {
                let opts = tenantplane_control::fleet::RunOptions {
                    canary: 0,
                    tenants: None,
                    concurrency,
                };
                let log: tenantplane_control::fleet::ProgressFn = Arc::new(|p| {
                    if let tenantplane_control::fleet::Progress::Done {
                        migrated,
                        failed,
                        ms,
                        ..
                    } = p
                        && (*migrated > 0 || *failed > 0)
                    {
                        tracing::info!(migrated, failed, ms, "tenant stores migrated at start");
                    }
                });
                if let Err(e) = tenantplane_control::fleet::run(&svc, opts, log).await {
                    tracing::warn!(error = %e, "migrating tenant stores at start failed");
                }
            }
        });
        let limits = self.state.limits.clone();
        let housekeeping = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = c3.cancelled() => break,
                    _ = tick.tick() => {
                        limits.housekeeping();
                        metrics::gauge!("tenantplane_rate_limit_tracked_ips").set(limits.tracked_ips() as f64);
                    }
                }
            }
        });
        let svc = self.state.control.clone();
        let every = Duration::from_secs(self.config.metering.flush_interval_secs.max(1));
        let metering = tokio::spawn(tenantplane_metering::flush_loop(
            svc.meter().clone(),
            svc.catalog().clone(),
            every,
            c4,
        ));
        vec![poller, purger, startup, housekeeping, metering]
    }
}

/// The platform key: `identity.platform_key`, else `identity.platform_key_file`, else
/// `{data_dir}/platform.key` (generated with mode 0600 on first start).
pub fn load_platform_key(
    config: &Config,
) -> anyhow::Result<tenantplane_identity::keys::PlatformKey> {
    use tenantplane_identity::keys::PlatformKey;
    if let Some(k) = &config.identity.platform_key {
        return PlatformKey::parse(k).map_err(|e| anyhow::anyhow!("identity.platform_key: {e}"));
    }
    let path = match &config.identity.platform_key_file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading identity.platform_key_file {}", p.display()))?;
            return PlatformKey::parse(&text)
                .map_err(|e| anyhow::anyhow!("identity.platform_key_file {}: {e}", p.display()));
        }
        None => config.storage.data_dir.join("platform.key"),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            PlatformKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let k = PlatformKey::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(f, "{}", k.to_hex())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "platform key generated; back it up with the data directory");
            Ok(k)
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("reading {}", path.display()))),
    }
}

fn identity_from(config: &Config) -> anyhow::Result<tenantplane_identity::Identity> {
    let c = &config.identity;
    let cfg = tenantplane_identity::IdentityConfig {
        access_ttl: Duration::from_secs(c.access_ttl_secs),
        refresh_ttl: Duration::from_secs(c.refresh_ttl_secs),
        argon2: tenantplane_identity::password::Argon2Params {
            memory_kib: c.argon2_memory_kib,
            iterations: c.argon2_iterations,
            parallelism: c.argon2_parallelism,
        },
        sso_allow_http: c.sso_allow_http,
        ..Default::default()
    };
    tenantplane_identity::Identity::new(cfg, load_platform_key(config)?)
        .map_err(|e| anyhow::anyhow!("identity: {e}"))
}

/// Per-client-address rate limit on every route but health checks and metrics.
async fn limit_per_ip(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    let Some(ip) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(req).await;
    };
    match state.limits.admit_ip(ip).await {
        None => next.run(req).await,
        Some(d) => match d.problem("too many requests from this address; slow down") {
            Some(p) => {
                metrics::counter!("tenantplane_rate_limited_total", "policy" => "ip").increment(1);
                p.into_response()
            }
            None => {
                let mut res = next.run(req).await;
                // The tenant limit (inner) reports its own state; the tighter one wins.
                if !res.headers().contains_key(&crate::limits::RATELIMIT) {
                    for (k, v) in d.headers() {
                        res.headers_mut().insert(k, v);
                    }
                }
                res
            }
        },
    }
}

/// Bounds every request's time; a request over the limit gets a 503 problem.
async fn request_timeout(
    State(limit): State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs(), "request timed out");
            ApiError::unavailable("the request took too long", 1).into_response()
        }
    }
}
