//! Tenant data through the server: provisioning pipeline in every mode, seeded data served
//! only to its tenant, deletion dropping the store, a database server down at provisioning,
//! interrupted provisioning finished at start, busy stores answering 503 + Retry-After.

use std::time::Duration;

use tenantplane_client::ClientError;
use tenantplane_core::{
    IsolationMode, ProvisionStep, TenantStatus,
    api::{CreateTenant, TenantView},
};
use tenantplane_testkit::server::{TestServer, TestServerOptions, pg_data_server};

fn create(slug: &str, mode: IsolationMode, depts: &[&str]) -> CreateTenant {
    CreateTenant {
        isolation: Some(mode),
        departments: depts.iter().map(|d| (*d).to_owned()).collect(),
        ..crate::new_tenant(slug)
    }
}

fn steps(t: &TenantView) -> Vec<ProvisionStep> {
    t.steps.iter().map(|s| s.step).collect()
}

const MODES: [IsolationMode; 4] = [
    IsolationMode::Sqlite,
    IsolationMode::PgDatabase,
    IsolationMode::PgSchema,
    IsolationMode::PgShared,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_provisions_seeds_and_serves_only_its_own_data() {
    let s = TestServer::start_with(TestServerOptions {
        data_servers: pg_data_server("pg1", 8).await.unwrap(),
        deletion_grace_hours: Some(0),
        purge_interval_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let target = s.control.data().schema_version();
    let mut made = Vec::new();
    for (i, mode) in MODES.into_iter().enumerate() {
        // Two tenants per mode, sharing one department name.
        for (j, extra) in ["Cardiologia", "Pediatria"].into_iter().enumerate() {
            let slug = format!("hosp-{}-{j}", mode.as_str());
            let t = s
                .client
                .create_tenant(&create(&slug, mode, &["Emergência", extra]))
                .await
                .unwrap();
            assert_eq!(t.status, TenantStatus::Active);
            assert_eq!(t.isolation, mode);
            assert_eq!(t.schema_version, target);
            assert_eq!(
                steps(&t),
                [
                    ProvisionStep::StoreCreated,
                    ProvisionStep::Migrated,
                    ProvisionStep::Seeded,
                    ProvisionStep::IdentityReady,
                    ProvisionStep::Activated
                ]
            );
            assert_eq!(
                t.placement.as_deref(),
                (mode != IsolationMode::Sqlite).then_some("pg1"),
                "{i}"
            );
            made.push((t, extra));
        }
    }
    for (t, extra) in &made {
        let d = s.anonymous().departments(t.slug.as_str()).await.unwrap();
        let mut names: Vec<_> = d.items.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        let mut want = vec!["Emergência", *extra];
        want.sort();
        assert_eq!(names, want, "{} sees exactly its own departments", t.slug);
    }
    // Placement and fleet status come from the catalog (and live pool use).
    let p = s.client.placement().await.unwrap();
    let pg1 = p.servers.iter().find(|x| x.name == "pg1").unwrap();
    assert_eq!(pg1.tenants, 6);
    assert!(pg1.connections_open <= pg1.budget);
    assert_eq!(p.servers[0].name, "embedded");
    assert_eq!(p.servers[0].tenants, 2);
    let st = tenantplane_control::fleet::status(&s.control)
        .await
        .unwrap();
    assert_eq!((st.up_to_date, st.behind), (8, 0));

    // Deletion after the grace period drops each store and records it.
    for (t, _) in made.iter().step_by(2) {
        s.client.delete_tenant(t.slug.as_str(), None).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (t, _) in made.iter().step_by(2) {
        loop {
            let v = s.client.get_tenant(t.slug.as_str()).await.unwrap();
            if v.status == TenantStatus::Deleted {
                assert!(steps(&v).contains(&ProvisionStep::StoreDropped));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} not purged",
                t.slug
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(!s.control.data().sqlite().exists(&made[0].0.id));
    // The other tenant of each mode keeps its data.
    for (t, _) in made.iter().skip(1).step_by(2) {
        let d = s.anonymous().departments(t.slug.as_str()).await.unwrap();
        assert_eq!(d.items.len(), 2, "{}", t.slug);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_provisioning_fails_the_tenant_and_retry_works_once_it_is_back() {
    let cluster = tenantplane_testkit::pg::cluster().unwrap();
    let mut servers = pg_data_server("flaky", 4).await.unwrap();
    let db = servers["flaky"].url.rsplit('/').next().unwrap().to_owned();
    let switch = tenantplane_testkit::proxy::Switch::start(cluster.port, false)
        .await
        .unwrap();
    servers.get_mut("flaky").unwrap().url =
        format!("postgres://postgres@127.0.0.1:{}/{db}", switch.port);
    let s = TestServer::start_with(TestServerOptions {
        data_servers: servers,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = s
        .client
        .create_tenant(&create(
            "down-hospital",
            IsolationMode::PgSchema,
            &["Urgência"],
        ))
        .await
        .unwrap_err();
    let ClientError::Api(p) = e else {
        panic!("{e}")
    };
    assert_eq!(
        (p.status, p.kind.as_str()),
        (503, "urn:tenantplane:problem:provisioning-failed")
    );
    let t = s.client.get_tenant("down-hospital").await.unwrap();
    assert_eq!(t.status, TenantStatus::Failed);
    assert!(t.status_reason.unwrap().contains("store"));
    assert!(t.steps.is_empty(), "nothing recorded as done");
    // Still down: retry fails again, cleanly.
    let e = s.client.retry("down-hospital").await.unwrap_err();
    assert!(
        matches!(e, ClientError::Api(ref p) if p.status == 503),
        "{e}"
    );
    assert_eq!(
        s.client.get_tenant("down-hospital").await.unwrap().status,
        TenantStatus::Failed
    );
    // Back up: retry provisions, seeds and activates.
    switch.set_up(true);
    let t = s.client.retry("down-hospital").await.unwrap();
    assert_eq!(t.status, TenantStatus::Active);
    let d = s.anonymous().departments("down-hospital").await.unwrap();
    assert_eq!(d.items[0].name, "Urgência");
    // Retrying an active tenant is an illegal transition.
    let e = s.client.retry("down-hospital").await.unwrap_err();
    assert!(
        matches!(e, ClientError::Api(ref p) if p.status == 409),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_provisioning_is_finished_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // A crash right after the record was written: the tenant is in the catalog, in
    // `provisioning`, with no store.
    {
        let cat = tenantplane_catalog::open(dir.path().join("catalog.db").to_str().unwrap(), 1)
            .await
            .unwrap();
        cat.migrate().await.unwrap();
        let mut t = tenantplane_core::Tenant::new(
            "crashed-hospital".parse().unwrap(),
            "Crashed".into(),
            tenantplane_core::Profile::Hospital,
            "small".parse().unwrap(),
            IsolationMode::Sqlite,
            time::OffsetDateTime::now_utc(),
        );
        t.seed.departments = vec!["Oncologia".into()];
        cat.create_tenant(&t).await.unwrap();
    }
    let s = TestServer::start_with(TestServerOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let t = s.client.get_tenant("crashed-hospital").await.unwrap();
        if t.status == TenantStatus::Active {
            assert_eq!(steps(&t).len(), 5);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", t.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = s.anonymous().departments("crashed-hospital").await.unwrap();
    assert_eq!(d.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_connection_budget_answers_503_with_retry_after() {
    let mut servers = pg_data_server("pg1", 1).await.unwrap();
    servers.get_mut("pg1").unwrap().wait_ms = 200;
    let s = TestServer::start_with(TestServerOptions {
        data_servers: servers,
        ..Default::default()
    })
    .await
    .unwrap();
    let t = s
        .client
        .create_tenant(&create("busy-hospital", IsolationMode::PgShared, &["A"]))
        .await
        .unwrap();
    let tenant = s.control.index().get(&t.id).unwrap();
    let data = s.control.data().clone();
    let holder = tokio::spawn(async move {
        let tenantplane_tenant_data::TenantDb::Pg(db) = data.handle(&tenant).unwrap() else {
            panic!("pg tenant")
        };
        db.transaction(|tx| Box::pin(async move { tx.execute("SELECT pg_sleep(1.5)", &[]).await }))
            .await
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = reqwest::get(format!(
        "{}/t/busy-hospital/api/tenant/departments",
        s.url()
    ))
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let p: tenantplane_core::api::Problem = res.json().await.unwrap();
    assert_eq!(p.kind, "urn:tenantplane:problem:tenant-store-busy");
    holder.await.unwrap();
    // Served again once the connection is free.
    assert_eq!(
        s.anonymous()
            .departments("busy-hospital")
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}
