//! The standby pool: sign-ups claim pre-provisioned stores in every mode, the pool refills,
//! concurrent sign-ups never share a store, a crash while preparing or retiring is finished
//! by the next process without leaking a store, and pool members are migrated like tenants.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use tenantplane_catalog::{StandbyState, StandbyStore};
use tenantplane_control::fleet::{self, Progress, RunOptions};
use tenantplane_core::{IsolationMode, Profile, TenantStatus, api::CreateTenant};
use tenantplane_testkit::server::{TestServer, TestServerOptions};

use crate::identity::{first_login, get, tenant_with_admin};

const EXTRA: tenantplane_tenant_data::migrate::Migration =
    tenantplane_tenant_data::migrate::Migration {
        component: "standby-test",
        version: 1,
        name: "department code column",
        sqlite: "ALTER TABLE departments ADD COLUMN code TEXT;",
        postgres: "ALTER TABLE departments ADD COLUMN code text;",
    };

fn sizes(pairs: &[(IsolationMode, usize)]) -> BTreeMap<IsolationMode, usize> {
    pairs.iter().copied().collect()
}

/// Waits until every configured pool has `target` ready stores at the binary's version.
async fn pools_full(s: &TestServer) {
    for _ in 0..600 {
        let pools = s.control.standby_pools().await.unwrap();
        if !pools.is_empty()
            && pools
                .iter()
                .all(|(_, p)| p.ready == p.target && p.preparing + p.outdated + p.retiring == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "standby pools not filled: {:?}",
        s.control.standby_pools().await.unwrap()
    );
}

async fn ready_ids(s: &TestServer) -> Vec<tenantplane_core::TenantId> {
    s.control
        .catalog()
        .list_standby()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.state == StandbyState::Ready)
        .map(|m| m.id)
        .collect()
}

fn company(slug: &str, mode: IsolationMode) -> CreateTenant {
    CreateTenant {
        isolation: Some(mode),
        profile: Some(Profile::Company),
        ..crate::new_tenant(slug)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_claim_standby_stores_in_every_mode_and_the_pool_refills() {
    let servers = tenantplane_testkit::server::pg_data_server("main", 10)
        .await
        .unwrap();
    let s = TestServer::start_with(TestServerOptions {
        data_servers: servers,
        standby: sizes(&[
            (IsolationMode::Sqlite, 2),
            (IsolationMode::PgSchema, 2),
            (IsolationMode::PgShared, 2),
            (IsolationMode::PgDatabase, 2),
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    pools_full(&s).await;
    let placement = s.client.placement().await.unwrap();
    let embedded = &placement.servers[0];
    assert_eq!(embedded.standby.len(), 1);
    assert_eq!(
        (embedded.standby[0].ready, embedded.standby[0].target),
        (2, 2)
    );
    assert_eq!(placement.servers[1].standby.len(), 3);

    for mode in IsolationMode::ALL {
        let tag = mode.as_str();
        // Nothing more to set up: recorded active in the claim itself.
        let before = ready_ids(&s).await;
        let t = s
            .client
            .create_tenant(&company(&format!("co-{tag}"), mode))
            .await
            .unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        assert!(before.contains(&t.id), "{tag}: a standby store was claimed");
        assert!(!ready_ids(&s).await.contains(&t.id));

        // A hospital with departments and a first administrator: claimed, then finished.
        let before = ready_ids(&s).await;
        let (h, otp) = tenant_with_admin(&s, &format!("h-{tag}"), mode).await;
        let view = s.client.get_tenant(&h.slug).await.unwrap();
        assert_eq!(view.status, TenantStatus::Active);
        assert!(
            before.contains(&view.id),
            "{tag}: a standby store was claimed"
        );
        let admin = format!("admin@h-{tag}.example");
        let tok = first_login(&h, &admin, &otp, "a long and new passphrase").await;
        let access = tok["access_token"].as_str().unwrap();
        let (st, _, roles) = get(&h.url("/api/tenant/roles"), access).await;
        assert_eq!(st, 200, "{roles}");
        let names: Vec<&str> = roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(
            names.contains(&"clinician") && names.contains(&"nurse"),
            "{names:?}"
        );
        let (st, _, depts) = get(&h.url("/api/tenant/departments"), access).await;
        assert_eq!(st, 200);
        assert_eq!(depts["items"][0]["name"], "Emergência");
        // The company has no clinical roles: a standby store carries only the common ones.
        let co = s.control.get(&format!("co-{tag}")).await.unwrap();
        let co_roles = tenantplane_identity::roles::list(s.control.data().handle(&co).unwrap())
            .await
            .unwrap();
        assert!(
            co_roles.iter().all(|r| r.name.as_str() != "clinician"),
            "{tag}"
        );
        // Distinct stores, distinct signing keys.
        let jwks = |slug: &str| {
            let url = format!("{}/t/{slug}/.well-known/jwks.json", s.url());
            async move {
                reqwest::get(url)
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap()
            }
        };
        assert_ne!(
            jwks(&format!("co-{tag}")).await["keys"],
            jwks(&h.slug).await["keys"]
        );
    }
    // Claims woke the refill: every pool is full again, with new stores.
    pools_full(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ups_never_share_a_standby_store() {
    let s = TestServer::start_with(TestServerOptions {
        standby: sizes(&[(IsolationMode::Sqlite, 3)]),
        ..Default::default()
    })
    .await
    .unwrap();
    pools_full(&s).await;
    let pool = ready_ids(&s).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = s.client.clone();
        tasks.push(tokio::spawn(async move {
            c.create_tenant(&company(&format!("race-{i}"), IsolationMode::Sqlite))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let t = t.await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        ids.push(t.id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "every tenant has its own store");
    let claimed = ids.iter().filter(|id| pool.contains(id)).count();
    assert!(
        (1..=3).contains(&claimed),
        "{claimed} claims from a pool of 3"
    );
    // No store is both a tenant's and still in the pool.
    let left = s.control.catalog().list_standby().await.unwrap();
    assert!(left.iter().all(|m| !ids.contains(&m.id)));
}

fn sqlite_opts(dir: &Path, size: usize, extra: bool) -> TestServerOptions {
    TestServerOptions {
        data_dir: Some(dir.to_path_buf()),
        standby: sizes(&[(IsolationMode::Sqlite, size)]),
        extra_migrations: if extra { vec![EXTRA] } else { vec![] },
        migrate_on_start: Some(false),
        ..Default::default()
    }
}

/// Tenant store files on disk.
fn store_files(s: &TestServer) -> Vec<tenantplane_core::TenantId> {
    let mut out = Vec::new();
    let probe = s
        .control
        .data()
        .sqlite()
        .path_of(&tenantplane_core::TenantId::new());
    for e in std::fs::read_dir(probe.parent().unwrap()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(id) = name.strip_suffix(".db").and_then(|n| n.parse().ok()) {
            out.push(id);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_preparing_or_retiring_is_finished_without_leaking_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::start_with(sqlite_opts(dir.path(), 2, false))
        .await
        .unwrap();
    pools_full(&a).await;
    let ready = ready_ids(&a).await;
    // What a crash leaves: a store recorded and half made (created, not migrated, not
    // ready), and a store marked retiring whose drop never ran.
    let half = StandbyStore::new(IsolationMode::Sqlite, None, time::OffsetDateTime::now_utc());
    assert!(a.control.catalog().add_standby(&half, 3).await.unwrap());
    let path = a.control.data().sqlite().path_of(&half.id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    assert!(
        a.control
            .catalog()
            .set_standby(ready[0], StandbyState::Ready, StandbyState::Retiring, 0)
            .await
            .unwrap()
    );
    a.stop().await.unwrap();

    let b = TestServer::start_with(sqlite_opts(dir.path(), 2, false))
        .await
        .unwrap();
    pools_full(&b).await;
    let now_ready = ready_ids(&b).await;
    assert_eq!(now_ready.len(), 2);
    assert!(
        now_ready.contains(&half.id),
        "the half-made store was finished"
    );
    assert!(now_ready.contains(&ready[1]));
    assert!(
        !b.control.data().sqlite().exists(&ready[0]),
        "the retired store is gone"
    );
    // Every store on disk is a pool member (there are no tenants): nothing leaked.
    let mut members = now_ready.clone();
    members.sort();
    assert_eq!(store_files(&b), members);
    // The finished store serves a tenant like any other.
    let t = b
        .client
        .create_tenant(&company("after-crash", IsolationMode::Sqlite))
        .await
        .unwrap();
    assert!(now_ready.contains(&t.id));
    b.stop().await.unwrap();

    // The pool shrinks to nothing: its stores are dropped, the tenant's stays.
    let c = TestServer::start_with(sqlite_opts(dir.path(), 0, false))
        .await
        .unwrap();
    for _ in 0..100 {
        // The background pass runs at start too; either retires each store once.
        c.control.refill_standby().await.unwrap();
        if c.control.catalog().list_standby().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.control.catalog().list_standby().await.unwrap().is_empty());
    assert_eq!(store_files(&c), vec![t.id]);
    assert!(
        c.client.placement().await.unwrap().servers[0]
            .standby
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_stores_are_migrated_like_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::start_with(sqlite_opts(dir.path(), 2, false))
        .await
        .unwrap();
    pools_full(&a).await;
    let old = a.control.data().schema_version();
    a.stop().await.unwrap();

    // A binary with one more migration: the fleet run migrates the pool with the tenants.
    let b = TestServer::start_with(sqlite_opts(dir.path(), 2, true))
        .await
        .unwrap();
    let need = b.control.data().schema_version();
    assert_eq!(need, old + 1);
    let quiet: fleet::ProgressFn = Arc::new(|_: &Progress| {});
    let opts = RunOptions {
        canary: 0,
        tenants: None,
        concurrency: 2,
    };
    fleet::run(&b.control, opts, quiet).await.unwrap();
    pools_full(&b).await;
    for m in b.control.catalog().list_standby().await.unwrap() {
        assert_eq!(m.schema_version, need);
        let c = b.control.data().sqlite().open_for_test(&m.id).unwrap();
        let cols: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info('departments')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(cols.contains(&"code".to_owned()), "{cols:?}");
    }
    let t = b
        .client
        .create_tenant(&company("migrated", IsolationMode::Sqlite))
        .await
        .unwrap();
    assert_eq!(t.schema_version, need);
    assert_eq!(t.status, TenantStatus::Active);
}
