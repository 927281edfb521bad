//! Properties of every report, under random usage, idle, shared costs and options.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use tenantplane_costs::{
    Allocation, Category, Costs, Filter, IdleShare, Money, Query, Report, SharedCost, SplitBy,
    allocate, allocate::IdleCost,
};

fn costs() -> impl Strategy<Value = Costs> {
    proptest::collection::vec(0i64..2_000_000_000, Category::ALL.len()).prop_map(|v| {
        Category::ALL
            .iter()
            .zip(v)
            .fold(Costs::default(), |c, (cat, m)| {
                // About a third of the categories are zero (tenants without GPU or AI).
                let m = if m % 3 == 0 { 0 } else { m };
                c.with(*cat, Money::from_micros(m))
            })
    })
}

fn allocation() -> impl Strategy<Value = Allocation> {
    (
        0..6u8,
        0..3u8,
        0..2u8,
        0..3u8,
        proptest::option::of(0..2u8),
        costs(),
    )
        .prop_map(|(t, plan, cluster, node, team, costs)| {
            let mut p = BTreeMap::new();
            p.insert("tenant".to_owned(), format!("t{t}"));
            p.insert("plan".to_owned(), format!("p{plan}"));
            p.insert("cluster".to_owned(), format!("c{cluster}"));
            p.insert("node".to_owned(), format!("c{cluster}n{node}"));
            if let Some(team) = team {
                p.insert("label:team".to_owned(), format!("team{team}"));
            }
            Allocation {
                properties: Arc::new(p),
                costs,
            }
        })
}

fn idle() -> impl Strategy<Value = Vec<IdleCost>> {
    proptest::collection::vec(
        (
            -500_000_000i64..3_000_000_000,
            -500_000_000i64..3_000_000_000,
            0i64..1_000_000_000,
        ),
        2,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, ram, gpu))| IdleCost {
                scope: BTreeMap::from([("cluster".to_owned(), format!("c{i}"))]),
                costs: Costs::default()
                    .with(Category::Cpu, Money::from_micros(cpu))
                    .with(Category::Ram, Money::from_micros(ram))
                    .with(Category::Gpu, Money::from_micros(gpu)),
            })
            .collect()
    })
}

fn options() -> impl Strategy<Value = Query> {
    (
        prop_oneof![
            Just(IdleShare::Separate),
            Just(IdleShare::Weighted),
            Just(IdleShare::Even)
        ],
        any::<bool>(),
        proptest::option::of(0..6u8),
        0i64..500_000_000,
        prop_oneof![Just(SplitBy::Weighted), Just(SplitBy::Even)],
    )
        .prop_map(
            |(idle, split_idle, shared_tenant, overhead, share_split)| Query {
                aggregate: vec![],
                idle,
                split_idle,
                share: shared_tenant
                    .map(|t| vec![Filter::eq("tenant", &format!("t{t}"))])
                    .unwrap_or_default(),
                overhead: vec![SharedCost {
                    name: "platform".into(),
                    amount: Money::from_micros(overhead),
                }],
                share_split,
                filter: None,
            },
        )
}

fn by_key(r: &Report) -> BTreeMap<String, Money> {
    r.rows.iter().map(|x| (x.key.clone(), x.total)).collect()
}

fn shown(r: &Report) -> Money {
    Money::sum(r.rows.iter().chain(&r.idle).map(|x| x.total)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Rows + idle + unallocated shared costs = the window's total, to the micro-unit, for
    /// every aggregation; the total does not depend on the aggregation.
    #[test]
    fn every_cent_is_accounted_for(
        allocs in proptest::collection::vec(allocation(), 0..40),
        idle in idle(),
        opts in options(),
    ) {
        let mut totals = Vec::new();
        for agg in [vec![], vec!["tenant"], vec!["plan"], vec!["cluster", "label:team"], vec!["node"]] {
            let q = Query { aggregate: agg.iter().map(|s| s.to_string()).collect(), ..opts.clone() };
            let r = allocate(&allocs, &idle, &q).unwrap();
            prop_assert_eq!(r.filtered_out, Money::ZERO);
            prop_assert_eq!(Money::sum([shown(&r), r.unallocated]).unwrap(), r.total);
            let expected = Money::sum(
                allocs.iter().map(|a| a.costs.total().unwrap())
                    .chain(idle.iter().map(|i| i.costs.total().unwrap()))
                    .chain(opts.overhead.iter().map(|o| o.amount)),
            ).unwrap();
            prop_assert_eq!(r.total, expected);
            for row in &r.rows {
                prop_assert_eq!(
                    Money::sum([row.costs.total().unwrap(), row.idle, row.shared]).unwrap(),
                    row.total
                );
            }
            totals.push((shown(&r), r.unallocated));
        }
        prop_assert!(totals.windows(2).all(|w| w[0] == w[1]));
    }

    /// A filter on an aggregated property keeps rows exactly as they are unfiltered.
    #[test]
    fn filters_never_change_the_rows_they_keep(
        allocs in proptest::collection::vec(allocation(), 1..40),
        idle in idle(),
        opts in options(),
        keep in proptest::collection::btree_set(0..6u8, 1..4),
    ) {
        let q = Query { aggregate: vec!["tenant".into()], ..opts };
        let all = by_key(&allocate(&allocs, &idle, &q).unwrap());
        let values: Vec<String> = keep.iter().map(|t| format!("t{t}")).collect();
        let f = Query { filter: Some(Filter { clauses: vec![("tenant".into(), values.clone())] }), ..q };
        let r = allocate(&allocs, &idle, &f).unwrap();
        prop_assert_eq!(Money::sum([shown(&r), r.unallocated, r.filtered_out]).unwrap(), r.total);
        let kept = by_key(&r);
        let expected: BTreeMap<String, Money> =
            all.into_iter().filter(|(k, _)| values.contains(k)).collect();
        prop_assert_eq!(kept, expected);
    }

    /// Filtering by each value of a property not in the key partitions every row: the
    /// filtered rows add up to the unfiltered row.
    #[test]
    fn a_partition_by_filter_adds_up_to_the_whole(
        allocs in proptest::collection::vec(allocation(), 1..40),
        idle in idle(),
        opts in options(),
    ) {
        let q = Query { aggregate: vec!["plan".into()], ..opts };
        let all = by_key(&allocate(&allocs, &idle, &q).unwrap());
        let mut sum: BTreeMap<String, Money> = BTreeMap::new();
        for c in ["c0", "c1"] {
            let r = allocate(&allocs, &idle, &Query { filter: Some(Filter::eq("cluster", c)), ..q.clone() }).unwrap();
            for (k, v) in by_key(&r) {
                let e = sum.entry(k).or_default();
                *e = e.checked_add(v).unwrap();
            }
        }
        prop_assert_eq!(sum, all);
    }
}

#[test]
fn overflow_is_an_error_not_a_wrapped_number() {
    let big = Costs::default().with(Category::Cpu, Money::from_micros(i64::MAX / 2 + 1));
    let a = Allocation {
        properties: Arc::default(),
        costs: big,
    };
    let err = allocate(&[a.clone(), a], &[], &Query::default()).unwrap_err();
    assert!(matches!(
        err,
        tenantplane_costs::allocate::AllocError::Money(_)
    ));
}

#[test]
fn an_allocation_in_two_idle_scopes_is_refused() {
    let a = Allocation {
        properties: Arc::new(BTreeMap::from([
            ("cluster".into(), "c0".into()),
            ("node".into(), "n0".into()),
        ])),
        costs: Costs::default(),
    };
    let scope = |k: &str, v: &str| IdleCost {
        scope: BTreeMap::from([(k.into(), v.into())]),
        costs: Costs::default(),
    };
    let err = allocate(
        &[a],
        &[scope("cluster", "c0"), scope("node", "n0")],
        &Query::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        tenantplane_costs::allocate::AllocError::OverlappingIdle(0, 1)
    );
}
