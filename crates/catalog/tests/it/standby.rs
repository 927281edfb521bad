//! Conformance cases of standby stores: bounded adds, one claim per store, atomic claims.

use tenantplane_catalog::{Catalog, CatalogError, Conflict, StandbyState, StandbyStore};
use tenantplane_core::{IsolationMode, TenantRef};
use time::OffsetDateTime;

use crate::tenant;

fn store(mode: IsolationMode, server: Option<&str>) -> StandbyStore {
    StandbyStore::new(mode, server.map(str::to_owned), OffsetDateTime::now_utc())
}

async fn ready(c: &Catalog, s: &StandbyStore, v: u32) {
    assert!(
        c.set_standby(s.id, StandbyState::Preparing, StandbyState::Ready, v)
            .await
            .unwrap()
    );
}

pub async fn standby_adds_stay_within_the_pool_size(c: Catalog) {
    let a = store(IsolationMode::PgSchema, Some("main"));
    let b = store(IsolationMode::PgSchema, Some("main"));
    assert!(c.add_standby(&a, 2).await.unwrap());
    assert!(c.add_standby(&b, 2).await.unwrap());
    assert!(
        !c.add_standby(&store(IsolationMode::PgSchema, Some("main")), 2)
            .await
            .unwrap()
    );
    // Other modes and servers have their own pools.
    assert!(
        c.add_standby(&store(IsolationMode::PgSchema, Some("other")), 2)
            .await
            .unwrap()
    );
    assert!(
        c.add_standby(&store(IsolationMode::Sqlite, None), 2)
            .await
            .unwrap()
    );
    // A retiring store no longer counts.
    ready(&c, &a, 7).await;
    assert!(
        c.set_standby(a.id, StandbyState::Ready, StandbyState::Retiring, 7)
            .await
            .unwrap()
    );
    assert!(
        !c.set_standby(a.id, StandbyState::Ready, StandbyState::Retiring, 7)
            .await
            .unwrap()
    );
    assert!(
        c.add_standby(&store(IsolationMode::PgSchema, Some("main")), 2)
            .await
            .unwrap()
    );
    let all = c.list_standby().await.unwrap();
    assert_eq!(all.len(), 5);
    let got = all.iter().find(|s| s.id == a.id).unwrap();
    assert_eq!((got.state, got.schema_version), (StandbyState::Retiring, 7));
    assert_eq!(
        all.iter()
            .find(|s| s.isolation == IsolationMode::Sqlite)
            .unwrap()
            .placement,
        None
    );
    c.remove_standby(a.id).await.unwrap();
    assert_eq!(c.list_standby().await.unwrap().len(), 4);
}

pub async fn standby_claims_hand_each_store_out_once(c: Catalog) {
    let mut t = tenant("claimer");
    t.isolation = IsolationMode::PgSchema;
    t.placement = Some("main".into());
    t.schema_version = 9;
    // Nothing ready: nothing claimed, nothing written.
    let preparing = store(IsolationMode::PgSchema, Some("main"));
    c.add_standby(&preparing, 5).await.unwrap();
    assert!(c.create_tenant_on_standby(&t).await.unwrap().is_none());
    assert!(c.get_tenant(&TenantRef::Id(t.id)).await.unwrap().is_none());
    // Ready at another schema version, on another server, of another mode: not claimable.
    ready(&c, &preparing, 8).await;
    let elsewhere = store(IsolationMode::PgSchema, Some("other"));
    c.add_standby(&elsewhere, 5).await.unwrap();
    ready(&c, &elsewhere, 9).await;
    let shared = store(IsolationMode::PgShared, Some("main"));
    c.add_standby(&shared, 5).await.unwrap();
    ready(&c, &shared, 9).await;
    assert!(c.create_tenant_on_standby(&t).await.unwrap().is_none());
    // Ready and matching: the tenant is recorded under the store's id.
    let good = store(IsolationMode::PgSchema, Some("main"));
    c.add_standby(&good, 5).await.unwrap();
    ready(&c, &good, 9).await;
    let seq = c.changes_since(0, 10_000).await.unwrap().last_seq;
    let got = c.create_tenant_on_standby(&t).await.unwrap().unwrap();
    assert_eq!(got.id, good.id);
    // Replicas learn of it through the change feed.
    let feed = c.changes_since(seq, 100).await.unwrap();
    assert_eq!(
        feed.tenants.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![good.id]
    );
    assert!(feed.last_seq > seq);
    assert_eq!(
        c.get_tenant(&TenantRef::Id(good.id))
            .await
            .unwrap()
            .unwrap(),
        got
    );
    assert!(
        c.list_standby()
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != good.id)
    );
    // A conflict rolls the claim back: the store stays claimable.
    let again = store(IsolationMode::PgSchema, Some("main"));
    c.add_standby(&again, 5).await.unwrap();
    ready(&c, &again, 9).await;
    assert!(matches!(
        c.create_tenant_on_standby(&t).await,
        Err(CatalogError::Conflict(Conflict::Slug(_)))
    ));
    assert!(
        c.list_standby()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == again.id)
    );
    // With custom domains: claimed and recorded with them; a domain taken rolls back.
    let domained = store(IsolationMode::PgSchema, Some("main"));
    c.add_standby(&domained, 5).await.unwrap();
    ready(&c, &domained, 9).await;
    let mut td = tenant("claimer-domains");
    td.isolation = IsolationMode::PgSchema;
    td.placement = Some("main".into());
    td.schema_version = 9;
    td.custom_domains = vec!["records.claimer.example".parse().unwrap()];
    let got_d = c.create_tenant_on_standby(&td).await.unwrap().unwrap();
    // The oldest ready store goes first: the one left by the slug conflict above.
    assert!([again.id, domained.id].contains(&got_d.id));
    assert_eq!(
        c.get_tenant(&TenantRef::Id(got_d.id))
            .await
            .unwrap()
            .unwrap()
            .custom_domains,
        td.custom_domains
    );
    let spare = store(IsolationMode::PgSchema, Some("main"));
    c.add_standby(&spare, 5).await.unwrap();
    ready(&c, &spare, 9).await;
    let mut clash = td.clone();
    clash.slug = "claimer-clash".parse().unwrap();
    let before = c.list_standby().await.unwrap().len();
    assert!(matches!(
        c.create_tenant_on_standby(&clash).await,
        Err(CatalogError::Conflict(Conflict::Domain(_)))
    ));
    assert_eq!(
        c.list_standby().await.unwrap().len(),
        before,
        "nothing claimed"
    );
    assert!(
        !c.set_standby(good.id, StandbyState::Ready, StandbyState::Retiring, 9)
            .await
            .unwrap()
    );
}

pub async fn concurrent_standby_claims_never_share_a_store(c: Catalog) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let s = store(IsolationMode::Sqlite, None);
        c.add_standby(&s, 10).await.unwrap();
        ready(&c, &s, 1).await;
        ids.push(s.id);
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let mut t = tenant(&format!("racer-{i}"));
        t.schema_version = 1;
        tasks.push(tokio::spawn(async move {
            c.create_tenant_on_standby(&t).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        if let Some(t) = t.await.unwrap() {
            claimed.push(t.id);
        }
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "each store claimed exactly once");
    assert!(c.list_standby().await.unwrap().is_empty());
}
