//! `tenantplane audit …`: verify a tenant's (or the platform's) audit chain, list operators'
//! actions. Asks a server; a broken chain exits with status 1 after printing where it
//! breaks.

use clap::Subcommand;
use tenantplane_core::audit_api::{PlatformAuditParams, VerifyReport};

use super::{Remote, api};
use crate::output::{Output, grid, structured};

/// `audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Walk a tenant's audit chain (after sealing what is pending) and report the first
    /// break; `--platform` walks the platform log of operators' actions instead.
    Verify {
        /// The tenant (slug or id).
        #[arg(required_unless_present = "platform", conflicts_with = "platform")]
        tenant: Option<String>,
        /// The platform audit log instead of a tenant's.
        #[arg(long)]
        platform: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Operators' actions (the platform audit log), newest first.
    Log {
        /// Only actions on this tenant (slug or id).
        #[arg(long)]
        tenant: Option<String>,
        /// Only actions of this operator.
        #[arg(long)]
        operator: Option<String>,
        /// At most this many (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Whether the chain held (the caller exits 1 when it did not).
pub async fn run(cmd: AuditCmd) -> anyhow::Result<bool> {
    match cmd {
        AuditCmd::Verify {
            tenant,
            platform,
            remote,
        } => {
            let c = remote.client()?;
            let r = match (&tenant, platform) {
                (Some(t), false) => c.verify_audit(t).await.map_err(api)?,
                _ => c.verify_platform_audit().await.map_err(api)?,
            };
            print_verify(&r, remote.output)?;
            Ok(r.intact)
        }
        AuditCmd::Log {
            tenant,
            operator,
            limit,
            remote,
        } => {
            let page = remote
                .client()?
                .platform_audit(&PlatformAuditParams {
                    tenant,
                    operator,
                    limit: Some(limit),
                    ..Default::default()
                })
                .await
                .map_err(api)?;
            if structured(&page, remote.output)? {
                return Ok(true);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|e| {
                    vec![
                        e.seq.to_string(),
                        e.recorded.clone(),
                        e.agent.clone(),
                        e.action.clone(),
                        e.entity.clone().unwrap_or_default(),
                        e.outcome.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                grid(
                    remote.output,
                    &["SEQ", "RECORDED", "AGENT", "ACTION", "ENTITY", "OUTCOME"],
                    &rows
                )
            );
            Ok(true)
        }
    }
}

fn print_verify(r: &VerifyReport, out: Output) -> anyhow::Result<()> {
    if structured(r, out)? {
        return Ok(());
    }
    let whose = r.tenant.as_deref().unwrap_or("platform");
    match &r.broken {
        None => println!(
            "{whose}: intact — {} entries checked, head {} ({}), checkpoint {}",
            r.checked, r.head_seq, r.head_hash, r.checkpoint_seq
        ),
        Some(b) => println!(
            "{whose}: BROKEN — {b}; {} entries checked before it, head {}",
            r.checked, r.head_seq
        ),
    }
    Ok(())
}
