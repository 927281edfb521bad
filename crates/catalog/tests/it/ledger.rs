//! The usage ledger's conformance cases (part of `catalog_conformance!`).

use sha2::{Digest, Sha256};
use tenantplane_catalog::{
    Catalog, CatalogError,
    usage::{EventsOutcome, GaugeRow, HOUR, MINUTE, MeterEvent, UsageQuery, UsageRow, UsageSum},
};
use tenantplane_core::TenantId;

fn row(t: TenantId, bucket: i64, span: i64, meter: &str, value: i64) -> UsageRow {
    UsageRow {
        tenant: t,
        bucket,
        span,
        meter: meter.into(),
        value,
    }
}

fn sum(v: &[UsageSum], t: TenantId, step: i64, meter: &str) -> i64 {
    v.iter()
        .filter(|s| s.tenant == t && s.step_start == step && s.meter == meter)
        .map(|s| s.value)
        .sum()
}

/// A day that starts on an hour (2026-12-01T00:00Z).
const DAY: i64 = 1_796_083_200;

pub async fn ledger_adds_up_across_flushes_and_replicas(c: Catalog) {
    let (a, b) = (TenantId::new(), TenantId::new());
    c.add_usage(&[
        row(a, DAY, MINUTE, "requests:fhir-read", 3),
        row(a, DAY, MINUTE, "requests:fhir-read", 2), // same key in one batch
        row(a, DAY + 60, MINUTE, "cpu_nanos", 1_000),
        row(b, DAY, MINUTE, "requests:fhir-read", 7),
    ])
    .await
    .unwrap();
    c.add_usage(&[]).await.unwrap();
    // Eight replicas flushing the same tenant and minute at once lose nothing.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                c.add_usage(&[
                    row(b, DAY, MINUTE, "requests:fhir-read", 1),
                    row(a, DAY, MINUTE, "requests:fhir-read", 1),
                ])
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q = UsageQuery {
        from: DAY,
        to: DAY + HOUR,
        step: HOUR,
        tenant: None,
    };
    let v = c.usage(&q).await.unwrap();
    assert_eq!(sum(&v, a, DAY, "requests:fhir-read"), 85);
    assert_eq!(sum(&v, b, DAY, "requests:fhir-read"), 87);
    assert_eq!(sum(&v, a, DAY, "cpu_nanos"), 1_000);
    // One tenant only; steps of a minute; a window that excludes the second minute.
    let only_a = c
        .usage(&UsageQuery {
            tenant: Some(a),
            step: MINUTE,
            ..q.clone()
        })
        .await
        .unwrap();
    assert!(only_a.iter().all(|s| s.tenant == a));
    assert_eq!(sum(&only_a, a, DAY + 60, "cpu_nanos"), 1_000);
    let first_minute = c
        .usage(&UsageQuery {
            to: DAY + 60,
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(sum(&first_minute, a, DAY, "cpu_nanos"), 0);
}

pub async fn ledger_rolls_minutes_up_to_hours_exactly_once(c: Catalog) {
    let t = TenantId::new();
    let mut rows = Vec::new();
    for m in 0..120 {
        rows.push(row(t, DAY + m * MINUTE, MINUTE, "requests:auth", 1));
        rows.push(row(t, DAY + m * MINUTE, MINUTE, "bytes_out", 10));
    }
    c.add_usage(&rows).await.unwrap();
    let day = UsageQuery {
        from: DAY,
        to: DAY + 24 * HOUR,
        step: HOUR,
        tenant: Some(t),
    };
    let before = c.usage(&day).await.unwrap();
    // Two replicas roll up the first hour at once: each minute row moves once.
    let (x, y) = tokio::join!(c.roll_up(DAY + HOUR), c.roll_up(DAY + HOUR));
    assert_eq!(
        x.unwrap() + y.unwrap(),
        120,
        "60 minutes × 2 meters moved once"
    );
    assert_eq!(c.usage(&day).await.unwrap(), before, "sums unchanged");
    // Late minute rows of a rolled-up hour are added to it by the next roll-up.
    c.add_usage(&[row(t, DAY + 5 * MINUTE, MINUTE, "requests:auth", 4)])
        .await
        .unwrap();
    assert_eq!(c.roll_up(DAY + HOUR).await.unwrap(), 1);
    let v = c.usage(&day).await.unwrap();
    assert_eq!(sum(&v, t, DAY, "requests:auth"), 64);
    assert_eq!(sum(&v, t, DAY + HOUR, "requests:auth"), 60);
    assert_eq!(c.roll_up(DAY + 2 * HOUR).await.unwrap(), 120);
    let v = c.usage(&day).await.unwrap();
    assert_eq!(sum(&v, t, DAY + HOUR, "bytes_out"), 600);
    // A window on minutes of a rolled-up hour sees the hour only if it starts inside.
    let part = c
        .usage(&UsageQuery {
            from: DAY + 30 * MINUTE,
            to: DAY + 2 * HOUR,
            step: HOUR,
            tenant: Some(t),
        })
        .await
        .unwrap();
    assert_eq!(
        part.iter()
            .filter(|s| s.meter == "requests:auth")
            .map(|s| s.value)
            .sum::<i64>(),
        60
    );
}

fn event(t: TenantId, key: &str, meter: &str, value: i64, at: i64) -> MeterEvent {
    let mut h = Sha256::new();
    h.update(format!("{meter}|{value}|{at}"));
    MeterEvent {
        key: key.into(),
        digest: h.finalize().into(),
        row: row(t, at, MINUTE, meter, value),
    }
}

pub async fn meter_events_count_once(c: Catalog) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let e1 = event(a, "k1", "meter:tokens", 1_000, DAY);
    let e2 = event(a, "k2", "meter:tokens", 500, DAY + 60);
    assert_eq!(
        c.record_events(&[e1.clone(), e2.clone()], DAY)
            .await
            .unwrap(),
        EventsOutcome::Recorded(vec![true, true])
    );
    // A retry (and a retry racing another replica) counts nothing twice.
    let (both, second) = ([e1.clone(), e2.clone()], [e2.clone()]);
    let (r1, r2) = tokio::join!(
        c.record_events(&both, DAY + 1),
        c.record_events(&second, DAY + 1)
    );
    assert_eq!(r1.unwrap(), EventsOutcome::Recorded(vec![false, false]));
    assert_eq!(r2.unwrap(), EventsOutcome::Recorded(vec![false]));
    // The same key at another tenant is another event: keys are per tenant.
    assert_eq!(
        c.record_events(
            &[MeterEvent {
                row: row(b, DAY, MINUTE, "meter:tokens", 1_000),
                ..e1.clone()
            }],
            DAY
        )
        .await
        .unwrap(),
        EventsOutcome::Recorded(vec![true])
    );
    // A key reused for other content refuses the whole batch.
    let e3 = event(a, "k3", "meter:tokens", 7, DAY);
    let forged = event(a, "k1", "meter:tokens", 9_999, DAY);
    assert_eq!(
        c.record_events(&[e3.clone(), forged], DAY).await.unwrap(),
        EventsOutcome::KeyReused(vec!["k1".into()])
    );
    let q = UsageQuery {
        from: DAY,
        to: DAY + HOUR,
        step: HOUR,
        tenant: None,
    };
    let v = c.usage(&q).await.unwrap();
    assert_eq!(sum(&v, a, DAY, "meter:tokens"), 1_500);
    assert_eq!(sum(&v, b, DAY, "meter:tokens"), 1_000);
    // k3 was not kept: it records now.
    assert_eq!(
        c.record_events(&[e3], DAY).await.unwrap(),
        EventsOutcome::Recorded(vec![true])
    );
    // Concurrent first deliveries of one event by two replicas: counted once.
    let e4 = event(a, "k4", "meter:tokens", 1, DAY);
    let (x, y) = tokio::join!(
        c.record_events(std::slice::from_ref(&e4), DAY),
        c.record_events(std::slice::from_ref(&e4), DAY)
    );
    let news = [x.unwrap(), y.unwrap()]
        .iter()
        .filter(|o| **o == EventsOutcome::Recorded(vec![true]))
        .count();
    assert_eq!(news, 1);
    let v = c.usage(&q).await.unwrap();
    assert_eq!(sum(&v, a, DAY, "meter:tokens"), 1_508);
    // One batch for two tenants; a key twice in a batch counts once, and only with the
    // same content.
    let e5 = event(a, "k5", "meter:tokens", 2, DAY);
    let mut e5b = event(b, "k5", "meter:tokens", 2, DAY);
    e5b.row.tenant = b;
    assert_eq!(
        c.record_events(&[e5.clone(), e5b.clone(), e5.clone()], DAY)
            .await
            .unwrap(),
        EventsOutcome::Recorded(vec![true, true, false])
    );
    let e6 = event(a, "k6", "meter:tokens", 2, DAY);
    let e6x = event(a, "k6", "meter:tokens", 3, DAY);
    assert_eq!(
        c.record_events(&[e6, e6x], DAY).await.unwrap(),
        EventsOutcome::KeyReused(vec!["k6".into()])
    );
    let v = c.usage(&q).await.unwrap();
    assert_eq!(sum(&v, a, DAY, "meter:tokens"), 1_510);
    assert_eq!(sum(&v, b, DAY, "meter:tokens"), 1_002);
    // Pruning forgets old keys only.
    assert_eq!(c.prune_events(DAY + 1).await.unwrap(), 7);
}

pub async fn gauges_keep_the_latest_sample(c: Catalog) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let g = |t, hour, m: &str, v| GaugeRow {
        tenant: t,
        hour,
        measure: m.into(),
        value: v,
    };
    c.set_gauges(&[g(a, DAY, "store_bytes", 100), g(b, DAY, "store_bytes", 5)])
        .await
        .unwrap();
    c.set_gauges(&[
        g(a, DAY, "store_bytes", 120),
        g(a, DAY + HOUR, "store_bytes", 130),
    ])
    .await
    .unwrap();
    let all = c.gauges(DAY, DAY + 2 * HOUR, None).await.unwrap();
    assert_eq!(all.len(), 3);
    let mine = c.gauges(DAY, DAY + HOUR, Some(a)).await.unwrap();
    assert_eq!(mine, vec![g(a, DAY, "store_bytes", 120)]);
}

pub async fn price_sheet_compare_and_swap(c: Catalog) {
    assert!(c.prices().await.unwrap().is_none());
    let v1 = serde_json::json!({"currency": "BRL"});
    assert_eq!(c.put_prices(&v1, 0).await.unwrap(), 1);
    assert!(matches!(
        c.put_prices(&v1, 0).await,
        Err(CatalogError::VersionMismatch { current: 1 })
    ));
    let v2 = serde_json::json!({"currency": "USD"});
    assert_eq!(c.put_prices(&v2, 1).await.unwrap(), 2);
    let got = c.prices().await.unwrap().unwrap();
    assert_eq!((got.doc, got.version), (v2, 2));
}
