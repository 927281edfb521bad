//! Tenant resolution over real HTTP: custom domains, subdomains, trusted headers, path
//! prefixes, spoofing, and invalidation across replicas sharing a PostgreSQL catalog.

use std::time::Duration;

use reqwest::Method;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::{new_tenant, raw};

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", s.url()))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_paths_and_spoofing() {
    let s = TestServer::start().await.unwrap();
    let c = &s.client;
    let mut a = new_tenant("alpha-hospital");
    a.custom_domains = vec!["records.alpha.example".into()];
    let a = c.create_tenant(&a).await.unwrap();
    let b = c
        .create_tenant(&new_tenant("bravo-hospital"))
        .await
        .unwrap();
    let anon = s.anonymous();

    assert_eq!(
        anon.tenant_profile_by_host("records.alpha.example")
            .await
            .unwrap()
            .id,
        a.id
    );
    assert_eq!(
        anon.tenant_profile_by_host("RECORDS.alpha.example.:8443")
            .await
            .unwrap()
            .id,
        a.id
    );
    assert_eq!(
        anon.tenant_profile_by_host("bravo-hospital.tp.test")
            .await
            .unwrap()
            .id,
        b.id
    );
    assert_eq!(
        anon.tenant_profile_by_path("bravo-hospital")
            .await
            .unwrap()
            .id,
        b.id
    );
    let p = anon.tenant_profile_by_path("alpha-hospital").await.unwrap();
    assert_eq!(
        p.branding.display_name.as_deref(),
        Some("Hospital alpha-hospital")
    );

    // Unknown tenants, look-alike hosts and no tenant at all: 404 tenant-not-found.
    for host in [
        "nobody.tp.test",
        "alpha-hospital.tp.test.evil.example",
        "x.bravo-hospital.tp.test",
        "records.alpha.example.evil.example",
    ] {
        let (st, _, p, _) = raw(anon
            .request(Method::GET, "/api/tenant")
            .header("host", host))
        .await;
        assert_eq!(
            (st, p.unwrap().code().to_owned()),
            (404, "tenant-not-found".to_owned()),
            "{host}"
        );
    }
    let (st, _, p, _) = raw(anon.request(Method::GET, "/t/nobody/api/tenant")).await;
    assert_eq!(
        (st, p.unwrap().code().to_owned()),
        (404, "tenant-not-found".to_owned())
    );
    let (st, _, p, _) = raw(anon.request(Method::GET, "/api/tenant")).await;
    assert_eq!(
        (st, p.unwrap().code().to_owned()),
        (404, "tenant-not-found".to_owned())
    );
    // A tenant route that does not exist is a plain 404 (after resolution).
    let (st, _, p, _) = raw(anon.request(Method::GET, "/t/alpha-hospital/nothing")).await;
    assert_eq!(
        (st, p.unwrap().code().to_owned()),
        (404, "not-found".to_owned())
    );

    // Host decides; a path prefix naming another tenant does not override it.
    let (st, _, _, body) = raw(anon
        .request(Method::GET, "/t/alpha-hospital/api/tenant")
        .header("host", "bravo-hospital.tp.test"))
    .await;
    assert_eq!(st, 404, "{body}");
    let (st, _, _, body) = raw(anon
        .request(Method::GET, "/api/tenant")
        .header("host", "bravo-hospital.tp.test"))
    .await;
    assert_eq!((st, body["slug"].as_str()), (200, Some("bravo-hospital")));
    // X-Forwarded-Host is not a tenant selector.
    let (st, _, _, _) = raw(anon
        .request(Method::GET, "/api/tenant")
        .header("x-forwarded-host", "records.alpha.example"))
    .await;
    assert_eq!(st, 404);

    // X-Tenant-Id from an untrusted address (no proxies configured): ignored and counted.
    let before = metric(&s, "tenantplane_untrusted_tenant_header_total").await;
    let (st, _, _, _) = raw(anon
        .request(Method::GET, "/api/tenant")
        .header("x-tenant-id", "alpha-hospital"))
    .await;
    assert_eq!(st, 404);
    let (st, _, _, body) = raw(anon
        .request(Method::GET, "/t/bravo-hospital/api/tenant")
        .header("x-tenant-id", "alpha-hospital"))
    .await;
    assert_eq!((st, body["slug"].as_str()), (200, Some("bravo-hospital")));
    let after = metric(&s, "tenantplane_untrusted_tenant_header_total").await;
    assert!(after >= before + 2.0, "{before} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_header() {
    let s = TestServer::start_with(TestServerOptions {
        trusted_proxies: vec!["127.0.0.0/8".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let a = s
        .client
        .create_tenant(&new_tenant("alpha-hospital"))
        .await
        .unwrap();
    let anon = s.anonymous();
    let (st, _, _, body) = raw(anon
        .request(Method::GET, "/api/tenant")
        .header("x-tenant-id", "alpha-hospital"))
    .await;
    assert_eq!(
        (st, body["id"].as_str()),
        (200, Some(a.id.to_string().as_str()))
    );
    let (st, _, _, body) = raw(anon
        .request(Method::GET, "/api/tenant")
        .header("x-tenant-id", a.id.to_string()))
    .await;
    assert_eq!((st, body["slug"].as_str()), (200, Some("alpha-hospital")));
    let (st, ..) = raw(anon
        .request(Method::GET, "/api/tenant")
        .header("x-tenant-id", "ghost"))
    .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_postgres_catalog_converge() {
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    let opts = TestServerOptions {
        catalog_url: Some(url),
        poll_interval_ms: Some(50),
        ..Default::default()
    };
    let r1 = TestServer::start_with(opts.clone()).await.unwrap();
    let r2 = TestServer::start_with(opts).await.unwrap();
    let mut req = new_tenant("shared-hospital");
    req.custom_domains = vec!["shared.example.org".into()];
    r1.client.create_tenant(&req).await.unwrap();
    let wait_for = |status: u16| {
        let anon = r2.anonymous();
        async move {
            for _ in 0..100 {
                let (st, ..) = raw(anon
                    .request(Method::GET, "/api/tenant")
                    .header("host", "shared.example.org"))
                .await;
                if st == status {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(wait_for(200).await, "replica 2 learns the new tenant");
    r1.client
        .transition("shared-hospital", "suspend", None)
        .await
        .unwrap();
    assert!(wait_for(403).await, "replica 2 learns the suspension");
    r1.client
        .remove_domain("shared-hospital", "shared.example.org")
        .await
        .unwrap();
    assert!(wait_for(404).await, "replica 2 forgets the removed domain");
}
