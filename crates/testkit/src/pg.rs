//! A throwaway PostgreSQL cluster for tests.
//!
//! The cluster is initialised with `initdb` from the newest `/usr/lib/postgresql/*/bin` (or
//! `$TENANTPLANE_PG_BIN`), runs on a free 127.0.0.1 port with fsync off, and is owned by a
//! tiny shell watchdog that stops it and removes its directory as soon as the test process
//! exits — even on a crash — because the watchdog waits on a pipe only the test process holds.
//! When running as root, PostgreSQL runs as the `postgres` user (it refuses to run as root).
//! `$TENANTPLANE_PG_OPTS` adds server options for diagnosis (for example
//! `-c shared_preload_libraries=auto_explain -c auto_explain.log_min_duration=20`); the
//! server log is `log` in the cluster's directory while it runs.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Directory of the PostgreSQL binaries used.
    pub bin_dir: PathBuf,
    _watchdog: Child,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Finds the PostgreSQL binaries.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("TENANTPLANE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install -y postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| anyhow!("no initdb under /usr/lib/postgresql/*/bin"))
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as `postgres` when we are root.
fn pg_command(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn start() -> anyhow::Result<PgCluster> {
    let bin_dir = find_bin_dir()?;
    let root = is_root();
    let base = tempfile::Builder::new()
        .prefix("tenantplane-pg-")
        .tempdir()?
        .keep();
    let data = base.join("data");
    let sock = base.join("sock");
    std::fs::create_dir_all(&sock)?;
    if root {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&base)
            .status()?;
        if !st.success() {
            bail!("chown of {} to postgres failed", base.display());
        }
    }
    let out = pg_command(&bin_dir.join("initdb"), root)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .context("running initdb")?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = free_port()?;
    let postgres = bin_dir.join("postgres");
    let prefix = if root {
        "setpriv --reuid=postgres --regid=postgres --clear-groups --"
    } else {
        ""
    };
    let script = format!(
        r#"{prefix} "$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 -c fsync=off \
           -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
           -c shared_buffers=64MB $6 >"$5/log" 2>&1 &
pid=$!
read _unused || true
kill -INT "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$5""#
    );
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&postgres)
        .arg(&data)
        .arg(port.to_string())
        .arg(&sock)
        .arg(&base)
        .arg(std::env::var("TENANTPLANE_PG_OPTS").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting postgres")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new(bin_dir.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(base.join("log")).unwrap_or_default();
            bail!("postgres did not become ready on port {port}: {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(PgCluster {
        port,
        bin_dir,
        _watchdog: watchdog,
    })
}

/// The cluster of this test binary, started on first use.
pub fn cluster() -> anyhow::Result<&'static PgCluster> {
    CLUSTER
        .get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("throwaway postgres: {e}"))
}

impl PgCluster {
    /// URL of database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    let cluster = tokio::task::spawn_blocking(cluster).await??;
    let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("tp_{}_{n}", std::process::id());
    let (client, conn) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
        .await
        .context("connecting to the throwaway cluster")?;
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    drop(client);
    let _ = task.await;
    Ok(cluster.url(&name))
}

/// A throwaway PgBouncer in transaction pooling mode in front of the cluster.
#[derive(Debug)]
pub struct PgBouncer {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    _watchdog: Child,
}

impl PgBouncer {
    /// URL of database `db` through the bouncer as `user`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }
}

/// Starts PgBouncer (Debian package `pgbouncer`) in transaction mode in front of this test
/// binary's cluster, with `pool_size` server connections per database/user pair and trust
/// authentication for `users`. Stopped when the test process exits.
pub fn pgbouncer(pool_size: u32, users: &[&str]) -> anyhow::Result<PgBouncer> {
    let cluster = cluster()?;
    let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("pgbouncer is not installed (apt-get install -y pgbouncer)"))?;
    let root = is_root();
    let base = tempfile::Builder::new()
        .prefix("tenantplane-pgb-")
        .tempdir()?
        .keep();
    let port = free_port()?;
    let users_txt: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
    std::fs::write(base.join("users.txt"), users_txt)?;
    let ini = format!(
        "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
         listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\n\
         pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n\
         ignore_startup_parameters = extra_float_digits,options\nlogfile = {dir}/pgbouncer.log\n",
        pg = cluster.port,
        dir = base.display(),
    );
    std::fs::write(base.join("pgbouncer.ini"), ini)?;
    if root {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&base)
            .status()?;
        if !st.success() {
            bail!("chown of {} failed", base.display());
        }
    }
    let prefix = if root {
        "setpriv --reuid=postgres --regid=postgres --clear-groups --"
    } else {
        ""
    };
    let script = format!(
        r#"{prefix} "$1" "$2/pgbouncer.ini" >"$2/stdout" 2>&1 &
pid=$!
read _unused || true
kill -INT "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$2""#
    );
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&bin)
        .arg(&base)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting pgbouncer")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(base.join("stdout")).unwrap_or_default();
            bail!("pgbouncer did not listen on {port}: {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(PgBouncer {
        port,
        _watchdog: watchdog,
    })
}
