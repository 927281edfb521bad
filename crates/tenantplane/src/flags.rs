//! Flags shared by the commands that run the server in this process (`serve`, `config`,
//! `operator`, `demo`, `migrate`): configuration overrides.

use std::path::{Path, PathBuf};

use clap::Args;
use figment::{Figment, providers::Serialized};
use tenantplane_server::Config;

/// Flags that override configuration for server-side commands.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerFlags {
    /// Data directory (embedded catalog, later tenant files).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<String>,
    /// Catalog database URL (postgres://…); default: embedded SQLite in the data directory.
    #[arg(long)]
    pub catalog: Option<String>,
    /// File holding the first operator's token (instead of generating one).
    #[arg(long)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// Base domain for tenant subdomains.
    #[arg(long)]
    pub base_domain: Option<String>,
}

impl ServerFlags {
    fn figment(&self) -> Figment {
        let mut f = Figment::new();
        if let Some(d) = &self.data_dir {
            f = f.merge(Serialized::default("storage.data_dir", d));
        }
        if let Some(l) = &self.listen {
            f = f.merge(Serialized::default("server.listen", l));
        }
        if let Some(c) = &self.catalog {
            f = f.merge(Serialized::default("catalog.url", c));
        }
        if let Some(t) = &self.bootstrap_token_file {
            f = f.merge(Serialized::default("bootstrap.token_file", t));
        }
        if let Some(b) = &self.base_domain {
            f = f.merge(Serialized::default("server.base_domain", b));
        }
        f
    }

    /// Loads the configuration with these overrides.
    pub fn load(&self, file: Option<&Path>) -> anyhow::Result<Config> {
        Ok(Config::load(file, self.figment())?)
    }
}
