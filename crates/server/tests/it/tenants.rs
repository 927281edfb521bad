use reqwest::Method;
use tenantplane_client::ListQuery;
use tenantplane_core::{
    Branding, DomainKind, TenantStatus,
    api::{CreateTenant, UpdateTenant},
};
use tenantplane_testkit::TestServer;

use crate::{new_tenant, raw};

async fn crud(s: TestServer) {
    let c = &s.client;
    let mut req = new_tenant("real-hospital-portugues");
    req.display_name = "Real Hospital Português".into();
    req.custom_domains = vec!["records.rhp.example".into()];
    req.branding = Some(Branding {
        primary_color: Some("#005a9c".into()),
        ..Default::default()
    });
    req.settings = Some(
        serde_json::from_value(serde_json::json!({"departments": 4, "daily_users": 200})).unwrap(),
    );
    let res = c
        .request(Method::POST, "/api/v1/tenants")
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let t: tenantplane_core::api::TenantView = res.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/tenants/{}", t.id));
    assert_eq!(t.status, TenantStatus::Active);
    assert_eq!(etag, format!("\"{}\"", t.version));
    assert_eq!(t.plan, "small");
    assert_eq!(t.domains.len(), 2);
    assert_eq!(t.domains[0].kind, DomainKind::Subdomain);
    assert_eq!(
        t.domains[0].name.as_str(),
        "real-hospital-portugues.tp.test"
    );
    assert_eq!(t.settings["departments"], 4);

    // Read by id and by slug.
    assert_eq!(c.get_tenant(&t.id.to_string()).await.unwrap(), t);
    assert_eq!(c.get_tenant("real-hospital-portugues").await.unwrap(), t);

    // Update with the right ETag, then with a stale one.
    let upd = UpdateTenant {
        plan: Some("medium".into()),
        display_name: Some("Real Hospital Português de Beneficência".into()),
        ..Default::default()
    };
    let t2 = c
        .update_tenant("real-hospital-portugues", &upd, Some(t.version))
        .await
        .unwrap();
    assert_eq!(t2.plan, "medium");
    assert_eq!(t2.version, t.version + 1);
    let err = c
        .update_tenant("real-hospital-portugues", &upd, Some(t.version))
        .await
        .unwrap_err();
    let p = err.problem().unwrap();
    assert_eq!((p.status, p.code()), (412, "version-mismatch"));
    assert_eq!(p.current_version, Some(t2.version));
    assert_eq!(c.get_tenant("real-hospital-portugues").await.unwrap(), t2);

    // Domains.
    let t3 = c
        .add_domain("real-hospital-portugues", "portal.rhp.example")
        .await
        .unwrap();
    assert_eq!(t3.domains.len(), 3);
    let t4 = c
        .remove_domain("real-hospital-portugues", "records.rhp.example")
        .await
        .unwrap();
    assert_eq!(
        t4.domains
            .iter()
            .map(|d| d.name.to_string())
            .collect::<Vec<_>>(),
        ["real-hospital-portugues.tp.test", "portal.rhp.example"]
    );
    let e = c
        .remove_domain("real-hospital-portugues", "records.rhp.example")
        .await
        .unwrap_err();
    assert_eq!(e.problem().unwrap().status, 404);
}

async fn listing(s: TestServer) {
    let c = &s.client;
    for i in 0..12 {
        let mut r = new_tenant(&format!("tenant-{i:02}"));
        if i % 3 == 0 {
            r.profile = Some(tenantplane_core::Profile::Council);
        }
        c.create_tenant(&r).await.unwrap();
    }
    c.transition("tenant-01", "suspend", Some("unpaid invoice".into()))
        .await
        .unwrap();
    let all = c
        .list_all_tenants(&ListQuery {
            limit: Some(5),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 12);
    let slugs: Vec<_> = all.iter().map(|t| t.slug.to_string()).collect();
    let mut sorted = slugs.clone();
    sorted.sort();
    assert_eq!(slugs, sorted, "creation order");
    let councils = c
        .list_all_tenants(&ListQuery {
            profile: Some("council".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(councils.len(), 4);
    let suspended = c
        .list_tenants(&ListQuery {
            status: Some("suspended".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(suspended.items.len(), 1);
    assert_eq!(
        suspended.items[0].status_reason.as_deref(),
        Some("unpaid invoice")
    );
    assert!(suspended.next_cursor.is_none());
    let q = c
        .list_tenants(&ListQuery {
            q: Some("tenant-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.items.len(), 2);
}

async fn concurrent_patches_all_land(s: TestServer) {
    let c = s.client.clone();
    let created = c
        .create_tenant(&new_tenant("busy-hospital"))
        .await
        .unwrap()
        .version;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            // Each writer changes a different field group; none may be lost.
            let upd = if i % 2 == 0 {
                UpdateTenant {
                    display_name: Some(format!("Name {i}")),
                    ..Default::default()
                }
            } else {
                UpdateTenant {
                    branding: Some(Branding {
                        primary_color: Some("#123456".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            };
            c.update_tenant("busy-hospital", &upd, None)
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 10, "every update got its own version");
    let t = c.get_tenant("busy-hospital").await.unwrap();
    assert_eq!(t.version, created + 10);
    assert_eq!(t.branding.primary_color.as_deref(), Some("#123456"));
}

async fn readonly_operator_cannot_write(s: TestServer) {
    let creds = s
        .client
        .create_operator(&tenantplane_core::api::CreateOperator {
            name: "finance".into(),
            role: Some(tenantplane_core::OperatorRole::BillingViewer),
        })
        .await
        .unwrap();
    let viewer = s.client.with_token(Some(creds.token));
    viewer.list_tenants(&ListQuery::default()).await.unwrap();
    let e = viewer
        .create_tenant(&new_tenant("nope-hospital"))
        .await
        .unwrap_err();
    assert_eq!(e.problem().unwrap().status, 403);
    let (status, ..) = raw(s
        .client
        .request(Method::GET, "/api/v1/tenants/nope-hospital"))
    .await;
    assert_eq!(status, 404);
}

async fn restart_keeps_everything(s: TestServer) {
    let t = s
        .client
        .create_tenant(&CreateTenant {
            custom_domains: vec!["keep.example.org".into()],
            ..new_tenant("durable-hospital")
        })
        .await
        .unwrap();
    let opts = tenantplane_testkit::TestServerOptions {
        catalog_url: Some(s.config.catalog.url.clone()).filter(|u| !u.is_empty()),
        data_dir: Some(s.config.storage.data_dir.clone()),
        ..Default::default()
    };
    let dir = s.stop().await.unwrap();
    let s2 = tenantplane_testkit::TestServer::start_with(opts)
        .await
        .unwrap();
    assert_eq!(s2.client.get_tenant("durable-hospital").await.unwrap(), t);
    let p = s2
        .anonymous()
        .tenant_profile_by_host("keep.example.org")
        .await
        .unwrap();
    assert_eq!(p.id, t.id);
    drop(dir);
}

macro_rules! both_catalogs {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(tenantplane_testkit::TestServer::start().await.unwrap()).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(tenantplane_testkit::TestServer::start_pg().await.unwrap()).await; })*
        }
    };
}

both_catalogs!(
    crud,
    listing,
    concurrent_patches_all_land,
    readonly_operator_cannot_write,
    restart_keeps_everything
);
