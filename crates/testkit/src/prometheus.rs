//! A throwaway Prometheus for tests, from the installed `prometheus` (Debian package
//! `prometheus`), on a free 127.0.0.1 port, scraping the given targets every second, its
//! data in a temporary directory. Like Redis, it is owned by a shell watchdog that stops it
//! and removes its directory when the handle is dropped or the test process exits.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A running throwaway Prometheus. Dropping it stops the server.
#[derive(Debug)]
pub struct Prometheus {
    /// Its base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    _watchdog: Child,
}

impl Prometheus {
    /// Starts one scraping `targets` (`host:port`, path `/metrics`) every second.
    pub fn start(targets: &[String]) -> anyhow::Result<Self> {
        Self::start_with(targets, None, &[])
    }

    /// Starts one scraping `targets` every second with `bearer` as the scrape's token,
    /// evaluating the rule files `rules` (copied in) every second.
    pub fn start_with(
        targets: &[String],
        bearer: Option<&str>,
        rules: &[std::path::PathBuf],
    ) -> anyhow::Result<Self> {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("prometheus is not installed (apt-get install -y prometheus)")?;
        let port = crate::pg::free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("tp-prometheus-")
            .tempdir()?
            .keep();
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut rule_files = String::new();
        for (i, r) in rules.iter().enumerate() {
            let name = format!("rules-{i}.yml");
            std::fs::copy(r, dir.join(&name))
                .with_context(|| format!("copying {}", r.display()))?;
            rule_files.push_str(&format!("  - {name}\n"));
        }
        let auth = bearer
            .map(|b| format!("    authorization:\n      credentials: '{b}'\n"))
            .unwrap_or_default();
        let rule_files = if rule_files.is_empty() {
            String::new()
        } else {
            format!("rule_files:\n{rule_files}")
        };
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: fixture\n    honor_labels: true\n{auth}    static_configs:\n      - targets: [{list}]\n"
            ),
        )?;
        let script = r#""$1" --config.file="$3/prometheus.yml" --storage.tsdb.path="$3/data" \
   --web.listen-address="127.0.0.1:$2" --log.level=warn >"$3/log" 2>&1 &
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
            .context("starting prometheus")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                bail!("prometheus did not become ready on {port}: {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            _watchdog: watchdog,
        })
    }
}
