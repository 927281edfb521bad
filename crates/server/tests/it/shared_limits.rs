//! Rate limits shared by replicas through a real `redis-server` (started by the testkit on
//! a free port): the GCRA script's semantics, two server processes drawing from one limit,
//! the fallback to in-process limits when Redis goes away, and a clear start-up error when
//! it is configured but unreachable.

use std::time::Duration;

use tenantplane_server::{
    config::LimitsConfig,
    limits::{Decision, redis::RedisGcra},
};
use tenantplane_testkit::{TestServer, TestServerOptions, redis::RedisServer};

use crate::new_tenant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_script_matches_the_local_limiter() {
    let redis = RedisServer::start().unwrap();
    let r = RedisGcra::connect(&redis.url(), "unit:", Duration::from_millis(500))
        .await
        .unwrap();
    // A burst of `limit`, with the remaining count going down, then a wait of about one
    // emission interval (60 s / 3 = 20 s).
    for left in [2, 1, 0] {
        match r.check("ip", "10.0.0.1", 3).await.unwrap() {
            Decision::Allowed {
                remaining, limit, ..
            } => assert_eq!((remaining, limit), (left, 3)),
            d => panic!("expected allowed, got {d:?}"),
        }
    }
    match r.check("ip", "10.0.0.1", 3).await.unwrap() {
        Decision::Limited { wait, .. } => {
            assert!(
                wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
                "{wait:?}"
            )
        }
        d => panic!("expected limited, got {d:?}"),
    }
    // Other keys and policies are independent.
    assert!(matches!(
        r.check("ip", "10.0.0.2", 3).await.unwrap(),
        Decision::Allowed { .. }
    ));
    assert!(matches!(
        r.check("login", "10.0.0.1", 3).await.unwrap(),
        Decision::Allowed { .. }
    ));
    // A fast limit recovers: 600/min is one every 100 ms. The burst of 600 is used up
    // (a slow machine regains a few while checking, hence not an exact count).
    let mut allowed = 0;
    loop {
        match r.check("fast", "k", 600).await.unwrap() {
            Decision::Allowed { .. } => allowed += 1,
            Decision::Limited { .. } => break,
        }
        assert!(allowed < 5_000, "the fast limit never filled");
    }
    assert!(allowed >= 600, "{allowed}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        r.check("fast", "k", 600).await.unwrap(),
        Decision::Allowed { .. }
    ));
}

fn shared(url: &str, per_ip: u32) -> TestServerOptions {
    TestServerOptions {
        limits: Some(LimitsConfig {
            per_ip_per_minute: per_ip,
            redis_url: Some(url.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_draw_from_one_limit_and_fall_back_without_redis() {
    let redis = RedisServer::start().unwrap();
    let a = TestServer::start_with(shared(&redis.url(), 10))
        .await
        .unwrap();
    let b = TestServer::start_with(shared(&redis.url(), 10))
        .await
        .unwrap();
    assert!(a.limits.is_shared() && b.limits.is_shared());
    a.client
        .create_tenant(&new_tenant("shared-a"))
        .await
        .unwrap();
    b.client
        .create_tenant(&new_tenant("shared-b"))
        .await
        .unwrap();
    // The two creations above used 2 of the 10 allowed for 127.0.0.1.
    let c = reqwest::Client::new();
    let mut codes = Vec::new();
    for i in 0..12 {
        let (srv, slug) = if i % 2 == 0 {
            (&a, "shared-a")
        } else {
            (&b, "shared-b")
        };
        let r = c
            .get(format!("{}/t/{slug}/api/tenant", srv.url()))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    // Each replica alone would have allowed 10; together they allowed 10 in all.
    assert!(ok <= 8, "{codes:?}");
    assert_eq!(*codes.last().unwrap(), 429, "{codes:?}");
    let r = c
        .get(format!("{}/t/shared-b/api/tenant", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.headers()["ratelimit-policy"], "\"ip\";q=10;w=60");

    // Redis goes away: requests are still answered, limited by each replica's own limiter
    // (which has seen only its own share of the traffic), and the failure is counted.
    // (Redis stops asynchronously: ask until a request has met the failure, at most ~20 s.)
    drop(redis);
    let mut counted = false;
    for _ in 0..100 {
        let r = c
            .get(format!("{}/t/shared-a/api/tenant", a.url()))
            .send()
            .await
            .unwrap();
        assert!(matches!(r.status().as_u16(), 200 | 429), "{}", r.status());
        let metrics = c
            .get(format!("{}/metrics", a.url()))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("tenantplane_rate_limit_backend_errors_total") {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(counted, "the fallback is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_start_up_clearly() {
    let port = tenantplane_testkit::pg::free_port().unwrap();
    let err = TestServer::start_with(shared(&format!("redis://:hunter2@127.0.0.1:{port}/0"), 10))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("limits.redis_url"), "{msg}");
    assert!(!msg.contains("hunter2"), "the password is not shown: {msg}");
}
