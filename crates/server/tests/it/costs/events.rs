//! `POST /api/v1/usage/events`: events counted once per key — under retries and with two
//! replicas receiving the same batch at once —, bad batches refused whole, roles.

use reqwest::Method;
use serde_json::json;
use tenantplane_catalog::usage::UsageQuery;
use tenantplane_client::Client;
use tenantplane_core::{
    OperatorRole, TenantId,
    api::CreateOperator,
    usage_api::{Quantity, UsageEvent, UsageEventBatch, UsageEventStatus},
};
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::{new_tenant, raw};

async fn operator(s: &TestServer, name: &str, role: OperatorRole) -> (Client, String) {
    let creds = s
        .client
        .create_operator(&CreateOperator {
            name: name.into(),
            role: Some(role),
        })
        .await
        .unwrap();
    (s.client.with_token(Some(creds.token.clone())), creds.token)
}

fn ev(tenant: &str, key: &str, q: Quantity) -> UsageEvent {
    UsageEvent {
        tenant: tenant.into(),
        meter: "inference-tokens".into(),
        quantity: q,
        timestamp: None,
        idempotency_key: key.into(),
    }
}

/// The tenant's `meter:inference-tokens` in the ledger (micro-units), this hour and the next.
async fn tokens(s: &TestServer, t: TenantId) -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    s.control
        .catalog()
        .usage(&UsageQuery {
            from: now - 86_400,
            to: now + 3_600,
            step: 90_000,
            tenant: Some(t),
        })
        .await
        .unwrap()
        .iter()
        .filter(|x| x.meter == "meter:inference-tokens")
        .map(|x| x.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_count_once_across_retries_and_replicas() {
    let one = TestServer::start_pg().await.unwrap();
    let two = TestServer::start_with(TestServerOptions {
        catalog_url: Some(one.config.catalog.url.clone()),
        token: Some(one.token.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let a = one
        .client
        .create_tenant(&new_tenant("ai-hospital"))
        .await
        .unwrap();
    let b = one
        .client
        .create_tenant(&new_tenant("other-hospital"))
        .await
        .unwrap();
    let (reporter, token) = operator(&one, "inference-service", OperatorRole::UsageReporter).await;
    let batch = UsageEventBatch {
        events: vec![
            ev("ai-hospital", "call-1", Quantity::Whole(1_000)),
            ev(&a.id.to_string(), "call-2", Quantity::Text("0.5".into())),
            ev("other-hospital", "call-1", Quantity::Number(2.25)),
        ],
    };
    let r = reporter.report_usage(&batch).await.unwrap();
    assert_eq!((r.recorded, r.duplicates), (3, 0));
    // A retry is answered, not counted (also seconds later: events without a timestamp
    // are the same events).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let r = reporter.report_usage(&batch).await.unwrap();
    assert_eq!((r.recorded, r.duplicates), (0, 3));
    assert!(
        r.events
            .iter()
            .all(|e| e.status == UsageEventStatus::Duplicate)
    );
    // Both replicas get the same new batch eight times at once: counted once.
    let reporter2 = Client::new(&two.url(), Some(token));
    let fresh = UsageEventBatch {
        events: (0..20)
            .map(|i| ev("ai-hospital", &format!("burst-{i}"), Quantity::Whole(1)))
            .collect(),
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = if i % 2 == 0 {
            reporter.clone()
        } else {
            reporter2.clone()
        };
        let batch = fresh.clone();
        tasks.push(tokio::spawn(async move {
            c.report_usage(&batch).await.unwrap()
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        recorded += t.await.unwrap().recorded;
    }
    assert_eq!(
        recorded, 20,
        "each of the 20 events recorded by exactly one call"
    );
    assert_eq!(tokens(&one, a.id).await, 1_000_500_000 + 20_000_000);
    assert_eq!(tokens(&two, b.id).await, 2_250_000);
    two.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_change_nothing() {
    let s = TestServer::start().await.unwrap();
    let a = s
        .client
        .create_tenant(&new_tenant("metered-hospital"))
        .await
        .unwrap();
    let (reporter, _) = operator(&s, "inference-service", OperatorRole::UsageReporter).await;
    reporter
        .report_usage(&UsageEventBatch {
            events: vec![ev("metered-hospital", "k1", Quantity::Whole(1))],
        })
        .await
        .unwrap();
    let before = tokens(&s, a.id).await;
    let post = |body: serde_json::Value| {
        reporter
            .request(Method::POST, "/api/v1/usage/events")
            .json(&body)
    };
    let good = json!({"tenant": "metered-hospital", "meter": "inference-tokens",
        "quantity": 5, "idempotency_key": "fresh"});
    let cases = [
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "inference-tokens", "quantity": -3, "idempotency_key": "neg"}]}),
            400,
            "/events/1/quantity",
        ),
        (
            json!({"events": [good, {"tenant": "nobody", "meter": "inference-tokens", "quantity": 1, "idempotency_key": "x"}]}),
            400,
            "/events/1/tenant",
        ),
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "Bad Meter", "quantity": 1, "idempotency_key": "x"}]}),
            400,
            "/events/1/meter",
        ),
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "t", "quantity": "1.0000001", "idempotency_key": "x"}]}),
            400,
            "/events/1/quantity",
        ),
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "t", "quantity": 1, "timestamp": "2020-01-01T00:00:00Z", "idempotency_key": "x"}]}),
            400,
            "/events/1/timestamp",
        ),
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "t", "quantity": 1, "timestamp": "2999-01-01T00:00:00Z", "idempotency_key": "x"}]}),
            400,
            "/events/1/timestamp",
        ),
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "t", "quantity": "99999999999999999999", "idempotency_key": "x"}]}),
            400,
            "/events/1/quantity",
        ),
        (json!({"events": []}), 400, "/events"),
        // The key of a recorded event reused for another quantity: 409, nothing written.
        (
            json!({"events": [good, {"tenant": "metered-hospital", "meter": "inference-tokens", "quantity": 2, "idempotency_key": "k1"}]}),
            409,
            "",
        ),
    ];
    for (body, status, pointer) in cases {
        let (st, ct, p, v) = raw(post(body.clone())).await;
        assert_eq!(st, status, "{body} -> {v}");
        assert_eq!(ct, "application/problem+json");
        let p = p.unwrap();
        if !pointer.is_empty() {
            assert!(p.errors.iter().any(|e| e.pointer == pointer), "{v}");
        }
    }
    let too_many: Vec<_> = (0..1_001)
        .map(|i| json!({"tenant": "metered-hospital", "meter": "t", "quantity": 1, "idempotency_key": format!("m{i}")}))
        .collect();
    let (st, ..) = raw(post(json!({ "events": too_many }))).await;
    assert_eq!(st, 400);
    let (st, ..) = raw(reporter
        .request(Method::POST, "/api/v1/usage/events")
        .header("content-type", "application/json")
        .body("{not json"))
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        tokens(&s, a.id).await,
        before,
        "nothing of any bad batch was counted"
    );
    // "fresh" was in every refused batch and was never recorded.
    let r = reporter
        .report_usage(&UsageEventBatch {
            events: vec![ev("metered-hospital", "fresh", Quantity::Whole(5))],
        })
        .await
        .unwrap();
    assert_eq!(r.recorded, 1);
    // Roles: a reporter reads nothing else; a billing viewer cannot report; no token, 401.
    let e = reporter.get_tenant("metered-hospital").await.unwrap_err();
    assert_eq!(e.problem().unwrap().status, 403);
    let (st, ..) = raw(reporter.request(Method::GET, "/metrics")).await;
    assert_eq!(st, 401);
    let (viewer, _) = operator(&s, "finance", OperatorRole::BillingViewer).await;
    let e = viewer
        .report_usage(&UsageEventBatch {
            events: vec![ev("metered-hospital", "v", Quantity::Whole(1))],
        })
        .await
        .unwrap_err();
    assert_eq!(e.problem().unwrap().status, 403);
    let (st, ..) = raw(s
        .anonymous()
        .request(Method::POST, "/api/v1/usage/events")
        .json(&json!({"events": []})))
    .await;
    assert_eq!(st, 401);
}
