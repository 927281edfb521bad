//! Reaching a server: `--server`/`--token` (or the environment, or the file `tenantplane
//! login` writes), and `tenantplane login` itself.

use super::*;

/// How to reach a server.
#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// Server URL (default: from `tenantplane login`, else http://127.0.0.1:8080).
    #[arg(long, env = "TENANTPLANE_SERVER", hide_env_values = true)]
    pub server: Option<String>,
    /// File holding the operator token (default: $TENANTPLANE_TOKEN, else the login file).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Read the token from this file (default: standard input).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// What `tenantplane login` stores.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliFile {
    /// Server URL.
    pub server: Option<String>,
    /// Operator token.
    pub token: Option<String>,
}

pub(crate) fn cli_file_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TENANTPLANE_CLI_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tenantplane").join("cli.toml"))
}

pub(crate) fn read_cli_file() -> CliFile {
    cli_file_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| toml::from_str(&s).ok())
        .unwrap_or_default()
}

pub(crate) fn read_token_file(p: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(p)
        .with_context(|| format!("reading token file {}", p.display()))?;
    Ok(t.trim().to_owned())
}

impl Remote {
    /// A client for the chosen server with the chosen token.
    pub fn client(&self) -> anyhow::Result<Client> {
        let file = read_cli_file();
        let server = self
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token = match &self.token_file {
            Some(p) => Some(read_token_file(p)?),
            None => std::env::var("TENANTPLANE_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .or(file.token),
        };
        Ok(Client::new(&server, token))
    }
}

pub(crate) async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => read_token_file(p)?,
        None => {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s)?;
            s.trim().to_owned()
        }
    };
    let client = Client::new(&args.server, Some(token.clone()));
    let me = client.me().await.map_err(api)?;
    let path =
        cli_file_path().ok_or_else(|| anyhow!("cannot locate a config directory (set HOME)"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = toml::to_string(&CliFile {
        server: Some(args.server.clone()),
        token: Some(token),
    })?;
    write_private(&path, body.as_bytes())?;
    println!(
        "logged in to {} as {} ({}); saved to {}",
        args.server,
        me.name,
        me.role,
        path.display()
    );
    Ok(())
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body)?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, body)?;
    Ok(())
}
