//! The platform key and the identity service built on it.

use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;

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

pub(super) fn identity_from(config: &Config) -> anyhow::Result<tenantplane_identity::Identity> {
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
