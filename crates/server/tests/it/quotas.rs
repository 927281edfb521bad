//! Plan quotas enforced at the edge: the monthly request quota (metered per replica,
//! flushed to the catalog), its 403 problem with limit and usage, the usage endpoint, a
//! plan change applying without restart, and counts surviving a restart.

use std::time::Duration;

use tenantplane_core::api::{CreateTenant, UpdatePlan};
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::new_tenant;

async fn set_monthly(s: &TestServer, plan: &str, n: u64) {
    let current = s
        .client
        .list_plans()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.name.as_str() == plan)
        .unwrap();
    s.client
        .update_plan(
            plan,
            &UpdatePlan {
                display_name: None,
                // A month must allow at least a minute's worth.
                quotas: Some(tenantplane_core::Quotas {
                    requests_per_month: n,
                    requests_per_minute: n,
                    ..current.quotas
                }),
                default_isolation: None,
            },
        )
        .await
        .unwrap();
}

async fn until<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_request_quota_is_enforced_metered_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || TestServerOptions {
        data_dir: Some(dir.path().to_path_buf()),
        poll_interval_ms: Some(100),
        metering_flush_secs: Some(1),
        // The per-minute limit would answer 429 first; this test is about the month.
        limits: Some(tenantplane_server::config::LimitsConfig {
            per_tenant: false,
            ..Default::default()
        }),
        ..Default::default()
    };
    let s = TestServer::start_with(opts()).await.unwrap();
    set_monthly(&s, "small", 5).await;
    s.client
        .create_tenant(&CreateTenant {
            plan: Some("small".into()),
            ..new_tenant("metered")
        })
        .await
        .unwrap();
    s.client
        .create_tenant(&CreateTenant {
            plan: Some("medium".into()),
            ..new_tenant("unmetered")
        })
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let get = |slug: &'static str| {
        let c = c.clone();
        let url = format!("{}/t/{slug}/api/tenant", s.url());
        async move { c.get(url).send().await.unwrap() }
    };
    // Let the plan change reach the server's plan cache.
    until(|| async {
        s.control
            .quotas(&"small".parse().unwrap())
            .is_some_and(|q| q.requests_per_month == 5)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get("metered").await.status(), 200);
    }
    let r = get("metered").await;
    assert_eq!(r.status(), 403);
    let p: tenantplane_core::api::Problem = r.json().await.unwrap();
    assert_eq!(p.code(), "quota-exceeded");
    let body = serde_json::to_value(&p).unwrap();
    assert_eq!(body["quota"], "requests_per_month");
    assert_eq!(body["limit"], 5);
    assert_eq!(body["current"], 5);
    // Refused requests are not counted; other tenants are not affected.
    assert_eq!(get("unmetered").await.status(), 200);
    // The counts reach the catalog and the usage endpoint.
    until(|| async {
        let u = s.client.tenant_usage("metered").await.unwrap();
        u.requests == 5 && u.requests_limit == 5
    })
    .await;
    let month = tenantplane_metering::current_month();
    let id = s.client.get_tenant("metered").await.unwrap().id;
    until(|| async { s.control.catalog().requests_in(id, &month).await.unwrap() == 5 }).await;
    let u = s.client.tenant_usage("metered").await.unwrap();
    assert_eq!((u.users, u.month.len()), (0, 7));
    assert!(matches!(
        s.client.tenant_usage("nobody").await,
        Err(e) if e.to_string().contains("404") || e.to_string().contains("not-found")
    ));

    // A bigger plan applies without a restart.
    set_monthly(&s, "small", 7).await;
    until(|| async { get("metered").await.status() == 200 }).await;

    // After a restart the month's counts are still there.
    drop(c);
    let _ = s.stop().await.unwrap();
    let s2 = TestServer::start_with(opts()).await.unwrap();
    let u = s2.client.tenant_usage("metered").await.unwrap();
    assert!(u.requests >= 6, "{u:?}");
    assert_eq!(u.requests_limit, 7);
}
