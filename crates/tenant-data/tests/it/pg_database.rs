//! pg-database specifics on a real PostgreSQL: template cloning, one connection budget over
//! many tenant databases, idle eviction, foreign databases, RLS as a second guard.

use std::{sync::Arc, time::Duration};

use tenantplane_core::IsolationMode;
use tenantplane_tenant_data::{
    DataError, TenantData, builtin_migrations, directory,
    migrate::MigrationSet,
    pg::{PgServer, PgServerConfig, tenant_database},
    sqlite::{SqliteConfig, SqliteRegistry},
};

use crate::conformance::Env;

async fn app_connections(url: &str, dbs: &[String]) -> i64 {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tp_app' AND datname = ANY($1)",
        &[&dbs],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_are_born_migrated_and_budget_bounds_connections_across_databases() {
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    let set = Arc::new(MigrationSet::new(builtin_migrations()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteRegistry::new(SqliteConfig::new(dir.path()), set.clone()).unwrap();
    let server = PgServer::connect(
        PgServerConfig {
            app_role: "tp_app".into(),
            budget: 3,
            per_database: 2,
            wait: Duration::from_secs(20),
            idle_timeout: Duration::from_millis(300),
            ..PgServerConfig::new("pg1", url.clone())
        },
        set.clone(),
    )
    .await
    .unwrap();
    let data = Arc::new(TenantData::new(sqlite, [server], set));
    let mut tenants = Vec::new();
    for i in 0..12 {
        let mut t = tenantplane_core::Tenant::new(
            format!("hospital-{i}").parse().unwrap(),
            format!("Hospital {i}"),
            tenantplane_core::Profile::Hospital,
            "small".parse().unwrap(),
            IsolationMode::PgDatabase,
            time::OffsetDateTime::now_utc(),
        );
        t.placement = Some("pg1".into());
        let r = data.provision(&t).await.unwrap();
        assert!(
            r.applied.is_empty(),
            "cloned from the template, no migration replayed: {r:?}"
        );
        t.schema_version = r.schema_version;
        assert_eq!(t.schema_version, data.schema_version());
        tenants.push(t);
    }
    let dbs: Vec<String> = tenants.iter().map(|t| tenant_database(&t.id)).collect();
    // 12 databases, 60 concurrent transactions, 3 connections at most.
    let peak = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let sampler = {
        let (url, dbs, peak) = (url.clone(), dbs.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let n = app_connections(&url, &dbs).await;
                peak.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for round in 0..5 {
        for t in &tenants {
            let (data, t) = (data.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                directory::create(data.handle(&t).unwrap(), &format!("D{round}"))
                    .await
                    .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    sampler.abort();
    let server = data.server("pg1").unwrap();
    assert!(server.usage().open <= 3, "{:?}", server.usage());
    // Server side, a backend whose connection the pool closed (to make room for another
    // database) leaves pg_stat_activity a moment after its client has gone, so a sample can
    // catch it next to its replacement: allow in-flight exits (two were seen on a loaded
    // machine; the pool's own count above is the exact check).
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("peak server-side application connections: {peak}");
    assert!(
        peak <= 5,
        "server-side connections exceeded the budget: {peak}"
    );
    for t in &tenants {
        assert_eq!(directory::count(data.handle(t).unwrap()).await.unwrap(), 5);
    }
    // Idle connections are closed after the idle timeout.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(server.usage().open, 0, "{:?}", server.usage());
    // Row-level security guards inside the tenant's own database too: the application role
    // without the tenant set sees nothing.
    let c = server.raw_app_client(Some(&dbs[0])).await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM tenant.departments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    drop(c);
    // Dropping a tenant drops its database even with pooled connections to it.
    let _warm = directory::count(data.handle(&tenants[0]).unwrap()).await;
    data.drop_tenant(&tenants[0]).await.unwrap();
    assert_eq!(app_connections(&url, &dbs[..1]).await, 0);
    assert!(
        directory::count(data.handle(&tenants[0]).unwrap())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_database_is_not_adopted_an_empty_one_is() {
    let env = Env::new(IsolationMode::PgDatabase).await;
    let mut t = tenantplane_core::Tenant::new(
        "alpha-hospital".parse().unwrap(),
        "Alpha".into(),
        tenantplane_core::Profile::Hospital,
        "small".parse().unwrap(),
        IsolationMode::PgDatabase,
        time::OffsetDateTime::now_utc(),
    );
    t.placement = Some("pg1".into());
    let mut t2 = t.clone();
    t2.id = tenantplane_core::TenantId::new();
    let admin = tenantplane_testkit::pg::cluster().unwrap().url("postgres");
    let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for id in [t.id, t2.id] {
        c.batch_execute(&format!("CREATE DATABASE \"{}\"", tenant_database(&id)))
            .await
            .unwrap();
    }
    let url = tenantplane_testkit::pg::cluster()
        .unwrap()
        .url(&tenant_database(&t.id));
    let (c2, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c2.batch_execute("CREATE TABLE payroll (id int)")
        .await
        .unwrap();
    drop(c2);
    let e = env.data.provision(&t).await.unwrap_err();
    assert!(matches!(e, DataError::Foreign(_)), "{e}");
    let r = env.data.provision(&t2).await.unwrap();
    assert_eq!(r.schema_version, env.data.schema_version());
}
