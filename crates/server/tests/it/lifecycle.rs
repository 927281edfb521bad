//! Suspend, resume, delete with a grace period, restore, purge.

use std::time::Duration;

use tenantplane_core::TenantStatus;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::new_tenant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_is_enforced_at_the_edge() {
    let s = TestServer::start().await.unwrap();
    let c = &s.client;
    let anon = s.anonymous();
    c.create_tenant(&new_tenant("santa-maria")).await.unwrap();
    assert_eq!(
        anon.tenant_profile_by_path("santa-maria")
            .await
            .unwrap()
            .slug
            .as_str(),
        "santa-maria"
    );

    let t = c
        .transition("santa-maria", "suspend", Some("maintenance".into()))
        .await
        .unwrap();
    assert_eq!(t.status, TenantStatus::Suspended);
    let e = anon
        .tenant_profile_by_path("santa-maria")
        .await
        .unwrap_err();
    assert_eq!(
        (e.problem().unwrap().status, e.problem().unwrap().code()),
        (403, "tenant-suspended")
    );

    let t = c.delete_tenant("santa-maria", None).await.unwrap();
    assert_eq!(t.status, TenantStatus::Deleting);
    assert!(t.delete_after.is_some());
    let e = anon
        .tenant_profile_by_host("santa-maria.tp.test")
        .await
        .unwrap_err();
    assert_eq!(
        (e.problem().unwrap().status, e.problem().unwrap().code()),
        (410, "tenant-gone")
    );

    // Restore returns to the status it had before deletion.
    let t = c.transition("santa-maria", "restore", None).await.unwrap();
    assert_eq!(t.status, TenantStatus::Suspended);
    assert!(t.delete_after.is_none());
    let t = c.transition("santa-maria", "resume", None).await.unwrap();
    assert_eq!(t.status, TenantStatus::Active);
    assert!(t.status_reason.is_none());
    anon.tenant_profile_by_path("santa-maria").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_ends_in_deleted_and_releases_domains() {
    let s = TestServer::start_with(TestServerOptions {
        deletion_grace_hours: Some(0),
        purge_interval_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = &s.client;
    let mut req = new_tenant("sao-joao");
    req.custom_domains = vec!["records.sjh.example".into()];
    c.create_tenant(&req).await.unwrap();
    c.delete_tenant("sao-joao", Some("contract ended".into()))
        .await
        .unwrap();
    let mut status = TenantStatus::Deleting;
    for _ in 0..50 {
        status = c.get_tenant("sao-joao").await.unwrap().status;
        if status == TenantStatus::Deleted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, TenantStatus::Deleted);
    let t = c.get_tenant("sao-joao").await.unwrap();
    assert_eq!(t.domains.len(), 1, "custom domains released");
    // Deleted is terminal; the slug stays taken; the domain is free for someone else.
    let e = c.transition("sao-joao", "restore", None).await.unwrap_err();
    assert_eq!(e.problem().unwrap().code(), "illegal-transition");
    assert_eq!(
        e.problem().unwrap().allowed_transitions.as_deref(),
        Some(&[][..])
    );
    assert_eq!(
        c.create_tenant(&new_tenant("sao-joao"))
            .await
            .unwrap_err()
            .problem()
            .unwrap()
            .code(),
        "slug-taken"
    );
    let mut other = new_tenant("sao-joao-novo");
    other.custom_domains = vec!["records.sjh.example".into()];
    c.create_tenant(&other).await.unwrap();
    let e = s
        .anonymous()
        .tenant_profile_by_path("sao-joao")
        .await
        .unwrap_err();
    assert_eq!(e.problem().unwrap().status, 410);
}
