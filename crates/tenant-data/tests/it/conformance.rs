//! One behavioural suite, run against all four isolation modes through the public
//! [`TenantData`] / [`TenantDb`] API and a real component (the directory), including the
//! cross-tenant leak cases: tenant A's operations never read, count, update or delete B's
//! rows.

use std::{sync::Arc, time::Duration};

use tenantplane_core::{IsolationMode, Profile, Tenant};
use tenantplane_tenant_data::{
    DataError, TenantData, builtin_migrations, directory,
    migrate::MigrationSet,
    pg::{PgServer, PgServerConfig},
    sqlite::{SqliteConfig, SqliteRegistry},
};

pub struct Env {
    pub data: TenantData,
    pub mode: IsolationMode,
    /// The superuser URL of the PostgreSQL database (PostgreSQL modes).
    pub pg_url: Option<String>,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn new(mode: IsolationMode) -> Self {
        Self::with(mode, builtin_migrations(), 8).await
    }

    pub async fn with(
        mode: IsolationMode,
        migrations: Vec<tenantplane_tenant_data::migrate::Migration>,
        budget: usize,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let set = Arc::new(MigrationSet::new(migrations).unwrap());
        let mut cfg = SqliteConfig::new(dir.path());
        cfg.max_open = 4;
        cfg.max_blocking = 2;
        let sqlite = SqliteRegistry::new(cfg, set.clone()).unwrap();
        let mut servers = Vec::new();
        let mut pg_url = None;
        if mode != IsolationMode::Sqlite {
            let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
            pg_url = Some(url.clone());
            servers.push(
                PgServer::connect(
                    PgServerConfig {
                        app_role: "tp_app".into(),
                        budget,
                        wait: Duration::from_secs(5),
                        ..PgServerConfig::new("pg1", url)
                    },
                    set.clone(),
                )
                .await
                .unwrap(),
            );
        }
        Self {
            data: TenantData::new(sqlite, servers, set),
            mode,
            pg_url,
            _dir: dir,
        }
    }

    /// A provisioned tenant of this mode, recorded at the current schema version.
    pub async fn tenant(&self, slug: &str) -> Tenant {
        let mut t = Tenant::new(
            slug.parse().unwrap(),
            slug.into(),
            Profile::Hospital,
            "small".parse().unwrap(),
            self.mode,
            time::OffsetDateTime::now_utc(),
        );
        if self.mode != IsolationMode::Sqlite {
            t.placement = Some("pg1".into());
        }
        let report = self.data.provision(&t).await.unwrap();
        t.schema_version = report.schema_version;
        t
    }
}

fn names(ds: &[directory::Department]) -> Vec<&str> {
    ds.iter().map(|d| d.name.as_str()).collect()
}

pub async fn crud(env: Env) {
    let a = env.tenant("alpha-hospital").await;
    let db = env.data.handle(&a).unwrap();
    assert_eq!(directory::count(db).await.unwrap(), 0);
    let cardio = directory::create(db, "Cardiologia").await.unwrap();
    directory::create(db, "Pediatria").await.unwrap();
    assert!(matches!(
        directory::create(db, "Cardiologia").await,
        Err(DataError::Conflict(_))
    ));
    assert_eq!(
        names(&directory::list(db).await.unwrap()),
        ["Cardiologia", "Pediatria"]
    );
    let got = directory::get(db, cardio.id).await.unwrap().unwrap();
    assert_eq!(got, cardio);
    assert!(
        directory::rename(db, cardio.id, "Cardiologia Geral")
            .await
            .unwrap()
    );
    assert!(matches!(
        directory::rename(db, cardio.id, "Pediatria").await,
        Err(DataError::Conflict(_))
    ));
    assert!(
        !directory::rename(db, uuid::Uuid::now_v7(), "X")
            .await
            .unwrap()
    );
    assert!(directory::delete(db, cardio.id).await.unwrap());
    assert!(!directory::delete(db, cardio.id).await.unwrap());
    assert_eq!(directory::count(db).await.unwrap(), 1);
}

pub async fn seeding_is_idempotent(env: Env) {
    let a = env.tenant("alpha-hospital").await;
    let db = env.data.handle(&a).unwrap();
    let names_in: Vec<String> = ["Emergência", "Oncologia"].map(String::from).into();
    assert_eq!(directory::seed(db, &names_in).await.unwrap(), 2);
    assert_eq!(directory::seed(db, &names_in).await.unwrap(), 0);
    assert_eq!(directory::count(db).await.unwrap(), 2);
}

pub async fn no_cross_tenant_reads_counts_updates_or_deletes(env: Env) {
    let a = env.tenant("alpha-hospital").await;
    let b = env.tenant("bravo-hospital").await;
    let (da, db) = (env.data.handle(&a).unwrap(), env.data.handle(&b).unwrap());
    let a1 = directory::create(da, "Cardiologia").await.unwrap();
    directory::create(da, "Pediatria").await.unwrap();
    let b1 = directory::create(db, "Cardiologia").await.unwrap();
    // Same names in two tenants do not collide; each sees only its own.
    assert_eq!(directory::count(da).await.unwrap(), 2);
    assert_eq!(directory::count(db).await.unwrap(), 1);
    assert_eq!(
        directory::list(db)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [b1.id]
    );
    // B cannot read, rename or delete A's row by id.
    assert_eq!(directory::get(db, a1.id).await.unwrap(), None);
    assert!(!directory::rename(db, a1.id, "Hijacked").await.unwrap());
    assert!(!directory::delete(db, a1.id).await.unwrap());
    assert_eq!(
        directory::get(da, a1.id).await.unwrap().unwrap().name,
        "Cardiologia"
    );
    // Interleaved use of the same pooled connections keeps counts exact.
    for i in 0..10 {
        let (h, other) = if i % 2 == 0 { (da, db) } else { (db, da) };
        directory::create(h, &format!("Dept {i}")).await.unwrap();
        directory::count(other).await.unwrap();
    }
    assert_eq!(directory::count(da).await.unwrap(), 7);
    assert_eq!(directory::count(db).await.unwrap(), 6);
    // Dropping A leaves B whole; A's store is gone.
    env.data.drop_tenant(&a).await.unwrap();
    env.data.drop_tenant(&a).await.unwrap();
    assert_eq!(directory::count(db).await.unwrap(), 6);
    let gone = directory::count(env.data.handle(&a).unwrap()).await;
    match env.mode {
        // Shared tables remain; the tenant's rows are deleted.
        IsolationMode::PgShared => assert_eq!(gone.unwrap(), 0),
        _ => assert!(gone.is_err(), "{gone:?}"),
    }
}

pub async fn outdated_tenants_are_not_served(env: Env) {
    let mut a = env.tenant("alpha-hospital").await;
    a.schema_version -= 1;
    assert!(matches!(
        env.data.handle(&a),
        Err(DataError::Outdated { .. })
    ));
}

pub async fn provisioning_is_idempotent(env: Env) {
    let a = env.tenant("alpha-hospital").await;
    directory::create(env.data.handle(&a).unwrap(), "Cardiologia")
        .await
        .unwrap();
    let again = env.data.provision(&a).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.schema_version, a.schema_version);
    assert_eq!(
        directory::count(env.data.handle(&a).unwrap())
            .await
            .unwrap(),
        1,
        "re-provisioning keeps data"
    );
    let m = env.data.migrate(&a).await.unwrap();
    assert!(m.applied.is_empty());
}

pub async fn concurrent_tenants(env: Env) {
    let env = Arc::new(env);
    let mut tenants = Vec::new();
    for i in 0..6 {
        tenants.push(env.tenant(&format!("hospital-{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        for j in 0..=i {
            let (env, t) = (env.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                directory::create(env.data.handle(&t).unwrap(), &format!("D{j}"))
                    .await
                    .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (i, t) in tenants.iter().enumerate() {
        assert_eq!(
            directory::count(env.data.handle(t).unwrap()).await.unwrap(),
            i as u64 + 1
        );
    }
}

macro_rules! tenant_data_conformance {
    ($($mode:ident => $iso:expr),* $(,)?) => {
        $(
            mod $mode {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn crud() {
                    super::crud(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn seeding_is_idempotent() {
                    super::seeding_is_idempotent(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn no_cross_tenant_reads_counts_updates_or_deletes() {
                    super::no_cross_tenant_reads_counts_updates_or_deletes(Env::new($iso).await)
                        .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn outdated_tenants_are_not_served() {
                    super::outdated_tenants_are_not_served(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn provisioning_is_idempotent() {
                    super::provisioning_is_idempotent(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn concurrent_tenants() {
                    super::concurrent_tenants(Env::new($iso).await).await;
                }
            }
        )*
    };
}

tenant_data_conformance! {
    sqlite => IsolationMode::Sqlite,
    pg_database => IsolationMode::PgDatabase,
    pg_schema => IsolationMode::PgSchema,
    pg_shared => IsolationMode::PgShared,
}
