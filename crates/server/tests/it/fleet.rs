//! Fleet migrations: a new binary (here: the same server with two more migrations) brings
//! every tenant store up to date — canary halt, per-tenant failure isolation, retries, no-op
//! runs, and a run killed with SIGKILL completed by the next one.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use tenantplane_control::fleet::{self, Progress, ProgressFn, RunOptions};
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_tenant_data::migrate::Migration;
use tenantplane_testkit::server::{TestServer, TestServerOptions};

const ADD_CODE: Migration = Migration {
    component: "fleet-test",
    version: 1,
    name: "department code column and index",
    sqlite: "ALTER TABLE departments ADD COLUMN code TEXT; \
             CREATE INDEX departments_code ON departments (code);",
    postgres: "ALTER TABLE departments ADD COLUMN code text; \
               CREATE INDEX departments_code ON departments (tenant_id, code);",
};

/// Fails for a tenant whose departments share a three-letter prefix.
const UNIQUE_PREFIX: Migration = Migration {
    component: "fleet-test",
    version: 2,
    name: "unique department prefixes",
    sqlite: "CREATE UNIQUE INDEX departments_prefix ON departments (substr(name, 1, 3));",
    postgres: "CREATE UNIQUE INDEX departments_prefix ON departments (tenant_id, substr(name, 1, 3));",
};

fn opts(dir: &Path, extra: bool) -> TestServerOptions {
    TestServerOptions {
        data_dir: Some(dir.to_path_buf()),
        migrate_on_start: Some(false),
        extra_migrations: if extra {
            vec![ADD_CODE, UNIQUE_PREFIX]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

fn tenant(slug: &str, depts: &[&str]) -> CreateTenant {
    CreateTenant {
        isolation: Some(IsolationMode::Sqlite),
        departments: depts.iter().map(|d| (*d).to_owned()).collect(),
        ..crate::new_tenant(slug)
    }
}

fn quiet() -> ProgressFn {
    Arc::new(|_: &Progress| {})
}

fn run_opts(canary: usize, concurrency: usize) -> RunOptions {
    RunOptions {
        canary,
        tenants: None,
        concurrency,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_halts_failures_stay_isolated_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::start_with(opts(dir.path(), false))
        .await
        .unwrap();
    // Created first, so first in the canary wave: its data breaks migration 2.
    a.client
        .create_tenant(&tenant("bad-hospital", &["Cardio A", "Cardio B"]))
        .await
        .unwrap();
    for i in 0..10 {
        a.client
            .create_tenant(&tenant(
                &format!("good-hospital-{i}"),
                &["Cardiologia", "Pediatria"],
            ))
            .await
            .unwrap();
    }
    a.stop().await.unwrap();

    let s = TestServer::start_with(opts(dir.path(), true))
        .await
        .unwrap();
    let target = s.control.data().schema_version();
    let st = fleet::status(&s.control).await.unwrap();
    assert_eq!((st.behind, st.up_to_date, st.target), (11, 0, target));
    // Not yet migrated tenants are not served by the new binary.
    let res = reqwest::get(format!(
        "{}/t/good-hospital-0/api/tenant/departments",
        s.url()
    ))
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert!(res.headers().contains_key("retry-after"));

    // Canary wave of 2 includes the bad tenant: halt, nobody else touched.
    let r = fleet::run(&s.control, run_opts(2, 2), quiet())
        .await
        .unwrap();
    assert!(r.halted);
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].0, "bad-hospital");
    assert!(r.failed[0].1.contains("fleet-test/2"), "{}", r.failed[0].1);
    assert_eq!(r.migrated, 1);
    let st = fleet::status(&s.control).await.unwrap();
    assert_eq!((st.behind, st.up_to_date), (10, 1));

    // Without a canary: the bad tenant fails alone, every other one is migrated.
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ev = events.clone();
    let sink: ProgressFn = Arc::new(move |p: &Progress| ev.lock().unwrap().push(p.clone()));
    let r = fleet::run(&s.control, run_opts(0, 3), sink).await.unwrap();
    assert!(!r.halted);
    assert_eq!((r.total, r.migrated, r.failed.len()), (10, 9, 1));
    let ev: Vec<Progress> = events.lock().unwrap().clone();
    assert!(matches!(ev.first(), Some(Progress::Plan { total: 10, .. })));
    assert!(matches!(
        ev.last(),
        Some(Progress::Done {
            migrated: 9,
            failed: 1,
            ..
        })
    ));
    for i in 0..10 {
        let d = s
            .anonymous()
            .departments(&format!("good-hospital-{i}"))
            .await
            .unwrap();
        assert_eq!(d.items.len(), 2);
    }
    let bad = s.client.get_tenant("bad-hospital").await.unwrap();
    assert!(
        bad.schema_version < target,
        "a failed tenant keeps its version"
    );
    let res = reqwest::get(format!("{}/t/bad-hospital/api/tenant/departments", s.url()))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);

    // Retried by the next run: still failing, then fixed.
    let r = fleet::run(&s.control, run_opts(0, 3), quiet())
        .await
        .unwrap();
    assert_eq!((r.total, r.failed.len()), (1, 1));
    let conn = s.control.data().sqlite().open_for_test(&bad.id).unwrap();
    conn.execute("DELETE FROM departments WHERE name = 'Cardio B'", [])
        .unwrap();
    drop(conn);
    let r = fleet::run(&s.control, run_opts(0, 3), quiet())
        .await
        .unwrap();
    assert_eq!((r.total, r.migrated, r.failed.len()), (1, 1, 0));
    let st = fleet::status(&s.control).await.unwrap();
    assert_eq!((st.behind, st.up_to_date), (0, 11));
    // A no-op run touches nothing.
    let r = fleet::run(&s.control, run_opts(0, 3), quiet())
        .await
        .unwrap();
    assert_eq!(r.total, 0);
    assert_eq!(
        s.anonymous()
            .departments("bad-hospital")
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

/// The child role of the SIGKILL test (the test re-executes itself with
/// `TP_FLEET_CHILD_DIR` set): runs a fleet migration, printing one line per tenant.
async fn child_role(dir: &str) {
    let s = TestServer::start_with(opts(Path::new(dir), true))
        .await
        .unwrap();
    let sink: ProgressFn = Arc::new(|p: &Progress| {
        if let Progress::Tenant { slug, .. } = p {
            println!("MIGRATED {slug}");
        }
    });
    fleet::run(&s.control, run_opts(0, 2), sink).await.unwrap();
    println!("FINISHED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_run_killed_with_sigkill_is_completed_by_the_next_run() {
    if let Ok(dir) = std::env::var("TP_FLEET_CHILD_DIR") {
        return child_role(&dir).await;
    }
    const N: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::start_with(opts(dir.path(), false))
        .await
        .unwrap();
    for i in 0..N {
        a.client
            .create_tenant(&tenant(&format!("hospital-{i:03}"), &["Cardiologia"]))
            .await
            .unwrap();
    }
    a.stop().await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "fleet::fleet_run_killed_with_sigkill_is_completed_by_the_next_run",
            "--exact",
            "--nocapture",
        ])
        .env("TP_FLEET_CHILD_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for line in BufReader::new(out).lines() {
            let line = line.unwrap();
            if line.starts_with("MIGRATED ") {
                n += 1;
                if n == 25 {
                    break;
                }
            }
            assert_ne!(line, "FINISHED", "the run ended before it could be killed");
        }
        n
    })
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(seen, 25);

    let s = TestServer::start_with(opts(dir.path(), true))
        .await
        .unwrap();
    let before = fleet::status(&s.control).await.unwrap();
    assert!(before.up_to_date >= 25 && before.behind > 0, "{before:?}");
    let r = fleet::run(&s.control, run_opts(0, 2), quiet())
        .await
        .unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let after = fleet::status(&s.control).await.unwrap();
    assert_eq!((after.up_to_date, after.behind), (N as u64, 0));
    // Every tenant has each step exactly once, and its data.
    let page = s
        .client
        .list_all_tenants(&Default::default())
        .await
        .unwrap();
    assert_eq!(page.len(), N);
    for t in page {
        let c = s.control.data().sqlite().open_for_test(&t.id).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM tp_migrations WHERE component = 'fleet-test'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2, "{}", t.slug);
        let d: i64 = c
            .query_row(
                "SELECT count(*) FROM departments WHERE code IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(d, 1, "{}", t.slug);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
