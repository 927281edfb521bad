//! The allocation engine: one window's costs, attributed to rows with nothing lost.
//!
//! Input: the window's [`Allocation`]s (each with properties — tenant, plan, cluster,
//! namespace, labels — and a cost per [`Category`]), the idle cost of each capacity scope
//! (what was paid for and not used), and flat shared costs (platform overhead). The
//! [`Query`] says how to aggregate, whether idle is shared, which allocations are shared
//! costs (e.g. the monitoring tenant) and how shared costs are split.
//!
//! Everything is attributed **per allocation first**, before any filter or aggregation: an
//! allocation's idle share, its share of the shared costs and what idle a shared allocation
//! passes on to it. A filter then selects allocations and aggregation sums them, so a filter
//! never changes the numbers of what it keeps, and each report holds
//! `Σ rows + Σ idle rows + unallocated + filtered out = total` in micro-units.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::money::{Money, MoneyError};
use crate::split;

/// A cost category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// CPU time (core-hours × price).
    Cpu,
    /// Memory (GiB-hours × price).
    Ram,
    /// GPU time.
    Gpu,
    /// Storage (GiB-months by class).
    Storage,
    /// Egress and other network transfer.
    Network,
    /// Load balancers.
    LoadBalancer,
    /// Managed databases.
    Database,
    /// AI workloads (inference calls, tokens, GPU seconds reported by custom meters).
    Ai,
    /// API services (requests priced by class).
    Api,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 9] = [
        Category::Cpu,
        Category::Ram,
        Category::Gpu,
        Category::Storage,
        Category::Network,
        Category::LoadBalancer,
        Category::Database,
        Category::Ai,
        Category::Api,
    ];

    /// Its name in reports (`cpu`, `load_balancer`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Cpu => "cpu",
            Category::Ram => "ram",
            Category::Gpu => "gpu",
            Category::Storage => "storage",
            Category::Network => "network",
            Category::LoadBalancer => "load_balancer",
            Category::Database => "database",
            Category::Ai => "ai",
            Category::Api => "api",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An amount per category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Costs([Money; 9]);

impl Costs {
    /// The amount of `c`.
    pub fn get(&self, c: Category) -> Money {
        self.0[c.index()]
    }

    /// Sets the amount of `c` (builder style).
    pub fn with(mut self, c: Category, amount: Money) -> Self {
        self.0[c.index()] = amount;
        self
    }

    /// The sum over categories.
    pub fn total(&self) -> Result<Money, MoneyError> {
        Money::sum(self.0)
    }

    fn add(&mut self, other: &Costs) -> Result<(), MoneyError> {
        split::add_into(&mut self.0, &other.0)
    }
}

impl Serialize for Costs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<Category, Money> =
            Category::ALL.iter().map(|c| (*c, self.get(*c))).collect();
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Costs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<Category, Money>::deserialize(d)?;
        Ok(map
            .into_iter()
            .fold(Costs::default(), |acc, (c, m)| acc.with(c, m)))
    }
}

/// Properties of an allocation (`tenant`, `plan`, `cluster`, `namespace`, `label:team`, …).
pub type Properties = BTreeMap<String, String>;

/// One unit of allocation in the window: a tenant's store, a namespace, a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// What it is and where it ran; shared by every interval of the same unit (a month of
    /// hourly rows holds one copy of each tenant's properties).
    pub properties: Arc<Properties>,
    /// Its cost in the window, per category.
    pub costs: Costs,
}

/// The idle cost of one capacity scope: the allocations whose properties include every
/// property of `scope` (a cluster, a node, a database server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleCost {
    /// Which allocations the capacity served.
    pub scope: Properties,
    /// Provisioned cost minus what the allocations used, per category (may be negative).
    pub costs: Costs,
}

/// A flat shared cost of the window (platform overhead, monitoring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCost {
    /// Its name.
    pub name: String,
    /// Its amount in the window.
    pub amount: Money,
}

/// How idle is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleShare {
    /// Shown apart (`__idle__` rows).
    #[default]
    Separate,
    /// Given to the allocations of its scope, per category, in proportion to their cost of
    /// that category.
    Weighted,
    /// Given to the allocations of its scope in equal parts.
    Even,
}

/// How shared costs are split between result rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitBy {
    /// In proportion to each row's own cost (before idle and shared costs).
    #[default]
    Weighted,
    /// Equally between rows.
    Even,
}

/// A conjunction of `property ∈ values` clauses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Clauses; an allocation matches when it matches all of them.
    pub clauses: Vec<(String, Vec<String>)>,
}

impl Filter {
    /// One clause.
    pub fn eq(property: &str, value: &str) -> Self {
        Filter {
            clauses: vec![(property.to_owned(), vec![value.to_owned()])],
        }
    }

    /// Whether `p` matches.
    pub fn matches(&self, p: &Properties) -> bool {
        self.clauses
            .iter()
            .all(|(k, vs)| p.get(k).is_some_and(|v| vs.iter().any(|x| x == v)))
    }
}

/// What to report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Query {
    /// Properties that make a row's key, in order (missing: `__unallocated__`).
    pub aggregate: Vec<String>,
    /// Idle treatment.
    pub idle: IdleShare,
    /// Idle rows per scope (`<scope>/__idle__`) instead of one `__idle__` row.
    pub split_idle: bool,
    /// Allocations matching any of these are shared costs, not rows of their own.
    pub share: Vec<Filter>,
    /// Flat shared costs.
    pub overhead: Vec<SharedCost>,
    /// How shared costs are split.
    pub share_split: SplitBy,
    /// Only allocations matching it are shown.
    pub filter: Option<Filter>,
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The aggregation key (`cluster1/app1`), `__idle__` or `<scope>/__idle__`.
    pub key: String,
    /// Own costs per category.
    pub costs: Costs,
    /// Idle given to it (or, for an idle row, the idle shown).
    pub idle: Money,
    /// Shared costs given to it.
    pub shared: Money,
    /// `Σ costs + idle + shared`.
    pub total: Money,
}

/// A report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Result rows, by key.
    pub rows: Vec<ReportRow>,
    /// Idle rows: idle shown apart, or idle nobody in its scope could take.
    pub idle: Vec<ReportRow>,
    /// Shared cost nobody could take (no rows, or none with a cost to weigh by).
    pub unallocated: Money,
    /// What the filter left out (0 without a filter).
    pub filtered_out: Money,
    /// The window's whole cost: allocations, idle and flat shared costs.
    pub total: Money,
}

/// What can go wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// An amount overflowed.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// An allocation lies in two idle scopes.
    #[error("an allocation lies in two idle scopes ({0} and {1})")]
    OverlappingIdle(usize, usize),
}

/// Per-allocation attribution, before filtering and aggregation.
#[derive(Debug, Clone, Copy, Default)]
struct Given {
    /// Idle added to the allocation's total (idle shared).
    idle: Money,
    /// Idle attributable to it while idle is shown apart (for filtered idle rows).
    idle_attrib: Money,
    /// Shared costs.
    shared: Money,
}

/// The key of `p` under `aggregate`.
pub fn key_of(p: &Properties, aggregate: &[String]) -> String {
    if aggregate.is_empty() {
        return "__all__".to_owned();
    }
    aggregate
        .iter()
        .map(|k| p.get(k).map_or("__unallocated__", String::as_str))
        .collect::<Vec<_>>()
        .join("/")
}

fn scope_key(scope: &Properties) -> String {
    scope.values().cloned().collect::<Vec<_>>().join("/")
}

/// Allocates one window.
pub fn allocate(
    allocations: &[Allocation],
    idle: &[IdleCost],
    q: &Query,
) -> Result<Report, AllocError> {
    let n = allocations.len();
    let own: Vec<Money> = allocations
        .iter()
        .map(|a| a.costs.total())
        .collect::<Result<_, _>>()?;
    let shared_alloc: Vec<bool> = allocations
        .iter()
        .map(|a| q.share.iter().any(|f| f.matches(&a.properties)))
        .collect();
    let mut given = vec![Given::default(); n];

    // 1. Idle, per scope and category, over every allocation of the scope (shared ones
    //    included: they pass it on). What nobody can take stays in the scope's idle row.
    let mut scope_of: Vec<Option<usize>> = vec![None; n];
    for (s, ic) in idle.iter().enumerate() {
        for (i, a) in allocations.iter().enumerate() {
            let inside = ic.scope.iter().all(|(k, v)| a.properties.get(k) == Some(v));
            if inside {
                if let Some(other) = scope_of[i] {
                    return Err(AllocError::OverlappingIdle(other, s));
                }
                scope_of[i] = Some(s);
            }
        }
    }
    // Idle left in each scope (shown apart, or undistributable) and, under a filter, the
    // part of it attributable to kept allocations.
    let mut idle_left: Vec<Money> = vec![Money::ZERO; idle.len()];
    for (s, ic) in idle.iter().enumerate() {
        let members: Vec<usize> = (0..n).filter(|i| scope_of[*i] == Some(s)).collect();
        for c in Category::ALL {
            let amount = ic.costs.get(c);
            if amount == Money::ZERO {
                continue;
            }
            let parts = match q.idle {
                IdleShare::Even => split::evenly(amount, members.len()),
                IdleShare::Weighted | IdleShare::Separate => {
                    let w: Vec<Money> = members
                        .iter()
                        .map(|i| allocations[*i].costs.get(c))
                        .collect();
                    split::by_money(amount, &w)
                }
            };
            match parts {
                Some(parts) => {
                    for (i, p) in members.iter().zip(parts) {
                        let g = &mut given[*i];
                        if q.idle == IdleShare::Separate {
                            g.idle_attrib = g.idle_attrib.checked_add(p)?;
                        } else {
                            g.idle = g.idle.checked_add(p)?;
                        }
                    }
                    if q.idle == IdleShare::Separate {
                        idle_left[s] = idle_left[s].checked_add(amount)?;
                    }
                }
                None => idle_left[s] = idle_left[s].checked_add(amount)?,
            }
        }
    }

    // 2. Shared costs: the shared allocations (with the idle they took) and the flat
    //    overhead, split between result keys (weights from own costs, before idle), then
    //    within a key between its allocations by their own cost.
    let overhead = Money::sum(q.overhead.iter().map(|o| o.amount))?;
    let mut pool = overhead;
    let mut pool_idle = Money::ZERO;
    for i in (0..n).filter(|i| shared_alloc[*i]) {
        pool = pool.checked_add(own[i])?.checked_add(given[i].idle)?;
        pool_idle = pool_idle.checked_add(given[i].idle_attrib)?;
    }
    // Each row allocation's key, and the allocations of each key (keys in order).
    let key: Vec<Option<String>> = (0..n)
        .map(|i| (!shared_alloc[i]).then(|| key_of(&allocations[i].properties, &q.aggregate)))
        .collect();
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, k) in key.iter().enumerate() {
        if let Some(k) = k {
            members.entry(k.as_str()).or_default().push(i);
        }
    }
    let mut unallocated = Money::ZERO;
    if pool != Money::ZERO || pool_idle != Money::ZERO {
        let weights: Vec<Money> = match q.share_split {
            SplitBy::Weighted => members
                .values()
                .map(|m| Money::sum(m.iter().map(|i| own[*i])))
                .collect::<Result<_, _>>()?,
            SplitBy::Even => vec![Money::from_micros(1); members.len()],
        };
        let per_key = split::by_money(pool, &weights);
        let idle_per_key = split::by_money(pool_idle, &weights);
        match (per_key, idle_per_key) {
            (Some(per_key), Some(idle_per_key)) => {
                for ((m, amount), idle_amount) in members.values().zip(per_key).zip(idle_per_key) {
                    let w: Vec<Money> = m.iter().map(|i| own[*i]).collect();
                    let within = split::by_money(amount, &w)
                        .or_else(|| split::evenly(amount, m.len()))
                        .unwrap_or_default();
                    let within_idle = split::by_money(idle_amount, &w)
                        .or_else(|| split::evenly(idle_amount, m.len()))
                        .unwrap_or_default();
                    for ((i, p), pi) in m.iter().zip(within).zip(within_idle) {
                        given[*i].shared = given[*i].shared.checked_add(p)?;
                        given[*i].idle_attrib = given[*i].idle_attrib.checked_add(pi)?;
                    }
                }
            }
            // Nobody to weigh by: the pool stays unallocated (its idle part is already in
            // the idle rows).
            _ => unallocated = pool,
        }
    }

    // 3. Filter, then aggregate.
    let kept = |i: usize| {
        key[i].is_some()
            && q.filter
                .as_ref()
                .is_none_or(|f| f.matches(&allocations[i].properties))
    };
    let mut rows: BTreeMap<&str, ReportRow> = BTreeMap::new();
    for (i, k) in key.iter().enumerate().filter(|(i, _)| kept(*i)) {
        let k = k.as_deref().unwrap_or_default();
        let r = rows.entry(k).or_insert_with(|| ReportRow {
            key: k.to_owned(),
            costs: Costs::default(),
            idle: Money::ZERO,
            shared: Money::ZERO,
            total: Money::ZERO,
        });
        r.costs.add(&allocations[i].costs)?;
        r.idle = r.idle.checked_add(given[i].idle)?;
        r.shared = r.shared.checked_add(given[i].shared)?;
    }
    for r in rows.values_mut() {
        r.total = r
            .costs
            .total()?
            .checked_add(r.idle)?
            .checked_add(r.shared)?;
    }

    // 4. Idle rows. Without a filter: what was left in each scope. With one: idle shown
    //    apart is the kept allocations' attributable idle, per scope.
    let mut idle_rows: BTreeMap<String, Money> = BTreeMap::new();
    let row_key = |s: usize| {
        if q.split_idle {
            format!("{}/__idle__", scope_key(&idle[s].scope))
        } else {
            "__idle__".to_owned()
        }
    };
    if q.filter.is_none() {
        for (s, left) in idle_left.iter().enumerate() {
            if *left != Money::ZERO {
                let e = idle_rows.entry(row_key(s)).or_default();
                *e = e.checked_add(*left)?;
            }
        }
    } else if q.idle == IdleShare::Separate {
        for i in (0..n).filter(|i| kept(*i)) {
            let key = scope_of[i].map_or_else(|| "__idle__".to_owned(), row_key);
            let e = idle_rows.entry(key).or_default();
            *e = e.checked_add(given[i].idle_attrib)?;
        }
        idle_rows.retain(|_, m| *m != Money::ZERO);
    }
    let idle_rows: Vec<ReportRow> = idle_rows
        .into_iter()
        .map(|(key, m)| ReportRow {
            key,
            costs: Costs::default(),
            idle: m,
            shared: Money::ZERO,
            total: m,
        })
        .collect();

    let total = Money::sum(own.iter().copied())?
        .checked_add(Money::sum(
            idle.iter()
                .map(|ic| ic.costs.total())
                .collect::<Result<Vec<_>, _>>()?,
        )?)?
        .checked_add(overhead)?;
    let shown = Money::sum(rows.values().map(|r| r.total))?
        .checked_add(Money::sum(idle_rows.iter().map(|r| r.total))?)?;
    let (unallocated, shown) = if q.filter.is_some() {
        (Money::ZERO, shown)
    } else {
        (unallocated, shown.checked_add(unallocated)?)
    };
    Ok(Report {
        rows: rows.into_values().collect(),
        idle: idle_rows,
        unallocated,
        filtered_out: total.checked_sub(shown)?,
        total,
    })
}
