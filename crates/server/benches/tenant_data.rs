//! Tenant-data load benchmark (not criterion: whole-system scenarios with real stores).
//!
//! `cargo bench -p tenantplane-server --bench tenant_data` runs, against the embedded
//! SQLite store and a throwaway PostgreSQL (testkit; fsync off), traffic on 127.0.0.1 only:
//!
//! A. provisioning latency per mode with `TP_BENCH_SMALL` (10) and `TP_BENCH_LARGE` (1,000)
//!    existing tenants of that mode (full pipeline: catalog record, store, migrations, seed,
//!    activation);
//! B. fleet migration (a column + an index) of those tenants, per mode, then a no-op run;
//! C. `TP_BENCH_SQLITE` (10,000) sqlite tenants: a no-op `migrate run` over the whole fleet,
//!    then every tenant touched round-robin (open files vs the cap, RSS);
//! D. the pg-database tenants served round-robin by 8 workers under a budget of 50
//!    (peak server-side connections sampled from pg_stat_activity);
//! E. per-request cost of one indexed read through the tenant handle, per mode.
//!
//! Prints a Markdown report on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use tenantplane_control::{
    Control,
    fleet::{self, Progress, ProgressFn, RunOptions},
};
use tenantplane_core::{IsolationMode, Tenant, api::CreateTenant};
use tenantplane_server::{Config, Server, config::PgServerSettings};
use tenantplane_tenant_data::{
    directory,
    migrate::{Migration, MigrationSet},
};

const ADD_CODE: Migration = Migration {
    component: "bench",
    version: 1,
    name: "department code column and index",
    sqlite: "ALTER TABLE departments ADD COLUMN code TEXT; \
             CREATE INDEX departments_code ON departments (code);",
    postgres: "ALTER TABLE departments ADD COLUMN code text; \
               CREATE INDEX departments_code ON departments (tenant_id, code);",
};

const MODES: [IsolationMode; 4] = [
    IsolationMode::Sqlite,
    IsolationMode::PgDatabase,
    IsolationMode::PgSchema,
    IsolationMode::PgShared,
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

async fn build(config: &Config, extra: bool) -> Arc<Control> {
    let mut set = tenantplane_control::placement::component_migrations();
    if extra {
        set.push(ADD_CODE);
    }
    Server::build_with(config.clone(), MigrationSet::new(set).unwrap())
        .await
        .unwrap()
        .control()
}

fn req(slug: &str, mode: IsolationMode) -> CreateTenant {
    CreateTenant {
        slug: slug.into(),
        display_name: slug.into(),
        isolation: Some(mode),
        departments: vec!["Emergência".into(), "Cardiologia".into()],
        ..Default::default()
    }
}

async fn create_many(
    svc: &Arc<Control>,
    prefix: &str,
    mode: IsolationMode,
    from: usize,
    to: usize,
) {
    let mut set = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(4));
    for i in from..to {
        let (svc, sem) = (svc.clone(), sem.clone());
        let slug = format!("{prefix}-{i:05}");
        set.spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            svc.create(req(&slug, mode)).await.unwrap();
        });
    }
    while set.join_next().await.is_some() {}
}

async fn tenants_of(svc: &Control, mode: IsolationMode) -> Vec<Arc<Tenant>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = svc
            .catalog()
            .list_tenants(&tenantplane_catalog::TenantQuery {
                isolation: Some(mode),
                after,
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        after = page.items.last().map(|t| t.id);
        out.extend(
            page.items
                .into_iter()
                .map(|t| svc.index().get(&t.id).unwrap()),
        );
        if !page.has_more {
            return out;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`
    }
    let small = env("TP_BENCH_SMALL", 10);
    let large = env("TP_BENCH_LARGE", 1000);
    let sqlite_fleet = env("TP_BENCH_SQLITE", 10_000);
    let samples = 20;
    let dir = tempfile::tempdir().unwrap();
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_path_buf();
    config.data.migrate_on_start = false;
    config.data.servers.insert(
        "pg1".into(),
        PgServerSettings {
            url: url.clone(),
            app_role: "tp_app".into(),
            budget: 50,
            per_database: 2,
            wait_ms: 30_000,
            ..Default::default()
        },
    );
    println!(
        "## Tenant data ({} cores, {})\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        time::OffsetDateTime::now_utc().date()
    );

    // A. Provisioning latency.
    let svc = build(&config, false).await;
    println!("### A. Provision one tenant (full pipeline)\n");
    println!("| mode | existing | p50 ms | p95 ms |\n|---|---:|---:|---:|");
    for mode in MODES {
        let m = mode.as_str();
        let mut have = 0;
        for existing in [small, large] {
            let t0 = Instant::now();
            create_many(&svc, &format!("{m}-fill"), mode, have, existing).await;
            eprintln!("{m}: filled to {existing} in {:?}", t0.elapsed());
            have = existing;
            let mut ms = Vec::new();
            for i in 0..samples {
                let t = Instant::now();
                svc.create(req(&format!("{m}-probe-{existing}-{i}"), mode))
                    .await
                    .unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            println!(
                "| {m} | {existing} | {:.1} | {:.1} |",
                pct(&mut ms, 0.5),
                pct(&mut ms, 0.95)
            );
        }
    }
    drop(svc);

    // B. Fleet migration per mode, then a no-op run.
    let svc = build(&config, true).await;
    println!("\n### B. Fleet migration: add a column + an index\n");
    println!("| mode | tenants | seconds | failed |\n|---|---:|---:|---:|");
    let quiet: ProgressFn = Arc::new(|_: &Progress| {});
    for mode in MODES {
        let names: Vec<String> = tenants_of(&svc, mode)
            .await
            .iter()
            .map(|t| t.id.to_string())
            .collect();
        let n = names.len();
        let t = Instant::now();
        let r = fleet::run(
            &svc,
            RunOptions {
                canary: 0,
                tenants: Some(names),
                concurrency: 4,
            },
            quiet.clone(),
        )
        .await
        .unwrap();
        println!(
            "| {} | {n} | {:.1} | {} |",
            mode.as_str(),
            t.elapsed().as_secs_f64(),
            r.failed.len()
        );
    }

    // C. A large sqlite fleet: no-op migrate run, then round-robin touches.
    let existing_sqlite = tenants_of(&svc, IsolationMode::Sqlite).await.len();
    let t = Instant::now();
    create_many(
        &svc,
        "fleet",
        IsolationMode::Sqlite,
        existing_sqlite,
        sqlite_fleet,
    )
    .await;
    eprintln!("sqlite fleet of {sqlite_fleet} in {:?}", t.elapsed());
    let total = svc.index().len();
    let mut noop = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = fleet::run(
            &svc,
            RunOptions {
                canary: 0,
                tenants: None,
                concurrency: 4,
            },
            quiet.clone(),
        )
        .await
        .unwrap();
        assert_eq!(r.total, 0);
        noop.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    let st = fleet::status(&svc).await.unwrap();
    let status_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("\n### C. Large fleet\n");
    println!(
        "- no-op `migrate run` over {total} tenants: p50 {:.1} ms (5 runs); `migrate status` {status_ms:.1} ms ({} up to date)",
        pct(&mut noop, 0.5),
        st.up_to_date
    );
    let sqlite_tenants = tenants_of(&svc, IsolationMode::Sqlite).await;
    let cap = svc.data().sqlite().max_open();
    let mut peak_open = 0;
    let mut peak_fds = 0;
    let t = Instant::now();
    for (i, tn) in sqlite_tenants.iter().enumerate() {
        directory::count(svc.data().handle(tn).unwrap())
            .await
            .unwrap();
        if i % 100 == 0 {
            peak_open = peak_open.max(svc.data().sqlite().open_count());
            peak_fds = peak_fds.max(open_fds());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "- {} sqlite tenants touched round-robin in {secs:.1} s ({:.0} tenants/s): open databases peak {peak_open} (cap {cap}), process fds peak {peak_fds}, RSS {:.0} MiB",
        sqlite_tenants.len(),
        sqlite_tenants.len() as f64 / secs,
        rss_mib()
    );

    // D. pg-database tenants under a budget of 50.
    let pgdb = tenants_of(&svc, IsolationMode::PgDatabase).await;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (stop, peak, url) = (stop.clone(), peak.clone(), url.clone());
        tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tp_app'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let pgdb = Arc::new(pgdb);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (svc, pgdb) = (svc.clone(), pgdb.clone());
        set.spawn(async move {
            let mut i = w;
            while i < pgdb.len() {
                directory::count(svc.data().handle(&pgdb[i]).unwrap())
                    .await
                    .unwrap();
                i += 8;
            }
        });
    }
    while set.join_next().await.is_some() {}
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    println!(
        "- {} pg-database tenants served round-robin by 8 workers in {secs:.1} s ({:.0} tenants/s): peak server connections of the application role {} (budget 50)",
        pgdb.len(),
        pgdb.len() as f64 / secs,
        peak.load(Ordering::Relaxed)
    );

    // E. Per-request cost of one indexed read through the handle.
    println!("\n### E. One indexed read through the tenant handle\n");
    println!("| mode | mean µs | p50 µs | p99 µs |\n|---|---:|---:|---:|");
    for mode in MODES {
        let tn = tenants_of(&svc, mode).await.pop().unwrap();
        let id = directory::list(svc.data().handle(&tn).unwrap())
            .await
            .unwrap()[0]
            .id;
        let mut us = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let h = svc.data().handle(&tn).unwrap();
            directory::get(h, id).await.unwrap().unwrap();
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mean = us.iter().sum::<f64>() / us.len() as f64;
        println!(
            "| {} | {mean:.0} | {:.0} | {:.0} |",
            mode.as_str(),
            pct(&mut us, 0.5),
            pct(&mut us, 0.99)
        );
    }
    let tn = tenants_of(&svc, IsolationMode::Sqlite).await.pop().unwrap();
    let t = Instant::now();
    for _ in 0..1_000_000 {
        std::hint::black_box(svc.data().handle(std::hint::black_box(&tn)).unwrap());
    }
    println!(
        "\nObtaining the handle itself (catalog-version check, routing): {:.0} ns.",
        t.elapsed().as_nanos() as f64 / 1e6
    );
}
