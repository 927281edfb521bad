//! `tenantplane demo`: the seed documents' organisations as tenants, in one command.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use tenantplane_catalog::{CatalogError, Conflict};
use tenantplane_client::{Client, ClientError};
use tenantplane_control::ControlError;
use tenantplane_core::{Branding, IsolationMode, Profile, Settings, api::CreateTenant};
use tenantplane_server::Server;

use crate::flags::ServerFlags;

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Create the tenants on this running server instead of starting one.
    #[arg(long, env = "TENANTPLANE_SERVER", hide_env_values = true)]
    pub server: Option<String>,
    /// File holding the operator token (with --server; default $TENANTPLANE_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Create the tenants and exit instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// FHIR bundles to load into each demo hospital (default: the 20-patient Synthea
    /// sample shipped in the binary).
    #[arg(long)]
    pub records_data: Option<PathBuf>,
    #[command(flatten)]
    pub flags: ServerFlags,
}

fn settings(v: serde_json::Value) -> Option<Settings> {
    serde_json::from_value(v).ok()
}

/// The seed's tenants: three hospitals and a city council.
pub fn seed_tenants() -> Vec<CreateTenant> {
    let hospital =
        |slug: &str, name: &str, plan: &str, users: u32, depts: &[&str], colors: (&str, &str)| {
            CreateTenant {
                labels: None,
                slug: slug.into(),
                display_name: name.into(),
                profile: Some(Profile::Hospital),
                plan: Some(plan.into()),
                isolation: Some(IsolationMode::Sqlite),
                custom_domains: vec![],
                branding: Some(Branding {
                    display_name: None,
                    logo_url: None,
                    primary_color: Some(colors.0.into()),
                    secondary_color: Some(colors.1.into()),
                }),
                settings: settings(serde_json::json!({
                    "daily_users": users,
                    "modules": {"records": true}
                })),
                departments: depts.iter().map(|d| (*d).to_owned()).collect(),
                admin_email: Some(format!("tenant-admin@{slug}.example")),
            }
        };
    vec![
        hospital(
            "real-hospital-portugues",
            "Real Hospital Português",
            "medium",
            200,
            &["Emergência", "Cardiologia", "Pediatria", "Oncologia"],
            ("#004b87", "#c8102e"),
        ),
        hospital(
            "hospital-santa-maria",
            "Hospital Santa Maria",
            "large",
            500,
            &[
                "Emergência",
                "Cardiologia",
                "Pediatria",
                "Oncologia",
                "Neurologia",
                "Ortopedia",
                "Obstetrícia",
                "Cuidados Intensivos",
            ],
            ("#00703c", "#f2a900"),
        ),
        hospital(
            "hospital-sao-joao",
            "Hospital São João",
            "medium",
            150,
            &["Emergência", "Medicina Interna", "Cirurgia Geral"],
            ("#5b2c83", "#ffffff"),
        ),
        CreateTenant {
            labels: None,
            slug: "camara-santarem".into(),
            display_name: "Câmara Municipal de Santarém".into(),
            profile: Some(Profile::Council),
            plan: Some("small".into()),
            isolation: Some(IsolationMode::Sqlite),
            custom_domains: vec![],
            branding: Some(Branding {
                display_name: None,
                logo_url: None,
                primary_color: Some("#8a1538".into()),
                secondary_color: Some("#d4af37".into()),
            }),
            settings: settings(
                serde_json::json!({"modules": {"records": false, "legislative": true}}),
            ),
            departments: vec!["Urbanismo".into(), "Ação Social".into(), "Cultura".into()],
            admin_email: Some("tenant-admin@camara-santarem.example".into()),
        },
    ]
}

/// How to reach a tenant, as lines of the instructions block.
fn reach_lines(base: &str, base_domain: &str, slug: &str, name: &str) -> Vec<String> {
    let port = base.rsplit(':').next().unwrap_or("8080");
    vec![
        format!("  {name}"),
        format!("      {base}/t/{slug}/api/tenant"),
        format!("      {base}/t/{slug}/api/tenant/departments"),
        format!("      http://{slug}.{base_domain}:{port}/api/tenant"),
    ]
}

/// Creates the seed tenants through `client`, skipping those that exist.
pub async fn seed_via_api(client: &Client, base_domain: &str) -> anyhow::Result<()> {
    let mut out = vec![format!("Demo tenants on {}:", client.base())];
    for req in seed_tenants() {
        match client.create_tenant(&req).await {
            Ok(_) => {}
            Err(ClientError::Api(p)) if p.code() == "slug-taken" => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {}", req.slug))),
        }
        out.extend(reach_lines(
            client.base(),
            base_domain,
            &req.slug,
            &req.display_name,
        ));
    }
    println!("{}", out.join("\n"));
    Ok(())
}

/// One user per built-in role of the tenant's profile in the tenant `slug`, each with a
/// fresh password (set directly: a demo, so nobody has to change a one-time password
/// first). Returns the lines to print once.
async fn demo_users(svc: &tenantplane_control::Control, slug: &str) -> anyhow::Result<Vec<String>> {
    use tenantplane_identity::users;
    let t = svc
        .get(slug)
        .await
        .map_err(|e| anyhow::anyhow!("reading {slug}: {}", crate::output::describe(e)))?;
    let db = svc
        .data()
        .handle(&t)
        .map_err(|e| anyhow::anyhow!("opening {slug}'s store: {e}"))?;
    let mut out =
        vec!["      users (passwords shown only now; log in with POST /auth/login):".to_owned()];
    for role in tenantplane_core::identity::builtin_roles_for(t.profile) {
        let email: tenantplane_core::Email = format!("{}@{slug}.example", role.name)
            .parse()
            .map_err(|e| anyhow::anyhow!("demo e-mail: {e}"))?;
        let user = match users::by_email(db, &email).await? {
            Some((u, _)) => u,
            None => {
                svc.identity()
                    .create_user(
                        db,
                        email.clone(),
                        role.display_name.clone(),
                        vec![role.name.clone()],
                        vec![],
                        u64::MAX,
                    )
                    .await?
                    .0
            }
        };
        let password = tenantplane_identity::service::one_time_password();
        svc.identity()
            .set_password(t.id, db, user, password.clone())
            .await?;
        out.push(format!(
            "        {:<14} {:<48} {password}",
            role.name.as_str(),
            email.as_str()
        ));
    }
    Ok(out)
}

/// Loads FHIR bundles (from `dir`, else the sample shipped in the binary) into every demo
/// hospital that has no patients yet. Progress goes to stderr.
async fn load_records(
    svc: &tenantplane_control::Control,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let bundles = match dir {
        Some(d) => crate::fhir::read_all(&[d.to_path_buf()])?,
        None => crate::fhir::sample()?,
    };
    if bundles.is_empty() {
        return Ok(());
    }
    for t in seed_tenants()
        .into_iter()
        .filter(|t| t.profile == Some(Profile::Hospital))
    {
        let usage = svc
            .usage(&t.slug)
            .await
            .map_err(|e| anyhow::anyhow!("usage of {}: {}", t.slug, crate::output::describe(e)))?;
        if usage.patients > 0 {
            continue;
        }
        let started = std::time::Instant::now();
        let mut entries = 0;
        for b in &bundles {
            svc.fhir_import(&t.slug, "demo", &b.bytes)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "loading {} into {}: {}",
                        b.path.display(),
                        t.slug,
                        crate::output::describe(e)
                    )
                })?;
            entries += b.entries;
        }
        eprintln!(
            "loaded {entries} FHIR resources from {} bundles into {} in {:.1} s",
            bundles.len(),
            t.slug,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Runs `demo`.
pub async fn run(args: DemoArgs, cfg_file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(server) = &args.server {
        let token = match &args.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("TENANTPLANE_TOKEN").ok(),
        };
        let client = Client::new(server, token);
        let me = client.me().await.map_err(anyhow::Error::new)?;
        let _ = me;
        let base_domain = args
            .flags
            .base_domain
            .clone()
            .unwrap_or_else(|| "localhost".into());
        return seed_via_api(&client, &base_domain).await;
    }
    let cfg = args.flags.load(cfg_file)?;
    crate::serve::init_logging(&cfg);
    tenantplane_server::app::install_metrics();
    let listen = cfg.server.listen;
    let base_domain = cfg.server.base_domain.clone();
    let name = cfg.bootstrap.operator_name.clone();
    let server = Server::build(cfg).await?;
    let token = server.bootstrap().await?;
    // Seed in-process (no token needed: this process owns the catalog).
    let svc = server.control();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let base = format!("http://{}", listener.local_addr()?);
    // What a person must read comes out as one block on stdout once everything is ready;
    // logs and progress go to stderr.
    let mut block = Vec::new();
    if let Some(token) = &token {
        block.push(crate::serve::token_text(&name, token));
    }
    block.push(format!("Demo tenants on {base}:"));
    for req in seed_tenants() {
        let slug = req.slug.clone();
        let name = req.display_name.clone();
        match svc.create(req).await {
            Ok(_) => {}
            Err(ControlError::Catalog(CatalogError::Conflict(Conflict::Slug(_)))) => {}
            Err(e) => anyhow::bail!("creating {slug}: {}", crate::output::describe(e)),
        }
        block.extend(reach_lines(&base, &base_domain, &slug, &name));
        block.extend(demo_users(&svc, &slug).await?);
    }
    load_records(&svc, args.records_data.as_deref()).await?;
    if !args.no_serve {
        block.push(format!(
            "\nServing on {base}; Ctrl-C to stop. Operator API: {base}/api/v1/docs"
        ));
    }
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", block.join("\n"))?;
        out.flush()?;
    }
    if args.no_serve {
        return Ok(());
    }
    server
        .serve(listener, crate::serve::shutdown_signal())
        .await
}
