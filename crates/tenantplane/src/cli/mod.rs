//! Command-line interface: server commands (`serve`, `config`, `operator`, `demo`) and client
//! commands that talk to a server over the API (`tenant`, `domain`, `plan`, `login`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use tenantplane_client::{Client, ClientError, ListQuery};
use tenantplane_core::{
    Branding, IsolationMode, OperatorRole, Profile, Quotas,
    api::{CreateOperator, CreateTenant, OperatorView, UpdatePlan, UpdateTenant},
};
use tenantplane_server::Server;

mod audit;
mod remote;
mod tenant;

pub use audit::AuditCmd;
pub use remote::*;
pub use tenant::*;

use crate::output::{Output, print_plans, print_tenant, print_tenants};
pub use crate::{
    demo::DemoArgs,
    flags::ServerFlags,
    migrate::{MigrateCmd, MigrateFailed},
};

/// Tenantplane: one deployment, many organisations.
#[derive(Debug, Parser)]
#[command(
    name = "tenantplane",
    version,
    about = "Tenantplane: one deployment serving many organisations, each a tenant with hard isolation.",
    long_about = None
)]
pub struct Cli {
    /// Configuration file (default: ./tenantplane.toml when present).
    #[arg(
        long,
        global = true,
        env = "TENANTPLANE_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServerFlags),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage operator accounts directly in the catalog (works without a running server).
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Start a server (or target one) and create the seed's demo tenants.
    Demo(DemoArgs),
    /// Manage tenants on a server.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage tenants' custom domains on a server.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage plans and quotas on a server.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Save the server address and an operator token for later commands.
    Login(LoginArgs),
    /// Fleet migrations of tenant stores (runs here, against the configured catalog and
    /// stores; safe to run while servers serve).
    #[command(subcommand)]
    Migrate(MigrateCmd),
    /// Where tenant data lives: servers, tenant counts, connection use (asks a server).
    #[command(subcommand)]
    Placement(PlacementCmd),
    /// Medical records: load FHIR bundles into a tenant (asks a server).
    #[command(subcommand)]
    Fhir(FhirCmd),
    /// Per-tenant costs from measured usage and the price sheet (asks a server).
    #[command(subcommand)]
    Costs(CostsCmd),
    /// Audit logs: verify a tenant's hash chain, list operators' actions (asks a server).
    #[command(subcommand)]
    Audit(AuditCmd),
}

/// `costs …`.
#[derive(Debug, Subcommand)]
pub enum CostsCmd {
    /// Costs of a window per tenant (or plan, profile, category, …), step by step.
    Report {
        /// today, yesterday, week, lastweek, month, lastmonth, 24h, 7d, or START,END
        /// (RFC 3339 or Unix seconds).
        #[arg(long, default_value = "month")]
        window: String,
        /// window, 1h, 1d, 1w or any duration in whole minutes.
        #[arg(long)]
        step: Option<String>,
        /// Comma-separated: tenant, tenant_id, plan, profile, isolation, placement, status,
        /// and category (last).
        #[arg(long, default_value = "tenant")]
        aggregate: String,
        /// Idle capacity: separate, weighted or even.
        #[arg(long)]
        idle: Option<String>,
        /// Shared costs: weighted, even or separate.
        #[arg(long)]
        shared: Option<String>,
        /// Tenants (slugs, comma-separated) whose costs the others share.
        #[arg(long)]
        share_tenants: Option<String>,
        /// property:value|value,property:value
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// A tenant's monthly statement: costs by category, projection, growth, departments.
    Statement {
        /// The tenant (slug or id).
        tenant: String,
        /// YYYY-MM (default: this month).
        #[arg(long)]
        month: Option<String>,
        /// Write the printable HTML page (in the tenant's branding) to this file.
        #[arg(long)]
        html: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `fhir …`.
#[derive(Debug, Subcommand)]
pub enum FhirCmd {
    /// Load FHIR batch/transaction bundles (`.json`, `.json.bz2`, or directories of them)
    /// into a tenant's records; batches first, then transactions.
    Load {
        /// The tenant (slug or id).
        #[arg(long)]
        tenant: String,
        /// Bundle files or directories (`.json`, `.json.bz2`); none: the 20-patient Synthea
        /// sample shipped in the binary.
        files: Vec<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `placement …`.
#[derive(Debug, Subcommand)]
pub enum PlacementCmd {
    /// List the embedded store and database servers with tenant counts and connection use.
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

/// `config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (secrets redacted) as TOML.
    Print(ServerFlags),
}

/// `operator …`.
#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Create an operator and print its token once.
    Create {
        /// Login name.
        name: String,
        /// Role.
        #[arg(long, value_enum, default_value = "platform-admin")]
        role: RoleArg,
        #[command(flatten)]
        flags: ServerFlags,
    },
    /// Issue a new token for an operator (for lost credentials); re-enables it.
    Reset {
        /// Login name or id.
        name: String,
        #[command(flatten)]
        flags: ServerFlags,
    },
}

/// Operator roles on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Full control.
    PlatformAdmin,
    /// Read-only.
    BillingViewer,
    /// Reports usage events, nothing else (a service token).
    UsageReporter,
}

impl From<RoleArg> for OperatorRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::PlatformAdmin => OperatorRole::PlatformAdmin,
            RoleArg::BillingViewer => OperatorRole::BillingViewer,
            RoleArg::UsageReporter => OperatorRole::UsageReporter,
        }
    }
}

/// `domain …`.
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a custom domain to a tenant.
    Add {
        /// Slug or id.
        tenant: String,
        /// The domain.
        domain: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a custom domain from a tenant.
    Remove {
        /// Slug or id.
        tenant: String,
        /// The domain.
        domain: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `plan …`.
#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// List plans and their quotas.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Change a plan's quotas (unspecified quotas keep their values).
    Update {
        /// Plan name.
        name: String,
        /// New display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Maximum users per tenant.
        #[arg(long)]
        max_users: Option<u64>,
        /// Maximum patients per tenant.
        #[arg(long)]
        max_patients: Option<u64>,
        /// Storage per tenant, in bytes.
        #[arg(long)]
        storage_bytes: Option<u64>,
        /// Requests per minute per tenant.
        #[arg(long)]
        requests_per_minute: Option<u64>,
        /// Requests per month per tenant.
        #[arg(long)]
        requests_per_month: Option<u64>,
        /// Fair-share weight of the plan's tenants (1-100).
        #[arg(long)]
        weight: Option<u32>,
        /// Expensive requests one tenant may run at once (1-1000).
        #[arg(long)]
        max_concurrent_heavy: Option<u32>,
        /// Days the tenants' audit logs keep entries (1-36525; default: by profile).
        #[arg(long)]
        audit_retention_days: Option<u32>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Exit codes: 1 other, 2 usage, 3 invalid input, 4 not found/gone, 5 conflict/precondition,
/// 6 authentication/permission, 7 server unreachable/unavailable, 8 some tenants failed to
/// migrate, 9 the canary wave halted a migration.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(m) = e.downcast_ref::<MigrateFailed>() {
        return m.1;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api(p)) => match p.status {
            400 | 413 | 415 | 422 => 3,
            404 | 410 => 4,
            409 | 412 => 5,
            401 | 403 => 6,
            503 => 7,
            _ => 1,
        },
        Some(ClientError::Transport(_)) => 7,
        _ => 1,
    }
}

fn api(e: ClientError) -> anyhow::Error {
    anyhow::Error::new(e)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg_file = cli.config.as_deref();
    match cli.command {
        Command::Serve(flags) => crate::serve::serve(flags.load(cfg_file)?).await,
        Command::Config(ConfigCmd::Print(flags)) => {
            let cfg = flags.load(cfg_file)?;
            print!("{}", toml::to_string_pretty(&cfg.redacted())?);
            Ok(())
        }
        Command::Operator(cmd) => operator(cmd, cfg_file).await,
        Command::Demo(args) => crate::demo::run(args, cfg_file).await,
        Command::Tenant(cmd) => tenant(cmd).await,
        Command::Audit(cmd) => {
            if audit::run(cmd).await? {
                Ok(())
            } else {
                Err(anyhow!("the audit chain is broken"))
            }
        }
        Command::Domain(cmd) => {
            let (remote, t) = match cmd {
                DomainCmd::Add {
                    tenant,
                    domain,
                    remote,
                } => {
                    let c = remote.client()?;
                    (remote, c.add_domain(&tenant, &domain).await.map_err(api)?)
                }
                DomainCmd::Remove {
                    tenant,
                    domain,
                    remote,
                } => {
                    let c = remote.client()?;
                    (
                        remote,
                        c.remove_domain(&tenant, &domain).await.map_err(api)?,
                    )
                }
            };
            print_tenant(&t, remote.output)
        }
        Command::Plan(PlanCmd::List { remote }) => {
            let plans = remote.client()?.list_plans().await.map_err(api)?;
            print_plans(&plans.items, remote.output)
        }
        Command::Plan(PlanCmd::Update {
            name,
            display_name,
            max_users,
            max_patients,
            storage_bytes,
            requests_per_minute,
            requests_per_month,
            weight,
            max_concurrent_heavy,
            audit_retention_days,
            remote,
        }) => {
            let c = remote.client()?;
            let plans = c.list_plans().await.map_err(api)?;
            let current = plans
                .items
                .iter()
                .find(|p| p.name.as_str() == name)
                .ok_or_else(|| anyhow!("no plan named '{name}'"))?;
            let q = current.quotas;
            let quotas = Quotas {
                max_users: max_users.unwrap_or(q.max_users),
                max_patients: max_patients.unwrap_or(q.max_patients),
                storage_bytes: storage_bytes.unwrap_or(q.storage_bytes),
                requests_per_minute: requests_per_minute.unwrap_or(q.requests_per_minute),
                requests_per_month: requests_per_month.unwrap_or(q.requests_per_month),
                weight: weight.unwrap_or(q.weight),
                max_concurrent_heavy: max_concurrent_heavy.unwrap_or(q.max_concurrent_heavy),
                audit_retention_days: audit_retention_days.or(q.audit_retention_days),
            };
            let p = c
                .update_plan(
                    &name,
                    &UpdatePlan {
                        display_name,
                        quotas: Some(quotas),
                        default_isolation: None,
                    },
                )
                .await
                .map_err(api)?;
            print_plans(&[p], remote.output)
        }
        Command::Login(args) => login(args).await,
        Command::Migrate(cmd) => crate::migrate::run(cmd, cfg_file).await,
        Command::Placement(PlacementCmd::List { remote }) => {
            let p = remote.client()?.placement().await.map_err(api)?;
            crate::output::print_placement(&p, remote.output)
        }
        Command::Costs(CostsCmd::Report {
            window,
            step,
            aggregate,
            idle,
            shared,
            share_tenants,
            filter,
            remote,
        }) => {
            let q = tenantplane_core::usage_api::CostQuery {
                window,
                step,
                aggregate: Some(aggregate),
                idle,
                shared,
                share_tenants,
                filter,
                format: None,
            };
            let c = remote.client()?;
            if remote.output == Output::Csv {
                print!("{}", c.costs_csv(&q).await.map_err(api)?);
                return Ok(());
            }
            let report = c.costs(&q).await.map_err(api)?;
            crate::output::print_costs(&report, remote.output)
        }
        Command::Costs(CostsCmd::Statement {
            tenant,
            month,
            html,
            remote,
        }) => {
            let c = remote.client()?;
            if let Some(path) = html {
                let page = c
                    .statement_text(&tenant, month.as_deref(), "html")
                    .await
                    .map_err(api)?;
                std::fs::write(&path, page)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
                return Ok(());
            }
            if remote.output == Output::Csv {
                print!(
                    "{}",
                    c.statement_text(&tenant, month.as_deref(), "csv")
                        .await
                        .map_err(api)?
                );
                return Ok(());
            }
            let st = c.statement(&tenant, month.as_deref()).await.map_err(api)?;
            crate::output::print_statement(&st, remote.output)
        }
        Command::Fhir(FhirCmd::Load {
            tenant,
            files,
            remote,
        }) => {
            let c = remote.client()?;
            let (bundles, entries, secs) = crate::fhir::load(&c, &tenant, &files).await?;
            println!(
                "loaded {bundles} bundles, {entries} entries into {tenant} in {secs:.1} s ({:.0} entries/s)",
                entries as f64 / secs.max(0.001)
            );
            Ok(())
        }
    }
}

async fn operator(cmd: OperatorCmd, cfg_file: Option<&Path>) -> anyhow::Result<()> {
    let (flags, action) = match &cmd {
        OperatorCmd::Create { flags, .. } | OperatorCmd::Reset { flags, .. } => (flags, &cmd),
    };
    let server = Server::build(flags.load(cfg_file)?).await?;
    let svc = server.control();
    let res = match action {
        OperatorCmd::Create { name, role, .. } => {
            svc.create_operator(CreateOperator {
                name: name.clone(),
                role: Some((*role).into()),
            })
            .await
        }
        OperatorCmd::Reset { name, .. } => svc.reset_operator(name).await,
    };
    let (op, token) = res.map_err(|e| anyhow!("{}", crate::output::describe(e)))?;
    let view = OperatorView::from(&op);
    println!(
        "operator '{}' ({}) token, shown once (only a hash is stored):\n\n    {token}\n",
        view.name, view.role
    );
    println!("use it:  export TENANTPLANE_TOKEN={token}");
    Ok(())
}
