//! `tenantplane serve`: logging, first-start bootstrap, signals, graceful shutdown.

use tenantplane_server::{Config, Server};

/// Sets up logging from the configuration (`RUST_LOG` wins when set).
pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    // Colour only for a person at a terminal: never escape codes in files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    let _ = if cfg.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The text announcing a generated first-operator token.
pub fn token_text(name: &str, token: &str) -> String {
    format!(
        "\nFirst start: created operator '{name}'. Its token is shown only now (only a hash is stored):\n\n    {token}\n\n\
         Use it:   export TENANTPLANE_TOKEN={token}\n\
         Lost it:  tenantplane operator reset {name}\n"
    )
}

/// Prints a generated first-operator token once (stdout, never the log).
pub fn announce_token(name: &str, token: &str) {
    println!("{}", token_text(name, token));
}

/// Builds, bootstraps and serves until a signal arrives.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    init_logging(&cfg);
    tenantplane_server::app::install_metrics();
    let listen = cfg.server.listen;
    let name = cfg.bootstrap.operator_name.clone();
    let server = Server::build(cfg).await?;
    if let Some(token) = server.bootstrap().await? {
        announce_token(&name, &token);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("tenantplane listening on http://{addr}  (API docs: http://{addr}/api/v1/docs)");
    server.serve(listener, shutdown_signal()).await
}
