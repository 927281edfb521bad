//! Audit-log write throughput per isolation mode:
//!
//! - **writer batches**: the asynchronous writer's path — `audit_log::append` of 500 entries
//!   (inserted and sealed in one transaction), 40 batches across 8 tenants, 2 at a time;
//! - **one per transaction**: an entry inserted in its own transaction then sealed, as a
//!   lone write followed by its seal (the worst case: a tenant writing one record at a time,
//!   4 tenants at once);
//! - **verification**: `audit_log::verify` of a tenant's whole chain (entries per second).
//!
//! `cargo bench -p tenantplane-tenant-data --bench audit`. PostgreSQL: `TP_BENCH_PG_URL`
//! (a superuser URL of a durable server, `fsync=on`, for numbers users compare), else the
//! testkit's throwaway cluster. SQLite files use `synchronous=FULL` as the server does by
//! default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration, time::Instant};

use tenantplane_audit::{Category, Entry, chain::CheckpointKey};
use tenantplane_core::{IsolationMode, Profile, Tenant};
use tenantplane_tenant_data::{
    TenantData, TenantDb, audit_log, builtin_migrations,
    migrate::MigrationSet,
    pg::{PgServer, PgServerConfig},
    sqlite::{SqliteConfig, SqliteRegistry},
};

fn entry(i: usize) -> Entry {
    Entry::now(
        Category::Clinical,
        "read",
        "R",
        "user/0190c0de-0000-7000-8000-000000000001".into(),
    )
    .entity(format!("Patient/0190c0de-0000-7000-8000-{i:012}"))
    .origin(Some("10.1.2.3".into()), Some(format!("req-{i}")))
}

async fn data(mode: IsolationMode, dir: &std::path::Path) -> TenantData {
    let set = Arc::new(MigrationSet::new(builtin_migrations()).unwrap());
    let mut cfg = SqliteConfig::new(dir);
    cfg.synchronous_full = true;
    let sqlite = SqliteRegistry::new(cfg, set.clone()).unwrap();
    let mut servers = Vec::new();
    if mode != IsolationMode::Sqlite {
        let url = match std::env::var("TP_BENCH_PG_URL") {
            Ok(base) => {
                // A fresh database on the durable server.
                let (c, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let name = format!(
                    "tp_audit_bench_{}_{}",
                    std::process::id(),
                    mode.as_str().replace('-', "_")
                );
                c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .unwrap();
                c.batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                let (b, _) = base.rsplit_once('/').unwrap();
                format!("{b}/{name}")
            }
            Err(_) => tenantplane_testkit::pg::fresh_database().await.unwrap(),
        };
        servers.push(
            PgServer::connect(
                PgServerConfig {
                    app_role: "tp_app".into(),
                    budget: 8,
                    wait: Duration::from_secs(30),
                    ..PgServerConfig::new("pg1", url)
                },
                set.clone(),
            )
            .await
            .unwrap(),
        );
    }
    TenantData::new(sqlite, servers, set)
}

async fn tenant(d: &TenantData, mode: IsolationMode, slug: &str) -> Tenant {
    let mut t = Tenant::new(
        slug.parse().unwrap(),
        slug.into(),
        Profile::Hospital,
        "small".parse().unwrap(),
        mode,
        time::OffsetDateTime::now_utc(),
    );
    if mode != IsolationMode::Sqlite {
        t.placement = Some("pg1".into());
    }
    t.schema_version = d.provision(&t).await.unwrap().schema_version;
    t
}

async fn one_per_tx(db: TenantDb<'_>, i: usize) {
    let e = entry(i);
    match db {
        TenantDb::Sqlite(s) => s
            .run(move |c| {
                let tx = c.transaction()?;
                audit_log::insert_sqlite(&tx, &[e])?;
                tx.commit()
            })
            .await
            .unwrap(),
        TenantDb::Pg(p) => p
            .transaction(move |tx| Box::pin(async move { audit_log::insert_pg(tx, &[e]).await }))
            .await
            .unwrap(),
    }
    audit_log::seal(db).await.unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = CheckpointKey::from_seed([1; 32]);
    println!("| mode | writer batches of 500 | one entry per transaction + seal | verification |");
    println!("|---|---|---|---|");
    for mode in IsolationMode::ALL {
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let d = data(mode, dir.path()).await;
            let mut ts = Vec::new();
            for i in 0..8 {
                ts.push(tenant(&d, mode, &format!("bench-{i}")).await);
            }
            // Writer batches: 40 × 500 entries, two tenants' batches at a time.
            let started = Instant::now();
            let mut n = 0;
            for round in 0..20 {
                let (a, b) = (&ts[round % 8], &ts[(round + 1) % 8]);
                let (da, db) = (d.handle(a).unwrap(), d.handle(b).unwrap());
                let x = audit_log::append(da, (0..500).map(entry).collect());
                let y = audit_log::append(db, (0..500).map(entry).collect());
                let (x, y) = tokio::join!(x, y);
                n += x.unwrap() + y.unwrap();
            }
            let batches = n as f64 / started.elapsed().as_secs_f64();
            // One entry per transaction, then its seal: 4 tenants × 250.
            let started = Instant::now();
            let mut jobs = Vec::new();
            for t in ts.iter().take(4) {
                let db = d.handle(t).unwrap();
                jobs.push(async move {
                    for i in 0..250 {
                        one_per_tx(db, i).await;
                    }
                });
            }
            futures_util::future::join_all(jobs).await;
            let single = 1_000.0 / started.elapsed().as_secs_f64();
            // Verification of the biggest chain.
            let started = Instant::now();
            let v = audit_log::verify(d.handle(&ts[0]).unwrap(), &key)
                .await
                .unwrap();
            assert_eq!(v.broken, None);
            let verify = v.checked as f64 / started.elapsed().as_secs_f64();
            println!(
                "| {} | {:.0} entries/s | {:.0} entries/s | {:.0} entries/s ({} entries) |",
                mode.as_str(),
                batches,
                single,
                verify,
                v.checked
            );
        });
    }
}
