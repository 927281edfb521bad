//! `tenantplane tenant …`: its arguments and what each subcommand does.

use super::*;

/// `tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Create(TenantCreate),
    /// List tenants.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Only this plan.
        #[arg(long)]
        plan: Option<String>,
        /// Slug prefix or name substring.
        #[arg(long)]
        q: Option<String>,
        /// Page size (1-200); with --all, the size of each request.
        #[arg(long)]
        limit: Option<usize>,
        /// Follow cursors and print every matching tenant.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one tenant (by slug or id).
    Show {
        /// Slug or id.
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change a tenant's name, profile, plan or branding.
    Update(TenantUpdate),
    /// Suspend a tenant.
    Suspend(TenantAct),
    /// Resume a suspended tenant.
    Resume(TenantAct),
    /// Delete a tenant (restorable during the grace period).
    Delete(TenantAct),
    /// Restore a tenant being deleted.
    Restore(TenantAct),
    /// Create or reset a tenant administrator; prints a one-time password once.
    AdminReset {
        /// Slug or id.
        tenant: String,
        /// The administrator's e-mail (default: the tenant's first administrator).
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `tenant create`.
#[derive(Debug, Args)]
pub struct TenantCreate {
    /// Slug: 3-63 lowercase letters, digits, '-'.
    pub slug: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Profile.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Isolation mode.
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationArg>,
    /// Custom domain (repeatable).
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    #[command(flatten)]
    pub branding: BrandingArgs,
    /// Setting as KEY=JSON (repeatable), e.g. --setting daily_users=200.
    #[arg(long = "setting")]
    pub settings: Vec<String>,
    /// Department seeded into the tenant's store (repeatable).
    #[arg(long = "department")]
    pub departments: Vec<String>,
    /// Label for cost reports as KEY=VALUE (repeatable), e.g. --label department=cardiology.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// E-mail of the first tenant administrator (its one-time password is printed once).
    #[arg(long)]
    pub admin_email: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// Branding flags.
#[derive(Debug, Args, Default)]
pub struct BrandingArgs {
    /// Logo URL (https://).
    #[arg(long)]
    pub logo_url: Option<String>,
    /// Primary colour (#rrggbb).
    #[arg(long)]
    pub primary_color: Option<String>,
    /// Secondary colour (#rrggbb).
    #[arg(long)]
    pub secondary_color: Option<String>,
}

impl BrandingArgs {
    fn is_set(&self) -> bool {
        self.logo_url.is_some() || self.primary_color.is_some() || self.secondary_color.is_some()
    }

    fn into_branding(self, base: Branding) -> Branding {
        Branding {
            display_name: base.display_name,
            logo_url: self.logo_url.or(base.logo_url),
            primary_color: self.primary_color.or(base.primary_color),
            secondary_color: self.secondary_color.or(base.secondary_color),
        }
    }
}

/// `tenant update`.
#[derive(Debug, Args)]
pub struct TenantUpdate {
    /// Slug or id.
    pub tenant: String,
    /// New display name.
    #[arg(long)]
    pub name: Option<String>,
    /// New profile.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// New plan.
    #[arg(long)]
    pub plan: Option<String>,
    #[command(flatten)]
    pub branding: BrandingArgs,
    /// Replace the labels with these KEY=VALUE (repeatable); --label '' clears them.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Only apply if the tenant is still at this version (its ETag).
    #[arg(long)]
    pub if_version: Option<u64>,
    #[command(flatten)]
    pub remote: Remote,
}

/// Lifecycle commands.
#[derive(Debug, Args)]
pub struct TenantAct {
    /// Slug or id.
    pub tenant: String,
    /// Why (kept as the status reason).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// Profiles on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    /// Hospital.
    Hospital,
    /// City council.
    Council,
    /// Company.
    Company,
    /// Other.
    Other,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Hospital => Profile::Hospital,
            ProfileArg::Council => Profile::Council,
            ProfileArg::Company => Profile::Company,
            ProfileArg::Other => Profile::Other,
        }
    }
}

/// Isolation modes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IsolationArg {
    /// One SQLite file per tenant.
    Sqlite,
    /// One PostgreSQL database per tenant.
    PgDatabase,
    /// One PostgreSQL schema per tenant.
    PgSchema,
    /// Shared PostgreSQL tables with row-level security.
    PgShared,
}

impl From<IsolationArg> for IsolationMode {
    fn from(i: IsolationArg) -> Self {
        match i {
            IsolationArg::Sqlite => IsolationMode::Sqlite,
            IsolationArg::PgDatabase => IsolationMode::PgDatabase,
            IsolationArg::PgSchema => IsolationMode::PgSchema,
            IsolationArg::PgShared => IsolationMode::PgShared,
        }
    }
}

pub(crate) fn parse_settings(raw: &[String]) -> anyhow::Result<Option<tenantplane_core::Settings>> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut s = tenantplane_core::Settings::new();
    for kv in raw {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--setting expects KEY=VALUE, got '{kv}'"))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
        s.insert(k.to_owned(), value);
    }
    Ok(Some(s))
}

/// `KEY=VALUE` labels; none given → `None`; a single empty one → no labels.
pub(crate) fn parse_labels(
    raw: &[String],
) -> anyhow::Result<Option<tenantplane_core::tenant::Labels>> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut l = tenantplane_core::tenant::Labels::new();
    for kv in raw.iter().filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--label expects KEY=VALUE, got '{kv}'"))?;
        l.insert(k.to_owned(), v.to_owned());
    }
    Ok(Some(l))
}

pub(crate) async fn tenant(cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Create(a) => {
            let c = a.remote.client()?;
            let branding = a
                .branding
                .is_set()
                .then(|| a.branding.into_branding(Branding::default()));
            let req = CreateTenant {
                slug: a.slug,
                display_name: a.name,
                profile: a.profile.map(Into::into),
                plan: a.plan,
                isolation: a.isolation.map(Into::into),
                custom_domains: a.domains,
                branding,
                settings: parse_settings(&a.settings)?,
                departments: a.departments,
                labels: parse_labels(&a.labels)?,
                admin_email: a.admin_email,
            };
            let t = c.create_tenant(&req).await.map_err(api)?;
            print_tenant(&t, a.remote.output)?;
            if let (Some(admin), crate::output::Output::Table) = (&t.initial_admin, a.remote.output)
            {
                crate::output::print_admin(admin);
            }
            Ok(())
        }
        TenantCmd::AdminReset {
            tenant,
            email,
            remote,
        } => {
            let creds = remote
                .client()?
                .admin_reset(&tenant, email)
                .await
                .map_err(api)?;
            if !crate::output::structured(&creds, remote.output)? {
                crate::output::print_admin(&creds);
            }
            Ok(())
        }
        TenantCmd::List {
            status,
            profile,
            plan,
            q,
            limit,
            all,
            remote,
        } => {
            let c = remote.client()?;
            let query = ListQuery {
                status,
                profile,
                plan,
                q,
                limit,
                cursor: None,
            };
            if all {
                let items = c.list_all_tenants(&query).await.map_err(api)?;
                print_tenants(&items, None, remote.output)
            } else {
                let page = c.list_tenants(&query).await.map_err(api)?;
                print_tenants(&page.items, page.next_cursor.as_deref(), remote.output)
            }
        }
        TenantCmd::Show { tenant, remote } => {
            let t = remote.client()?.get_tenant(&tenant).await.map_err(api)?;
            print_tenant(&t, remote.output)
        }
        TenantCmd::Update(a) => {
            let c = a.remote.client()?;
            let branding = if a.branding.is_set() {
                let cur = c.get_tenant(&a.tenant).await.map_err(api)?;
                Some(a.branding.into_branding(cur.branding))
            } else {
                None
            };
            let req = UpdateTenant {
                display_name: a.name,
                profile: a.profile.map(Into::into),
                plan: a.plan,
                branding,
                settings: None,
                labels: parse_labels(&a.labels)?,
            };
            let t = c
                .update_tenant(&a.tenant, &req, a.if_version)
                .await
                .map_err(api)?;
            print_tenant(&t, a.remote.output)
        }
        TenantCmd::Suspend(a) => act(a, "suspend").await,
        TenantCmd::Resume(a) => act(a, "resume").await,
        TenantCmd::Restore(a) => act(a, "restore").await,
        TenantCmd::Delete(a) => {
            let t = a
                .remote
                .client()?
                .delete_tenant(&a.tenant, a.reason)
                .await
                .map_err(api)?;
            print_tenant(&t, a.remote.output)
        }
    }
}

pub(crate) async fn act(a: TenantAct, action: &str) -> anyhow::Result<()> {
    let t = a
        .remote
        .client()?
        .transition(&a.tenant, action, a.reason)
        .await
        .map_err(api)?;
    print_tenant(&t, a.remote.output)
}
