//! A throwaway Redis for tests, from the installed `redis-server` (Debian package
//! `redis-server`), on a free 127.0.0.1 port, without persistence.
//!
//! Like the PostgreSQL cluster, it is owned by a shell watchdog that stops it and removes
//! its directory when the test process drops the handle or exits, even on a crash.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A running throwaway Redis. Dropping it stops the server.
#[derive(Debug)]
pub struct RedisServer {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    _watchdog: Child,
}

impl RedisServer {
    /// Starts one.
    pub fn start() -> anyhow::Result<Self> {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("redis-server is not installed (apt-get install -y redis-server)")?;
        let port = crate::pg::free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("tp-redis-")
            .tempdir()?
            .keep();
        let script = r#""$1" --port "$2" --bind 127.0.0.1 --save '' --appendonly no \
   --dir "$3" --protected-mode yes --daemonize no >"$3/log" 2>&1 &
pid=$!
read _unused || true
kill -TERM "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$3""#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(bin)
            .arg(port.to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                bail!("redis-server did not listen on {port}: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            port,
            _watchdog: watchdog,
        })
    }

    /// `redis://127.0.0.1:{port}/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}
