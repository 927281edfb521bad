//! Budgets and alerts' conformance cases (part of `catalog_conformance!`).

use tenantplane_catalog::{
    Catalog,
    budgets::{AlertRow, Attempt, StoredBudget},
};
use tenantplane_core::TenantId;
use uuid::Uuid;

fn alert(budget: Uuid, tenant: TenantId, threshold: i32, due: Option<i64>) -> AlertRow {
    AlertRow {
        id: Uuid::now_v7(),
        budget,
        tenant,
        period_start: 1_000,
        kind: "actual".into(),
        threshold,
        created_at: 2_000 + i64::from(threshold),
        payload: serde_json::json!({"threshold": threshold}),
        delivered_at: None,
        attempts: 0,
        next_attempt_at: due,
        last_error: None,
    }
}

pub async fn budgets_and_alerts(c: Catalog) {
    let b = StoredBudget {
        id: Uuid::now_v7(),
        created_at: 1,
        doc: serde_json::json!({"name": "icu"}),
    };
    c.put_budget(&b).await.unwrap();
    assert_eq!(c.budgets().await.unwrap(), vec![b.clone()]);
    let (t, u) = (TenantId::new(), TenantId::new());
    // The same alert raised by two replicas at once is recorded once.
    let (x, y) = (alert(b.id, t, 50, Some(10)), alert(b.id, t, 50, Some(10)));
    let (rx, ry) = tokio::join!(c.insert_alert(&x), c.insert_alert(&y));
    assert!(rx.unwrap() ^ ry.unwrap(), "exactly one is new");
    assert!(c.insert_alert(&alert(b.id, t, 80, Some(10))).await.unwrap());
    assert!(c.insert_alert(&alert(b.id, u, 50, None)).await.unwrap());
    assert_eq!(c.alerts(None, None, 10).await.unwrap().len(), 3);
    assert_eq!(c.alerts(Some(u), None, 10).await.unwrap().len(), 1);
    assert_eq!(
        c.alerts(None, Some(Uuid::now_v7()), 10)
            .await
            .unwrap()
            .len(),
        0
    );
    // Two replicas claim at once: each due alert goes to one of them; not-yet-due and
    // webhook-less alerts to none.
    let (a1, a2) = tokio::join!(c.claim_due(10, 60, 10), c.claim_due(10, 60, 10));
    let (a1, a2) = (a1.unwrap(), a2.unwrap());
    assert_eq!(a1.len() + a2.len(), 2);
    assert!(a1.iter().all(|a| a2.iter().all(|b| a.id != b.id)));
    assert!(c.claim_due(10, 60, 10).await.unwrap().is_empty(), "leased");
    let id = a1.iter().chain(&a2).next().unwrap().id;
    c.record_attempt(
        id,
        &Attempt {
            attempt: 1,
            at: 11,
            status: Some(500),
            error: Some("HTTP 500".into()),
            delivered: false,
            next_attempt_at: Some(20),
        },
    )
    .await
    .unwrap();
    c.record_attempt(
        id,
        &Attempt {
            attempt: 2,
            at: 21,
            status: Some(204),
            error: None,
            delivered: true,
            next_attempt_at: None,
        },
    )
    .await
    .unwrap();
    let log = c.deliveries(id).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].status, log[1].status), (Some(500), Some(204)));
    let a = c
        .alerts(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == id)
        .unwrap();
    assert_eq!(
        (a.delivered_at, a.attempts, a.next_attempt_at),
        (Some(21), 2, None)
    );
    assert!(
        c.claim_due(1_000, 60, 10)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != id)
    );
    assert!(c.delete_budget(b.id).await.unwrap());
    assert!(!c.delete_budget(b.id).await.unwrap());
    assert_eq!(
        c.alerts(None, Some(b.id), 10).await.unwrap().len(),
        3,
        "alerts stay"
    );
}
