//! OpenCost's canonical mock allocation set (`core/pkg/opencost/mock.go`, tests
//! `allocation_test.go`), reproduced: one day, every container costs $1 of CPU, GPU, RAM,
//! storage, network and load balancer ($6), container1 $11 of RAM ($16); idle per cluster
//! (cluster1 CPU $5 + RAM $15, cluster2 CPU $5 + RAM $5). Totals: $82 active, $30 idle.

use std::collections::BTreeMap;
use std::sync::Arc;

use tenantplane_costs::{
    Allocation, Category, Costs, Filter, IdleShare, Money, Query, Report, SharedCost, SplitBy,
    allocate, allocate::IdleCost,
};

fn usd(x: &str) -> Money {
    x.parse().unwrap()
}

fn unit(ram: i64) -> Costs {
    let one = Money::from_units(1).unwrap();
    Costs::default()
        .with(Category::Cpu, one)
        .with(Category::Gpu, one)
        .with(Category::Ram, Money::from_units(ram).unwrap())
        .with(Category::Storage, one)
        .with(Category::Network, one)
        .with(Category::LoadBalancer, one)
}

/// cluster, node, namespace, pod, container, controller kind, controller, extra properties.
type MockRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
);

fn mock() -> Vec<Allocation> {
    #[rustfmt::skip]
    let rows: [MockRow<'_>; 12] = [
        ("cluster1", "c1nodes", "namespace1", "pod1", "container1", "", "", &[("label:app", "app1"), ("label:env", "env1")]),
        ("cluster1", "c1nodes", "namespace1", "pod-abc", "container2", "deployment", "deployment1", &[]),
        ("cluster1", "c1nodes", "namespace1", "pod-def", "container3", "deployment", "deployment1", &[]),
        ("cluster1", "c1nodes", "namespace2", "pod-ghi", "container4", "deployment", "deployment2", &[("label:app", "app2"), ("label:env", "env2")]),
        ("cluster1", "c1nodes", "namespace2", "pod-ghi", "container5", "deployment", "deployment2", &[("label:app", "app2"), ("label:env", "env2")]),
        ("cluster1", "c1nodes", "namespace2", "pod-jkl", "container6", "daemonset", "daemonset1", &[("service", "service1")]),
        ("cluster2", "node1", "namespace2", "pod-mno", "container4", "deployment", "deployment2", &[("label:app", "app2")]),
        ("cluster2", "node1", "namespace2", "pod-mno", "container5", "deployment", "deployment2", &[("label:app", "app2")]),
        ("cluster2", "node2", "namespace2", "pod-pqr", "container6", "daemonset", "daemonset1", &[("service", "service1")]),
        ("cluster2", "node2", "namespace3", "pod-stu", "container7", "deployment", "deployment3", &[("annotation:team", "team1")]),
        ("cluster2", "node3", "namespace3", "pod-vwx", "container8", "statefulset", "statefulset1", &[("annotation:team", "team2")]),
        ("cluster2", "node3", "namespace3", "pod-vwx", "container9", "statefulset", "statefulset1", &[("annotation:team", "team1")]),
    ];
    rows.iter()
        .map(|(cluster, node, ns, pod, container, kind, ctrl, extra)| {
            let mut p = BTreeMap::new();
            p.insert("cluster".to_owned(), cluster.to_string());
            p.insert("node".to_owned(), node.to_string());
            p.insert("namespace".to_owned(), ns.to_string());
            p.insert("pod".to_owned(), pod.to_string());
            p.insert("container".to_owned(), container.to_string());
            if !kind.is_empty() {
                p.insert("controllerKind".to_owned(), kind.to_string());
                p.insert("controller".to_owned(), format!("{kind}:{ctrl}"));
            }
            for (k, v) in extra.iter() {
                p.insert(k.to_string(), v.to_string());
            }
            Allocation {
                properties: Arc::new(p),
                costs: unit(if *container == "container1" && *cluster == "cluster1" {
                    11
                } else {
                    1
                }),
            }
        })
        .collect()
}

fn cluster_idle() -> Vec<IdleCost> {
    [("cluster1", 5, 15), ("cluster2", 5, 5)]
        .iter()
        .map(|(c, cpu, ram)| IdleCost {
            scope: BTreeMap::from([("cluster".to_owned(), c.to_string())]),
            costs: Costs::default()
                .with(Category::Cpu, Money::from_units(*cpu).unwrap())
                .with(Category::Ram, Money::from_units(*ram).unwrap()),
        })
        .collect()
}

fn q(aggregate: &[&str]) -> Query {
    Query {
        aggregate: aggregate.iter().map(|s| s.to_string()).collect(),
        ..Query::default()
    }
}

fn run(query: &Query) -> Report {
    allocate(&mock(), &cluster_idle(), query).unwrap()
}

/// Rows and idle rows as `key → total`; checks the report adds up.
fn totals(r: &Report) -> BTreeMap<String, Money> {
    let shown = Money::sum(r.rows.iter().chain(&r.idle).map(|x| x.total)).unwrap();
    assert_eq!(
        Money::sum([shown, r.unallocated, r.filtered_out]).unwrap(),
        r.total,
        "rows + idle + unallocated + filtered out = total"
    );
    r.rows
        .iter()
        .chain(&r.idle)
        .map(|x| (x.key.clone(), x.total))
        .collect()
}

/// Within a few micro-units of each expected amount, every key: each allocation's share of
/// idle and of shared costs is rounded (largest remainder, so the report's total is exact),
/// and a row sums the shares of its allocations, so a row may be off its exact value by up
/// to one micro-unit per allocation and split. OpenCost's own integration tests allow $0.01.
fn expect(r: &Report, want: &[(&str, &str)]) {
    let got = totals(r);
    assert_eq!(got.len(), want.len(), "keys: {got:?}");
    for (k, v) in want {
        let g = got
            .get(*k)
            .unwrap_or_else(|| panic!("no row {k} in {got:?}"));
        let diff = (g.micros() - usd(v).micros()).abs();
        assert!(diff <= 12, "{k}: got {g}, want {v}");
    }
}

#[test]
fn case_1_aggregations() {
    expect(
        &run(&q(&["cluster"])),
        &[("cluster1", "46"), ("cluster2", "36"), ("__idle__", "30")],
    );
    expect(
        &run(&q(&["namespace"])),
        &[
            ("namespace1", "28"),
            ("namespace2", "36"),
            ("namespace3", "18"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["pod"])),
        &[
            ("pod1", "16"),
            ("pod-abc", "6"),
            ("pod-def", "6"),
            ("pod-ghi", "12"),
            ("pod-jkl", "6"),
            ("pod-mno", "12"),
            ("pod-pqr", "6"),
            ("pod-stu", "6"),
            ("pod-vwx", "12"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["controllerKind"])),
        &[
            ("daemonset", "12"),
            ("deployment", "42"),
            ("statefulset", "12"),
            ("__unallocated__", "16"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["controller"])),
        &[
            ("deployment:deployment2", "24"),
            ("deployment:deployment1", "12"),
            ("daemonset:daemonset1", "12"),
            ("statefulset:statefulset1", "12"),
            ("deployment:deployment3", "6"),
            ("__unallocated__", "16"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["service"])),
        &[
            ("service1", "12"),
            ("__unallocated__", "70"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["label:app"])),
        &[
            ("app1", "16"),
            ("app2", "24"),
            ("__unallocated__", "42"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["annotation:team"])),
        &[
            ("team1", "12"),
            ("team2", "6"),
            ("__unallocated__", "64"),
            ("__idle__", "30"),
        ],
    );
}

#[test]
fn case_2_multi_property_keys() {
    expect(
        &run(&q(&["label:app", "label:env"])),
        &[
            ("app1/env1", "16"),
            ("app2/env2", "12"),
            ("app2/__unallocated__", "12"),
            ("__unallocated__/__unallocated__", "42"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&q(&["cluster", "label:app", "label:env"])),
        &[
            ("cluster1/app1/env1", "16"),
            ("cluster1/app2/env2", "12"),
            ("cluster1/__unallocated__/__unallocated__", "18"),
            ("cluster2/app2/__unallocated__", "12"),
            ("cluster2/__unallocated__/__unallocated__", "24"),
            ("__idle__", "30"),
        ],
    );
}

#[test]
fn case_3a_idle_shared_by_weight() {
    let query = Query {
        idle: IdleShare::Weighted,
        ..q(&["namespace"])
    };
    expect(
        &run(&query),
        &[
            ("namespace1", "42.6875"),
            ("namespace2", "46.3125"),
            ("namespace3", "23"),
        ],
    );
}

fn share_ns(ns: &str, split: SplitBy) -> Query {
    Query {
        share: vec![Filter::eq("namespace", ns)],
        share_split: split,
        ..q(&["namespace"])
    }
}

#[test]
fn case_4_shared_costs() {
    expect(
        &run(&share_ns("namespace3", SplitBy::Even)),
        &[
            ("namespace1", "37"),
            ("namespace2", "45"),
            ("__idle__", "30"),
        ],
    );
    expect(
        &run(&share_ns("namespace3", SplitBy::Weighted)),
        &[
            ("namespace1", "35.875"),
            ("namespace2", "46.125"),
            ("__idle__", "30"),
        ],
    );
    let app1 = Query {
        share: vec![Filter::eq("label:app", "app1")],
        share_split: SplitBy::Even,
        ..q(&["namespace"])
    };
    expect(
        &run(&app1),
        &[
            ("namespace1", "17.333333"),
            ("namespace2", "41.333333"),
            ("namespace3", "23.333333"),
            ("__idle__", "30"),
        ],
    );
    let overhead = Query {
        overhead: vec![SharedCost {
            name: "platform".into(),
            amount: usd("168"),
        }],
        ..q(&["namespace"])
    };
    let r = run(&overhead);
    expect(
        &r,
        &[
            ("namespace1", "85.365854"),
            ("namespace2", "109.756098"),
            ("namespace3", "54.878049"),
            ("__idle__", "30"),
        ],
    );
    assert_eq!(r.total, usd("280"), "112 + 7 $/h × 24 h");
}

#[test]
fn case_5_filters() {
    let f = |k: &str, v: &str| Some(Filter::eq(k, v));
    expect(
        &run(&Query {
            filter: f("cluster", "cluster1"),
            ..q(&["cluster"])
        }),
        &[("cluster1", "46"), ("__idle__", "20")],
    );
    expect(
        &run(&Query {
            filter: f("cluster", "cluster1"),
            idle: IdleShare::Weighted,
            ..q(&["cluster"])
        }),
        &[("cluster1", "66")],
    );
    expect(
        &run(&Query {
            filter: f("cluster", "cluster1"),
            ..q(&["namespace"])
        }),
        &[
            ("namespace1", "28"),
            ("namespace2", "18"),
            ("__idle__", "20"),
        ],
    );
    expect(
        &run(&Query {
            filter: f("namespace", "namespace2"),
            ..q(&["cluster"])
        }),
        &[
            ("cluster1", "18"),
            ("cluster2", "18"),
            ("__idle__", "10.3125"),
        ],
    );
}

#[test]
fn case_6_filters_with_idle_and_shared_costs() {
    let ns2 = Some(Filter::eq("namespace", "namespace2"));
    let split = Query {
        split_idle: true,
        ..q(&["namespace"])
    };
    expect(
        &run(&split),
        &[
            ("namespace1", "28"),
            ("namespace2", "36"),
            ("namespace3", "18"),
            ("cluster1/__idle__", "20"),
            ("cluster2/__idle__", "10"),
        ],
    );
    // 6b: the filtered row equals the unfiltered one.
    expect(
        &run(&Query {
            filter: ns2.clone(),
            idle: IdleShare::Weighted,
            ..q(&["namespace"])
        }),
        &[("namespace2", "46.3125")],
    );
    // 6d
    let overhead = vec![SharedCost {
        name: "platform".into(),
        amount: usd("168"),
    }];
    expect(
        &run(&Query {
            filter: ns2.clone(),
            overhead: overhead.clone(),
            ..q(&["namespace"])
        }),
        &[("namespace2", "109.756098"), ("__idle__", "10.3125")],
    );
    // 6e: OpenCost reports idle 25.000 and says it should be 20.1042: ns2's own idle
    // (10.3125) plus the part of namespace1's idle (14.6875) that namespace1, shared, passes
    // on to ns2 (36/54). Counted once here.
    expect(
        &run(&Query {
            filter: ns2.clone(),
            ..share_ns("namespace1", SplitBy::Weighted)
        }),
        &[("namespace2", "54.666667"), ("__idle__", "20.104167")],
    );
    // 6g and 6f: sharing namespace1 (with its idle) and idle, unfiltered and filtered.
    let g = Query {
        idle: IdleShare::Weighted,
        ..share_ns("namespace1", SplitBy::Weighted)
    };
    expect(
        &run(&g),
        &[("namespace2", "74.770833"), ("namespace3", "37.229167")],
    );
    expect(
        &run(&Query {
            filter: ns2.clone(),
            ..g
        }),
        &[("namespace2", "74.770833")],
    );
    // 6i
    expect(
        &run(&Query {
            filter: ns2,
            idle: IdleShare::Weighted,
            overhead,
            ..q(&["namespace"])
        }),
        &[("namespace2", "120.068598")],
    );
}

#[test]
fn idle_by_node_keeps_totals() {
    let third = Money::from_micros(1_666_667);
    let mut idle = vec![IdleCost {
        scope: BTreeMap::from([
            ("cluster".into(), "cluster1".into()),
            ("node".into(), "c1nodes".into()),
        ]),
        costs: Costs::default()
            .with(Category::Cpu, usd("5"))
            .with(Category::Ram, usd("15")),
    }];
    for node in ["node1", "node2", "node3"] {
        idle.push(IdleCost {
            scope: BTreeMap::from([
                ("cluster".into(), "cluster2".into()),
                ("node".into(), node.into()),
            ]),
            costs: Costs::default()
                .with(Category::Cpu, third)
                .with(Category::Ram, third),
        });
    }
    let r = allocate(&mock(), &idle, &q(&["namespace"])).unwrap();
    let t = totals(&r);
    assert_eq!(t["namespace1"], usd("28"));
    assert_eq!(
        t["__idle__"],
        usd("30.000002"),
        "three thirds rounded up in the mock"
    );
    // Shared by weight, per node: node3 holds only namespace3, so its idle all goes there.
    let w = allocate(
        &mock(),
        &idle,
        &Query {
            idle: IdleShare::Weighted,
            ..q(&["namespace"])
        },
    )
    .unwrap();
    let t = totals(&w);
    assert!(!t.contains_key("__idle__"));
    assert_eq!(Money::sum(t.values().copied()).unwrap(), usd("112.000002"));
}
