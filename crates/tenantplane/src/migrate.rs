//! `tenantplane migrate status|run`: fleet migrations, in this process, against the
//! configured catalog and tenant stores.

use std::{
    io::{IsTerminal, Write},
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::anyhow;
use clap::{Subcommand, ValueEnum};
use tenantplane_control::fleet::{self, Progress, ProgressFn, RunOptions};
use tenantplane_server::Server;

use crate::{flags::ServerFlags, output::Output};

/// `migrate …`.
#[derive(Debug, Subcommand)]
pub enum MigrateCmd {
    /// Tenants per isolation mode and schema version, from the catalog alone.
    Status {
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        flags: ServerFlags,
    },
    /// Bring tenant stores to this binary's schema version (resumable; one tenant's failure
    /// never stops the others; exit code 8 when some failed, 9 when the canary wave halted).
    Run {
        /// Migrate this many tenants first and stop if any of them fails.
        #[arg(long, default_value_t = 0)]
        canary: usize,
        /// Only these tenants (slugs or ids, comma-separated).
        #[arg(long, value_delimiter = ',')]
        tenants: Option<Vec<String>>,
        /// Tenants migrated at once (default: data.migrate_concurrency); each server is also
        /// limited to half its connection budget.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Progress display: a bar on a terminal, JSON lines otherwise (auto).
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressArg,
        #[command(flatten)]
        flags: ServerFlags,
    },
}

/// Progress display of `migrate run`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, JSON lines otherwise.
    Auto,
    /// A progress bar on stderr.
    Bar,
    /// One JSON object per line on stdout.
    Json,
}

/// A migration run with failures (exit code 8) or a halted canary wave (9).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MigrateFailed(pub String, pub u8);

fn api_err(e: tenantplane_control::ControlError) -> anyhow::Error {
    anyhow!("{}", crate::output::describe(e))
}

/// Runs a `migrate` command.
pub async fn run(cmd: MigrateCmd, cfg_file: Option<&Path>) -> anyhow::Result<()> {
    match cmd {
        MigrateCmd::Status { output, flags } => {
            let server = Server::build(flags.load(cfg_file)?).await?;
            let st = fleet::status(&server.control()).await.map_err(api_err)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                Output::Yaml => print!("{}", serde_saphyr::to_string(&st)?),
                Output::Table | Output::Csv => {
                    let rows: Vec<Vec<String>> = st
                        .rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.isolation.to_string(),
                                r.schema_version.to_string(),
                                r.tenants.to_string(),
                                match r.schema_version.cmp(&st.target) {
                                    std::cmp::Ordering::Equal => "up to date",
                                    std::cmp::Ordering::Less => "behind",
                                    std::cmp::Ordering::Greater => "ahead",
                                }
                                .to_owned(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        crate::output::grid(
                            output,
                            &["ISOLATION", "VERSION", "TENANTS", "STATE"],
                            &rows
                        )
                    );
                    println!(
                        "target version {}: {} up to date, {} behind, {} ahead",
                        st.target, st.up_to_date, st.behind, st.ahead
                    );
                }
            }
            Ok(())
        }
        MigrateCmd::Run {
            canary,
            tenants,
            concurrency,
            progress,
            flags,
        } => {
            let cfg = flags.load(cfg_file)?;
            let concurrency = concurrency.unwrap_or(cfg.data.migrate_concurrency).max(1);
            let server = Server::build(cfg).await?;
            let bar = match progress {
                ProgressArg::Bar => true,
                ProgressArg::Json => false,
                ProgressArg::Auto => std::io::stderr().is_terminal(),
            };
            let sink = if bar { bar_sink() } else { json_sink() };
            let report = fleet::run(
                &server.control(),
                RunOptions {
                    canary,
                    tenants,
                    concurrency,
                },
                sink,
            )
            .await
            .map_err(api_err)?;
            if report.halted {
                return Err(MigrateFailed(
                    "the canary wave failed; no other tenant was touched".into(),
                    9,
                )
                .into());
            }
            if !report.failed.is_empty() {
                return Err(MigrateFailed(
                    format!(
                        "{} of {} tenants failed (they are retried by the next run): {}",
                        report.failed.len(),
                        report.total,
                        report
                            .failed
                            .iter()
                            .take(5)
                            .map(|(s, e)| format!("{s}: {e}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    8,
                )
                .into());
            }
            Ok(())
        }
    }
}

fn json_sink() -> ProgressFn {
    let out = Mutex::new(std::io::stdout());
    Arc::new(move |p: &Progress| {
        if let Ok(line) = serde_json::to_string(p) {
            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    })
}

fn bar_sink() -> ProgressFn {
    let err = Mutex::new(std::io::stderr());
    Arc::new(move |p: &Progress| {
        let mut e = err.lock().unwrap_or_else(|x| x.into_inner());
        match p {
            Progress::Plan {
                target,
                total,
                canary,
            } => {
                let _ = writeln!(
                    e,
                    "migrating {total} tenants to schema version {target} (canary wave: {canary})"
                );
            }
            Progress::Tenant {
                slug,
                error,
                done,
                total,
                ..
            } => {
                if let Some(err) = error {
                    let _ = writeln!(e, "\r\x1b[2K  failed: {slug}: {err}");
                }
                let width = 30usize;
                let filled = if *total == 0 {
                    width
                } else {
                    (*done as usize * width) / *total as usize
                };
                let _ = write!(
                    e,
                    "\r\x1b[2K[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    "-".repeat(width - filled)
                );
            }
            Progress::Halted { reason } => {
                let _ = writeln!(e, "\r\x1b[2Khalted: {reason}");
            }
            Progress::Done {
                migrated,
                failed,
                ms,
                ..
            } => {
                let _ = writeln!(
                    e,
                    "\r\x1b[2Kdone: {migrated} migrated, {failed} failed in {:.1} s",
                    *ms as f64 / 1000.0
                );
            }
        }
        let _ = e.flush();
    })
}
