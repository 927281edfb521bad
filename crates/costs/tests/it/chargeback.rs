//! Properties of chargeback: random usage, prices (with a change inside the window),
//! windows, steps, capacity scopes and sharing options — every step adds up to its total
//! exactly, and overflowing sums are errors, never wrong numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use tenantplane_costs::{
    Currency, IdleShare, Money, PriceSheet, Prices, Usage,
    allocate::Properties,
    chargeback::{ChargeError, Options, Segment, SharedMode, chargeback},
    pricing::NodePrice,
    window::{Window, steps},
};
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-01 0:00 UTC);

fn prices() -> impl Strategy<Value = Prices> {
    (
        0i64..10_000_000,
        0i64..1_000_000,
        0i64..5_000_000,
        0i64..100_000_000,
        0i64..1_000_000_000,
        0u32..4,
    )
        .prop_map(|(cpu, ram, req, node, monthly, count)| Prices {
            cpu_core_hour: Money::from_micros(cpu),
            ram_gib_hour: Money::from_micros(ram),
            egress_gib: Money::from_micros(req),
            storage_gib_month: BTreeMap::from([("standard".into(), Money::from_micros(req * 3))]),
            requests_per_thousand: BTreeMap::from([("fhir-read".into(), Money::from_micros(req))]),
            nodes: vec![NodePrice {
                name: "n1-standard-8".into(),
                hourly: Money::from_micros(node),
                count,
            }],
            database_month: Money::from_micros(monthly),
            load_balancer_month: Money::from_micros(monthly / 7),
            overhead_month: Money::from_micros(monthly / 3),
            ..Prices::default()
        })
}

fn usage() -> impl Strategy<Value = Usage> {
    (
        0u64..10_000_000_000_000,
        0u64..1_000_000_000_000_000,
        0u64..100_000_000_000,
        0u64..1_000_000,
        0u64..10_000_000_000_000,
    )
        .prop_map(|(cpu, ram, egress, reads, storage)| Usage {
            cpu_nanos: cpu,
            ram_byte_seconds: ram,
            egress_bytes: egress,
            requests: BTreeMap::from([("fhir-read".into(), reads)]),
            storage_byte_seconds: BTreeMap::from([("standard".into(), storage)]),
            ..Usage::default()
        })
}

fn props(i: usize) -> Arc<Properties> {
    let mut p = Properties::new();
    p.insert("tenant".into(), format!("t{i}"));
    p.insert("plan".into(), format!("p{}", i % 2));
    if i.is_multiple_of(3) {
        p.insert("source".into(), "kubernetes".into());
        p.insert("cluster".into(), "c1".into());
    } else {
        p.insert("source".into(), "tenantplane".into());
    }
    Arc::new(p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_step_adds_up(
        p1 in prices(),
        p2 in prices(),
        hours in 1i64..48,
        step_h in 1i64..12,
        change_at in 0i64..48,
        per_seg in proptest::collection::vec(proptest::collection::vec(usage(), 0..5), 1..60),
        cluster_cost in 0i64..50_000_000,
        idle in 0..3u8,
        shared in 0..3u8,
        aggregate in 0..4u8,
        share_t0 in any::<bool>(),
        filter in any::<bool>(),
    ) {
        let mut sheet = PriceSheet::new(Currency::new("BRL").unwrap(), T0, p1).unwrap();
        sheet.change(T0 + Duration::hours(change_at.max(1)), p2).unwrap();
        let win = Window { start: T0, end: T0 + Duration::hours(hours) };
        let st = steps(&win, step_h * 3_600);
        // Segments: each step cut at the price change, usage spread over them.
        let mut segs = Vec::new();
        let change = T0 + Duration::hours(change_at.max(1));
        for (i, s) in st.iter().enumerate() {
            let parts = if change > s.start && change < s.end {
                vec![Window { start: s.start, end: change }, Window { start: change, end: s.end }]
            } else {
                vec![*s]
            };
            for w in parts {
                let us = &per_seg[segs.len() % per_seg.len()];
                segs.push(Segment {
                    step: i,
                    window: w,
                    usage: us.iter().enumerate().map(|(k, u)| (format!("u{k}"), u.clone())).collect(),
                    capacity: vec![(
                        Properties::from([("source".into(), "kubernetes".into()), ("cluster".into(), "c1".into())]),
                        Money::from_micros(cluster_cost),
                    )],
                });
            }
        }
        let units: BTreeMap<String, Arc<Properties>> = (0..5).map(|k| (format!("u{k}"), props(k))).collect();
        let opts = Options {
            aggregate: match aggregate {
                0 => vec![],
                1 => vec!["tenant".into()],
                2 => vec!["plan".into(), "category".into()],
                _ => vec!["category".into()],
            },
            idle: [IdleShare::Separate, IdleShare::Weighted, IdleShare::Even][idle as usize],
            shared: [SharedMode::Weighted, SharedMode::Even, SharedMode::Separate][shared as usize],
            share_units: if share_t0 { vec![tenantplane_costs::Filter::eq("tenant", "t0")] } else { vec![] },
            filter: filter.then(|| tenantplane_costs::Filter::eq("plan", "p1")),
            // Unit u1 is split between two departments, 2:1.
            split: BTreeMap::from([("u1".to_owned(), vec![("er".to_owned(), 2), ("icu".to_owned(), 1)])]),
            split_by: "department".into(),
        };
        // These amounts fit in 64 bits: a report always comes out.
        let reports = chargeback(&sheet, &st, &segs, &units, &opts).unwrap();
        prop_assert_eq!(reports.len(), st.len());
        for r in reports {
            let sum = |rows: &[tenantplane_costs::chargeback::Row]| rows.iter().map(|x| i128::from(x.total.micros())).sum::<i128>();
            let parts = sum(&r.rows) + sum(&r.idle)
                + r.shared.as_ref().map_or(0, |s| i128::from(s.total.micros()))
                + i128::from(r.unallocated.micros()) + i128::from(r.filtered_out.micros());
            prop_assert_eq!(parts, i128::from(r.total.micros()));
        }
    }
}

#[test]
fn overflow_is_an_error_not_a_number() {
    let p = Prices {
        cpu_core_hour: Money::from_micros(i64::MAX / 2),
        ..Prices::default()
    };
    let sheet = PriceSheet::new(Currency::new("USD").unwrap(), T0, p).unwrap();
    let win = Window {
        start: T0,
        end: T0 + Duration::hours(1),
    };
    let seg = Segment {
        step: 0,
        window: win,
        usage: BTreeMap::from([(
            "u0".into(),
            Usage {
                cpu_nanos: u64::MAX,
                ..Usage::default()
            },
        )]),
        capacity: vec![],
    };
    let r = chargeback(
        &sheet,
        &[win],
        &[seg],
        &BTreeMap::new(),
        &Options::default(),
    );
    assert!(
        matches!(r, Err(ChargeError::Price(_) | ChargeError::Alloc(_))),
        "{r:?}"
    );
}
