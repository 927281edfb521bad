//! The allocation engine at fleet scale: 1,000 tenants × 30 days of hourly usage (issue 15's
//! target: < 1 s and < 200 MiB). Two shapes: the whole month as one window (720,000 rows in
//! one call) and the month in hourly steps (720 calls of 1,000 rows, summed); both input
//! shapes are held at once. Prints the process's peak RSS after building the inputs and after
//! the runs.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tenantplane_costs::{
    Allocation, Category, Costs, IdleCost, IdleShare, Money, Query, SharedCost, SplitBy, allocate,
};

const TENANTS: usize = 1_000;
const HOURS: usize = 720;

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A tenant's properties, built once and shared by its hourly rows.
fn properties(t: usize) -> Arc<BTreeMap<String, String>> {
    Arc::new(BTreeMap::from([
        ("tenant".to_owned(), format!("tenant-{t:04}")),
        (
            "plan".to_owned(),
            ["small", "large", "enterprise"][t % 3].to_owned(),
        ),
        ("server".to_owned(), format!("db{}", t % 4)),
    ]))
}

/// One hour of one tenant: a pseudo-random but repeatable load.
fn row(props: &Arc<BTreeMap<String, String>>, t: usize, h: usize) -> Allocation {
    let x = ((t * 7_919 + h * 104_729) % 10_007) as i64;
    Allocation {
        properties: props.clone(),
        costs: Costs::default()
            .with(Category::Cpu, Money::from_micros(x * 13))
            .with(Category::Ram, Money::from_micros(x * 5))
            .with(
                Category::Storage,
                Money::from_micros(1_000 + (t as i64 % 50) * 20),
            )
            .with(Category::Api, Money::from_micros(x * 2)),
    }
}

fn idle(scale: i64) -> Vec<IdleCost> {
    (0..4)
        .map(|s| IdleCost {
            scope: BTreeMap::from([("server".to_owned(), format!("db{s}"))]),
            costs: Costs::default()
                .with(Category::Cpu, Money::from_micros(3_000_000 * scale))
                .with(Category::Ram, Money::from_micros(1_000_000 * scale)),
        })
        .collect()
}

fn query(hours: i64) -> Query {
    Query {
        aggregate: vec!["tenant".into()],
        idle: IdleShare::Weighted,
        overhead: vec![SharedCost {
            name: "platform".into(),
            amount: Money::from_micros(2_000_000 * hours),
        }],
        share_split: SplitBy::Weighted,
        ..Query::default()
    }
}

fn bench(c: &mut Criterion) {
    let props: Vec<_> = (0..TENANTS).map(properties).collect();
    let hourly: Vec<Vec<Allocation>> = (0..HOURS)
        .map(|h| (0..TENANTS).map(|t| row(&props[t], t, h)).collect())
        .collect();
    let month: Vec<Allocation> = hourly.iter().flatten().cloned().collect();
    eprintln!("peak RSS with the inputs built: {} MiB", peak_rss_mib());
    let mut g = c.benchmark_group("allocate_1000_tenants_30_days");
    g.sample_size(10);
    g.bench_function("one_window_720k_rows", |b| {
        let (idle, q) = (idle(HOURS as i64), query(HOURS as i64));
        b.iter(|| black_box(allocate(&month, &idle, &q).unwrap_or_else(|_| unreachable!())))
    });
    g.bench_function("hourly_steps_720x1000_rows", |b| {
        let (idle, q) = (idle(1), query(1));
        b.iter(|| {
            let mut total = Money::ZERO;
            for set in &hourly {
                let r = allocate(set, &idle, &q).unwrap_or_else(|_| unreachable!());
                total = total
                    .checked_add(r.total)
                    .unwrap_or_else(|_| unreachable!());
            }
            black_box(total)
        })
    });
    g.finish();
    eprintln!("peak RSS after the runs: {} MiB", peak_rss_mib());
}

criterion_group!(benches, bench);
criterion_main!(benches);
