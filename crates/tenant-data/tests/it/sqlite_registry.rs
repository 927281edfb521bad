use std::{sync::Arc, time::Duration};

use tenantplane_core::{IsolationMode, Profile, Tenant};
use tenantplane_tenant_data::{
    DataError,
    migrate::{Migration, MigrationSet},
    sqlite::{SqliteConfig, SqliteRegistry},
};

const NOTES_1: Migration = Migration {
    component: "notes",
    version: 1,
    name: "notes table",
    sqlite: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    postgres: "CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)",
};
const NOTES_2: Migration = Migration {
    component: "notes",
    version: 2,
    name: "author column",
    sqlite: "ALTER TABLE notes ADD COLUMN author TEXT; CREATE INDEX notes_author ON notes (author)",
    postgres: "ALTER TABLE notes ADD COLUMN author TEXT; CREATE INDEX notes_author ON notes (author)",
};

fn tenant(slug: &str) -> Tenant {
    Tenant::new(
        slug.parse().unwrap(),
        slug.into(),
        Profile::Hospital,
        "small".parse().unwrap(),
        IsolationMode::Sqlite,
        time::OffsetDateTime::now_utc(),
    )
}

fn registry(dir: &std::path::Path, max_open: usize, set: &[Migration]) -> SqliteRegistry {
    let mut cfg = SqliteConfig::new(dir);
    cfg.max_open = max_open;
    cfg.max_blocking = 2;
    SqliteRegistry::new(
        cfg,
        Arc::new(MigrationSet::new(set.iter().copied()).unwrap()),
    )
    .unwrap()
}

async fn count(r: &SqliteRegistry, t: &Tenant) -> i64 {
    r.run(t, |c| {
        c.query_row("SELECT count(*) FROM notes", [], |row| row.get(0))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_write_read_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), 8, &[NOTES_1]);
    let a = tenant("alpha-hospital");
    let b = tenant("bravo-hospital");
    for t in [&a, &b] {
        let rep = r.provision(t).await.unwrap();
        assert_eq!(rep.applied, ["notes/1"]);
    }
    assert_eq!(
        r.provision(&a).await.unwrap().applied.len(),
        0,
        "idempotent"
    );
    r.run(&a, |c| {
        c.execute("INSERT INTO notes (body) VALUES ('only alpha')", [])
    })
    .await
    .unwrap();
    assert_eq!(count(&r, &a).await, 1);
    assert_eq!(count(&r, &b).await, 0, "b never sees a's rows");
    let mode: String = r
        .run(&a, |c| {
            c.query_row("PRAGMA journal_mode", [], |row| row.get(0))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(r.path_of(&a.id).exists() && r.path_of(&a.id) != r.path_of(&b.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprovisioned_or_outdated_tenants_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), 8, &[NOTES_1]);
    let ghost = tenant("ghost-hospital");
    let e = r
        .run(&ghost, |c| {
            c.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::Unavailable(_)), "{e}");
    assert!(!r.exists(&ghost.id), "serving never creates a file");

    let a = tenant("alpha-hospital");
    r.provision(&a).await.unwrap();
    drop(r);
    // A newer binary needs version 2: the tenant is refused until migrated.
    let r2 = registry(dir.path(), 8, &[NOTES_1, NOTES_2]);
    let e = r2
        .run(&a, |c| {
            c.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::Outdated { have: 1, need: 2 }), "{e}");
    assert_eq!(r2.provision(&a).await.unwrap().applied, ["notes/2"]);
    r2.run(&a, |c| {
        c.execute(
            "INSERT INTO notes (body, author) VALUES ('x', 'dr. ana')",
            [],
        )
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_files_are_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), 8, &[NOTES_1]);
    let t = tenant("alpha-hospital");
    let c = rusqlite::Connection::open(r.path_of(&t.id)).unwrap();
    c.execute_batch("CREATE TABLE payroll (id INTEGER)")
        .unwrap();
    drop(c);
    let e = r.provision(&t).await.unwrap_err();
    assert!(matches!(e, DataError::Foreign(_)));
    // An empty file is adopted.
    let t2 = tenant("bravo-hospital");
    std::fs::File::create(r.path_of(&t2.id)).unwrap();
    r.provision(&t2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tenants_round_robin_stay_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let r = Arc::new(registry(dir.path(), 16, &[NOTES_1]));
    let tenants: Vec<Tenant> = (0..200)
        .map(|i| tenant(&format!("tenant-{i:03}")))
        .collect();
    for t in &tenants {
        r.provision(t).await.unwrap();
        assert!(r.open_count() <= 16);
    }
    for round in 0..3 {
        let mut tasks = Vec::new();
        for t in tenants.clone() {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.run(&t, move |c| {
                    c.execute(
                        "INSERT INTO notes (body) VALUES (?1)",
                        [format!("round {round}")],
                    )
                })
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(r.open_count() <= 16, "open {}", r.open_count());
    }
    for t in &tenants {
        assert_eq!(count(&r, t).await, 3, "every write survived evictions");
    }
    let evicted = r.stats().evicted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(evicted >= 200, "evicted {evicted}");
    // An evicted database was checkpointed: its WAL is empty or gone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let wal = {
        let mut p = r.path_of(&tenants[0].id).into_os_string();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "wal truncated on eviction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_tenant_removes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), 4, &[NOTES_1]);
    let t = tenant("alpha-hospital");
    r.provision(&t).await.unwrap();
    r.run(&t, |c| {
        c.execute("INSERT INTO notes (body) VALUES ('x')", [])
    })
    .await
    .unwrap();
    r.drop_tenant(t.id).await.unwrap();
    assert!(!r.exists(&t.id));
    r.drop_tenant(t.id).await.unwrap();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no leftovers"
    );
}
