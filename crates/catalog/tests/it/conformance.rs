//! One behavioural suite, instantiated for SQLite and PostgreSQL by `catalog_conformance!`.

use tenantplane_catalog::{Catalog, CatalogError, Conflict, TenantQuery};
use tenantplane_core::{
    Operator, OperatorId, OperatorRole, PlanName, Profile, TenantRef, TenantStatus,
};
use time::OffsetDateTime;

use crate::{budgets::*, ledger::*, platform_audit::*, standby::*, tenant};

pub async fn create_get_roundtrip(c: Catalog) {
    let mut t = tenant("alpha-hospital");
    t.custom_domains = vec!["records.alpha.example".parse().unwrap()];
    t.settings
        .insert("departments".into(), serde_json::json!(["er", "icu"]));
    c.create_tenant(&t).await.unwrap();
    let by_id = c.get_tenant(&TenantRef::Id(t.id)).await.unwrap().unwrap();
    assert_eq!(by_id, t);
    let by_slug = c
        .get_tenant(&TenantRef::Slug("alpha-hospital".parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_slug, t);
    assert!(
        c.get_tenant(&TenantRef::Slug("nobody".parse().unwrap()))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn slug_and_domain_uniqueness(c: Catalog) {
    let mut a = tenant("alpha");
    a.custom_domains = vec!["a.example.org".parse().unwrap()];
    c.create_tenant(&a).await.unwrap();
    let dup = tenant("alpha");
    assert!(matches!(
        c.create_tenant(&dup).await,
        Err(CatalogError::Conflict(Conflict::Slug(_)))
    ));
    let mut b = tenant("bravo");
    b.custom_domains = vec!["a.example.org".parse().unwrap()];
    assert!(matches!(
        c.create_tenant(&b).await,
        Err(CatalogError::Conflict(Conflict::Domain(_)))
    ));
    // The failed creation left nothing behind.
    assert!(c.get_tenant(&TenantRef::Id(b.id)).await.unwrap().is_none());
    b.custom_domains = vec![];
    c.create_tenant(&b).await.unwrap();
    // Taking another tenant's domain on update is refused and changes nothing.
    let mut b2 = b.clone();
    b2.custom_domains = vec!["a.example.org".parse().unwrap()];
    assert!(matches!(
        c.update_tenant(&b2, 1).await,
        Err(CatalogError::Conflict(Conflict::Domain(_)))
    ));
    let stored = c.get_tenant(&TenantRef::Id(b.id)).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert!(stored.custom_domains.is_empty());
    // Once alpha releases it, bravo can have it.
    let mut a2 = a.clone();
    a2.custom_domains.clear();
    c.update_tenant(&a2, 1).await.unwrap();
    c.update_tenant(&b2, 1).await.unwrap();
}

pub async fn optimistic_concurrency(c: Catalog) {
    let t = tenant("charlie");
    c.create_tenant(&t).await.unwrap();
    let mut t2 = t.clone();
    t2.display_name = "Charlie 2".into();
    let stored = c.update_tenant(&t2, 1).await.unwrap();
    assert_eq!(stored.version, 2);
    let mut t3 = t.clone();
    t3.display_name = "lost update".into();
    match c.update_tenant(&t3, 1).await {
        Err(CatalogError::VersionMismatch { current }) => assert_eq!(current, 2),
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    let now = c.get_tenant(&TenantRef::Id(t.id)).await.unwrap().unwrap();
    assert_eq!(now.display_name, "Charlie 2");
    let mut ghost = tenant("ghost");
    ghost.display_name = "x".into();
    assert!(matches!(
        c.update_tenant(&ghost, 1).await,
        Err(CatalogError::NotFound)
    ));
}

pub async fn concurrent_updates_never_lose_one(c: Catalog) {
    let t = tenant("delta");
    c.create_tenant(&t).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let id = t.id;
        tasks.push(tokio::spawn(async move {
            loop {
                let mut cur = c.get_tenant(&TenantRef::Id(id)).await.unwrap().unwrap();
                let v = cur.version;
                cur.settings.insert(format!("k{i}"), serde_json::json!(i));
                match c.update_tenant(&cur, v).await {
                    Ok(_) => break,
                    Err(CatalogError::VersionMismatch { .. }) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fin = c.get_tenant(&TenantRef::Id(t.id)).await.unwrap().unwrap();
    assert_eq!(fin.version, 9);
    assert_eq!(fin.settings.len(), 8);
}

pub async fn listing_filters_and_paging(c: Catalog) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut t = tenant(&format!("hosp-{i:02}"));
        if i % 2 == 1 {
            t.profile = Profile::Council;
            t.display_name = format!("Câmara Municipal {i}");
        }
        if i == 6 {
            t.status = TenantStatus::Suspended;
        }
        c.create_tenant(&t).await.unwrap();
        ids.push(t.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c
            .list_tenants(&TenantQuery {
                after,
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|t| t.id));
        after = page.items.last().map(|t| t.id);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        seen, ids,
        "pages cover every tenant once, in creation order"
    );
    let councils = c
        .list_tenants(&TenantQuery {
            profile: Some(Profile::Council),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(councils.items.len(), 3);
    let suspended = c
        .list_tenants(&TenantQuery {
            status: Some(TenantStatus::Suspended),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(suspended.items.len(), 1);
    let text = c
        .list_tenants(&TenantQuery {
            q: Some("câmara municipal 3".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(text.items.len(), 1);
    let prefix = c
        .list_tenants(&TenantQuery {
            q: Some("hosp-0".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(prefix.items.len(), 7);
    let plan = c
        .list_tenants(&TenantQuery {
            plan: Some("large".parse().unwrap()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(plan.items.is_empty());
}

pub async fn change_feed(c: Catalog) {
    let start = c.changes_since(0, 1000).await.unwrap().last_seq;
    let a = tenant("echo");
    let b = tenant("foxtrot");
    c.create_tenant(&a).await.unwrap();
    c.create_tenant(&b).await.unwrap();
    let batch = c.changes_since(start, 1000).await.unwrap();
    assert_eq!(batch.tenants.len(), 2);
    let mut a2 = a.clone();
    a2.status = TenantStatus::Suspended;
    c.update_tenant(&a2, 1).await.unwrap();
    let next = c.changes_since(batch.last_seq, 1000).await.unwrap();
    assert_eq!(next.tenants.len(), 1);
    assert_eq!(next.tenants[0].status, TenantStatus::Suspended);
    assert!(next.last_seq > batch.last_seq);
    let none = c.changes_since(next.last_seq, 1000).await.unwrap();
    assert!(none.tenants.is_empty());
    assert_eq!(none.last_seq, next.last_seq);
    let limited = c.changes_since(start, 1).await.unwrap();
    assert_eq!(limited.tenants.len(), 1);
}

pub async fn purge_queue_and_counts(c: Catalog) {
    let now = OffsetDateTime::now_utc();
    let mut due = tenant("golf");
    due.status = TenantStatus::Deleting;
    due.delete_after = Some(now - time::Duration::hours(1));
    let mut later = tenant("hotel");
    later.status = TenantStatus::Deleting;
    later.delete_after = Some(now + time::Duration::hours(1));
    c.create_tenant(&due).await.unwrap();
    c.create_tenant(&later).await.unwrap();
    c.create_tenant(&tenant("india")).await.unwrap();
    let q = c.due_for_purge(now, 10).await.unwrap();
    assert_eq!(q.iter().map(|t| t.id).collect::<Vec<_>>(), vec![due.id]);
    let counts = c.count_by_status().await.unwrap();
    assert!(counts.contains(&(TenantStatus::Deleting, 2)));
    assert!(counts.contains(&(TenantStatus::Active, 1)));
}

pub async fn plans_seeded_and_editable(c: Catalog) {
    let plans = c.list_plans().await.unwrap();
    let names: Vec<_> = plans.iter().map(|p| p.name.to_string()).collect();
    assert_eq!(names, ["enterprise", "large", "medium", "small"]);
    let name: PlanName = "small".parse().unwrap();
    let mut p = c.get_plan(&name).await.unwrap().unwrap();
    p.quotas.max_users = 77;
    let stored = c.update_plan(&p, 1).await.unwrap();
    assert_eq!(stored.version, 2);
    assert!(matches!(
        c.update_plan(&p, 1).await,
        Err(CatalogError::VersionMismatch { current: 2 })
    ));
    assert_eq!(
        c.get_plan(&name).await.unwrap().unwrap().quotas.max_users,
        77
    );
    // Migrating again keeps edited quotas (quota values are data).
    c.migrate().await.unwrap();
    assert_eq!(
        c.get_plan(&name).await.unwrap().unwrap().quotas.max_users,
        77
    );
}

pub async fn operators(c: Catalog) {
    let op = Operator {
        id: OperatorId::new(),
        name: "ana@platform".into(),
        role: OperatorRole::PlatformAdmin,
        token_hash: "00".repeat(32),
        disabled: false,
        created_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
    };
    c.create_operator(&op).await.unwrap();
    let mut dup = op.clone();
    dup.id = OperatorId::new();
    assert!(matches!(
        c.create_operator(&dup).await,
        Err(CatalogError::Conflict(Conflict::OperatorName(_)))
    ));
    assert_eq!(c.get_operator(op.id).await.unwrap().unwrap(), op);
    assert_eq!(
        c.get_operator_by_name("ana@platform")
            .await
            .unwrap()
            .unwrap(),
        op
    );
    let mut op2 = op.clone();
    op2.disabled = true;
    c.update_operator(&op2).await.unwrap();
    assert!(c.get_operator(op.id).await.unwrap().unwrap().disabled);
    assert_eq!(c.list_operators().await.unwrap().len(), 1);
}

pub async fn monthly_request_counters(c: Catalog) {
    let (a, b) = (
        tenantplane_core::TenantId::new(),
        tenantplane_core::TenantId::new(),
    );
    assert_eq!(c.requests_in(a, "2026-12").await.unwrap(), 0);
    let out = c.add_requests("2026-12", &[(a, 5), (b, 2)]).await.unwrap();
    let get =
        |v: &[(tenantplane_core::TenantId, u64)], t| v.iter().find(|(x, _)| *x == t).unwrap().1;
    assert_eq!((get(&out, a), get(&out, b)), (5, 2));
    let out = c.add_requests("2026-12", &[(a, 3)]).await.unwrap();
    assert_eq!(get(&out, a), 8);
    // Months are separate; tenants are separate.
    c.add_requests("2027-01", &[(a, 1)]).await.unwrap();
    assert_eq!(c.requests_in(a, "2026-12").await.unwrap(), 8);
    assert_eq!(c.requests_in(a, "2027-01").await.unwrap(), 1);
    assert_eq!(c.requests_in(b, "2026-12").await.unwrap(), 2);
    // Replicas flushing at once lose nothing.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                c.add_requests("2026-12", &[(b, 1), (a, 1)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.requests_in(a, "2026-12").await.unwrap(), 88);
    assert_eq!(c.requests_in(b, "2026-12").await.unwrap(), 82);
}

/// Instantiates every conformance test for one backend. `$open` is an async expression
/// yielding a migrated, empty [`Catalog`].
macro_rules! catalog_conformance {
    ($module:ident, $open:expr) => {
        mod $module {
            use super::*;
            catalog_conformance!(@tests $open;
                create_get_roundtrip, slug_and_domain_uniqueness, optimistic_concurrency,
                concurrent_updates_never_lose_one, listing_filters_and_paging, change_feed,
                purge_queue_and_counts, plans_seeded_and_editable, operators,
                monthly_request_counters, standby_adds_stay_within_the_pool_size,
                standby_claims_hand_each_store_out_once,
                concurrent_standby_claims_never_share_a_store,
                ledger_adds_up_across_flushes_and_replicas,
                ledger_rolls_minutes_up_to_hours_exactly_once, meter_events_count_once,
                gauges_keep_the_latest_sample, price_sheet_compare_and_swap,
                budgets_and_alerts, platform_audit_chains_concurrent_appends);
        }
    };
    (@tests $open:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (catalog, _guard) = $open.await;
                super::$name(catalog).await;
            }
        )*
    };
}

async fn open_sqlite() -> (Catalog, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let c = tenantplane_catalog::open(dir.path().join("catalog.db").to_str().unwrap(), 4)
        .await
        .unwrap();
    c.migrate().await.unwrap();
    (c, dir)
}

async fn open_postgres() -> (Catalog, ()) {
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    let c = tenantplane_catalog::open(&url, 4).await.unwrap();
    c.migrate().await.unwrap();
    c.migrate().await.unwrap(); // idempotent
    (c, ())
}

catalog_conformance!(sqlite, open_sqlite());
catalog_conformance!(postgres, open_postgres());
