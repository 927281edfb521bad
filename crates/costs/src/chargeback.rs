//! Chargeback: metered usage × the price sheet → one allocation report per step.
//!
//! The caller hands in the window's steps and its usage in *segments*: parts of a step
//! during which one price version was in force (a step is one segment unless a price
//! change falls inside it), each with every unit's (tenant's) usage. Per segment, each
//! unit's usage is priced at that version ([`crate::Prices::cost`]); the capacity (the
//! sheet's machines) costs what it costs over the segment, and what the units' CPU and
//! memory costs do not cover is **idle**. Monthly database and load-balancer costs and the
//! flat platform overhead are **shared**: split between the rows by weight or evenly, or
//! shown apart as a `__shared__` row. Each step is then allocated ([`crate::allocate`]) and
//! holds `Σ rows + Σ idle + shared apart + unallocated + filtered out = total`, exactly.
//!
//! Aggregating by `category` (alone or last, e.g. `tenant,category`) shows each row's costs
//! one category per row, with its idle and shared parts as the rows `…/idle` and
//! `…/shared`.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    AllocError, Allocation, Category, Costs, Filter, IdleCost, IdleShare, Money, PriceError,
    PriceSheet, Query, SharedCost, SplitBy, Usage,
    allocate::{Properties, key_of},
    window::Window,
};

/// What can go wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// Pricing overflowed.
    #[error(transparent)]
    Price(#[from] PriceError),
    /// Allocation failed (an amount overflowed).
    #[error(transparent)]
    Alloc(#[from] AllocError),
}

/// The part of a step priced by one version, with each unit's usage in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Index of its step.
    pub step: usize,
    /// Its charged interval (never in the future).
    pub window: Window,
    /// Usage by unit key (tenant id).
    pub usage: BTreeMap<String, Usage>,
    /// Capacity measured elsewhere (a Kubernetes cluster's nodes): its cost in the segment
    /// and the units it served (those whose properties include the scope's).
    pub capacity: Vec<(Properties, Money)>,
}

/// The scope of the sheet's own machines: units with `source = tenantplane`.
pub fn platform_scope() -> Properties {
    Properties::from([("source".to_owned(), "tenantplane".to_owned())])
}

/// How shared costs are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedMode {
    /// Split in proportion to each row's own cost.
    #[default]
    Weighted,
    /// Split equally between rows.
    Even,
    /// Shown apart as the `__shared__` row.
    Separate,
}

/// What to report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Properties that make a row's key; `category` (last) splits rows by category.
    pub aggregate: Vec<String>,
    /// Idle treatment.
    pub idle: IdleShare,
    /// Units matching any of these are shared costs (a monitoring tenant), not rows.
    pub share_units: Vec<Filter>,
    /// Shared costs.
    pub shared: SharedMode,
    /// Only units matching it are shown.
    pub filter: Option<Filter>,
    /// Units whose costs are split between parts (a tenant's departments): unit key →
    /// (value of the property `split_by`, weight). Each part becomes an allocation of its
    /// own, with that property set and the unit's costs split by weight, to the micro-unit.
    pub split: BTreeMap<String, Vec<(String, u64)>>,
    /// The property the parts set (e.g. `department`).
    pub split_by: String,
}

/// What a row's units used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowUsage {
    /// CPU time, nanoseconds.
    pub cpu_nanos: u64,
    /// Requests by route class.
    pub requests: BTreeMap<String, u64>,
    /// Bytes sent.
    pub egress_bytes: u64,
    /// Stored byte-seconds (all classes).
    pub storage_byte_seconds: u64,
    /// Custom meters, micro-units.
    pub meters: BTreeMap<String, u64>,
}

impl RowUsage {
    fn add(&mut self, u: &Usage) {
        self.cpu_nanos = self.cpu_nanos.saturating_add(u.cpu_nanos);
        for (k, v) in &u.requests {
            let e = self.requests.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
        self.egress_bytes = self.egress_bytes.saturating_add(u.egress_bytes);
        for v in u.storage_byte_seconds.values() {
            self.storage_byte_seconds = self.storage_byte_seconds.saturating_add(*v);
        }
        for (k, v) in &u.meters {
            let e = self.meters.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }
}

/// One row of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its key (`acme-hospital`, `large/acme-hospital`, `__idle__`, `__shared__`, …).
    pub name: String,
    /// Own costs per category.
    pub costs: Costs,
    /// Idle given to it (for an idle row: the idle shown).
    pub idle: Money,
    /// Shared costs given to it.
    pub shared: Money,
    /// `Σ costs + idle + shared`.
    pub total: Money,
    /// What its units used (`None` for idle, shared and category rows).
    pub usage: Option<RowUsage>,
}

/// One step's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step.
    pub window: Window,
    /// Result rows.
    pub rows: Vec<Row>,
    /// Idle rows (idle shown apart, or idle nobody could take).
    pub idle: Vec<Row>,
    /// Shared costs shown apart.
    pub shared: Option<Row>,
    /// Shared cost nobody could take.
    pub unallocated: Money,
    /// What the filter left out.
    pub filtered_out: Money,
    /// The step's whole cost.
    pub total: Money,
    /// Usage priced at nothing: meters, classes or times without a price.
    pub unpriced: Vec<String>,
}

#[derive(Default)]
struct StepAcc {
    costs: BTreeMap<String, (Costs, Usage)>,
    /// Capacity cost by scope.
    capacity: BTreeMap<Vec<(String, String)>, Money>,
    monthly: Costs,
    overhead: Money,
    unpriced: std::collections::BTreeSet<String>,
}

fn add_costs(a: Costs, b: &Costs) -> Result<Costs, AllocError> {
    let mut out = a;
    for c in Category::ALL {
        out = out.with(c, a.get(c).checked_add(b.get(c))?);
    }
    Ok(out)
}

fn add_usage(into: &mut Usage, u: &Usage) {
    into.cpu_nanos = into.cpu_nanos.saturating_add(u.cpu_nanos);
    into.ram_byte_seconds = into.ram_byte_seconds.saturating_add(u.ram_byte_seconds);
    into.gpu_nanos = into.gpu_nanos.saturating_add(u.gpu_nanos);
    into.egress_bytes = into.egress_bytes.saturating_add(u.egress_bytes);
    for (k, v) in &u.storage_byte_seconds {
        let e = into.storage_byte_seconds.entry(k.clone()).or_default();
        *e = e.saturating_add(*v);
    }
    for (k, v) in &u.requests {
        let e = into.requests.entry(k.clone()).or_default();
        *e = e.saturating_add(*v);
    }
    for (k, v) in &u.meters {
        let e = into.meters.entry(k.clone()).or_default();
        *e = e.saturating_add(*v);
    }
}

/// `u` × `w / total` (for display: each part's share of the unit's usage).
fn scaled(u: &Usage, w: u64, total: u64) -> Usage {
    let f = |x: u64| (u128::from(x) * u128::from(w) / u128::from(total.max(1))) as u64;
    Usage {
        cpu_nanos: f(u.cpu_nanos),
        ram_byte_seconds: f(u.ram_byte_seconds),
        gpu_nanos: f(u.gpu_nanos),
        storage_byte_seconds: u
            .storage_byte_seconds
            .iter()
            .map(|(k, v)| (k.clone(), f(*v)))
            .collect(),
        egress_bytes: f(u.egress_bytes),
        requests: u.requests.iter().map(|(k, v)| (k.clone(), f(*v))).collect(),
        meters: u.meters.iter().map(|(k, v)| (k.clone(), f(*v))).collect(),
    }
}

/// Prices and allocates every step. `units` gives each unit key its properties (a unit
/// with usage but no properties is reported under its key as `tenant`).
pub fn chargeback(
    sheet: &PriceSheet,
    steps: &[Window],
    segments: &[Segment],
    units: &BTreeMap<String, Arc<Properties>>,
    opts: &Options,
) -> Result<Vec<StepReport>, ChargeError> {
    let mut acc: Vec<StepAcc> = steps.iter().map(|_| StepAcc::default()).collect();
    for seg in segments {
        let Some(a) = acc.get_mut(seg.step) else {
            continue;
        };
        let secs = u64::try_from(seg.window.seconds()).unwrap_or(0);
        let Ok(prices) = sheet.at(seg.window.start) else {
            if secs > 0 {
                a.unpriced.insert(format!(
                    "no prices in force at {}",
                    seg.window
                        .start
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                ));
            }
            for (unit, u) in &seg.usage {
                let e = a.costs.entry(unit.clone()).or_default();
                add_usage(&mut e.1, u);
            }
            continue;
        };
        for (unit, u) in &seg.usage {
            let c = prices.cost(u)?;
            for name in prices.unpriced(u) {
                a.unpriced.insert(name.to_owned());
            }
            let e = a.costs.entry(unit.clone()).or_default();
            e.0 = add_costs(e.0, &c)?;
            add_usage(&mut e.1, u);
        }
        let mut scopes: Vec<(Properties, Money)> = seg.capacity.clone();
        if !prices.nodes.is_empty() {
            scopes.push((platform_scope(), prices.capacity(secs)?));
        }
        for (scope, cost) in scopes {
            let e = a
                .capacity
                .entry(scope.into_iter().collect())
                .or_insert(Money::ZERO);
            *e = e.checked_add(cost).map_err(PriceError::from)?;
        }
        a.monthly = add_costs(a.monthly, &prices.monthly(secs)?)?;
        a.overhead = a
            .overhead
            .checked_add(prices.overhead(secs)?)
            .map_err(PriceError::from)?;
    }

    let split_category = opts.aggregate.last().is_some_and(|k| k == "category");
    let aggregate: Vec<String> = opts
        .aggregate
        .iter()
        .filter(|k| *k != "category")
        .cloned()
        .collect();
    let mut out = Vec::with_capacity(steps.len());
    for (window, a) in steps.iter().zip(acc) {
        let mut allocations = Vec::with_capacity(a.costs.len());
        let mut usages = Vec::with_capacity(a.costs.len());
        for (unit, (costs, usage)) in a.costs {
            let properties = units.get(&unit).cloned().unwrap_or_else(|| {
                Arc::new(Properties::from([
                    ("tenant".to_owned(), unit.clone()),
                    ("source".to_owned(), "tenantplane".to_owned()),
                ]))
            });
            match opts
                .split
                .get(&unit)
                .filter(|p| p.iter().any(|(_, w)| *w > 0))
            {
                None => {
                    allocations.push(Allocation { properties, costs });
                    usages.push(usage);
                }
                Some(parts) => {
                    let weights: Vec<u64> = parts.iter().map(|(_, w)| *w).collect();
                    let total_w: u64 = weights.iter().sum::<u64>().max(1);
                    let mut split_costs = vec![Costs::default(); parts.len()];
                    for c in Category::ALL {
                        let amounts = crate::split::by_weight(costs.get(c), &weights)
                            .ok_or(AllocError::Money(crate::MoneyError::Overflow))?;
                        for (sc, m) in split_costs.iter_mut().zip(amounts) {
                            *sc = sc.with(c, m);
                        }
                    }
                    for ((name, w), c) in parts.iter().zip(split_costs) {
                        let mut p = (*properties).clone();
                        p.insert(opts.split_by.clone(), name.clone());
                        allocations.push(Allocation {
                            properties: Arc::new(p),
                            costs: c,
                        });
                        usages.push(scaled(&usage, *w, total_w));
                    }
                }
            }
        }
        // Idle per capacity scope: its cost minus the CPU and memory its units used.
        let mut idle = Vec::with_capacity(a.capacity.len());
        for (scope, cost) in &a.capacity {
            let scope: Properties = scope.iter().cloned().collect();
            let used = Money::sum(
                allocations
                    .iter()
                    .filter(|al| scope.iter().all(|(k, v)| al.properties.get(k) == Some(v)))
                    .flat_map(|al| [al.costs.get(Category::Cpu), al.costs.get(Category::Ram)]),
            )
            .map_err(AllocError::from)?;
            idle.push(IdleCost {
                scope,
                costs: Costs::default().with(
                    Category::Cpu,
                    cost.checked_sub(used).map_err(AllocError::from)?,
                ),
            });
        }
        let shared_costs = [
            ("database", a.monthly.get(Category::Database)),
            ("load-balancer", a.monthly.get(Category::LoadBalancer)),
            ("overhead", a.overhead),
        ];
        let (overhead, shared_row) = match opts.shared {
            SharedMode::Separate => {
                let costs = a.monthly;
                let total = costs
                    .total()
                    .and_then(|t| t.checked_add(a.overhead))
                    .map_err(AllocError::from)?;
                (
                    Vec::new(),
                    (total != Money::ZERO).then_some(Row {
                        name: "__shared__".into(),
                        costs,
                        idle: Money::ZERO,
                        shared: a.overhead,
                        total,
                        usage: None,
                    }),
                )
            }
            _ => (
                shared_costs
                    .iter()
                    .filter(|(_, m)| *m != Money::ZERO)
                    .map(|(n, m)| SharedCost {
                        name: (*n).to_owned(),
                        amount: *m,
                    })
                    .collect(),
                None,
            ),
        };
        let q = Query {
            aggregate: aggregate.clone(),
            idle: opts.idle,
            split_idle: false,
            share: opts.share_units.clone(),
            overhead,
            share_split: if opts.shared == SharedMode::Even {
                SplitBy::Even
            } else {
                SplitBy::Weighted
            },
            filter: opts.filter.clone(),
        };
        let report = crate::allocate(&allocations, &idle, &q)?;
        // Usage per row key, over the units the report shows.
        let mut row_usage: BTreeMap<String, RowUsage> = BTreeMap::new();
        for (al, u) in allocations.iter().zip(&usages) {
            let shown = opts
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(&al.properties))
                && !opts.share_units.iter().any(|f| f.matches(&al.properties));
            if shown {
                row_usage
                    .entry(key_of(&al.properties, &aggregate))
                    .or_default()
                    .add(u);
            }
        }
        let mut rows: Vec<Row> = report
            .rows
            .into_iter()
            .map(|r| Row {
                usage: Some(row_usage.remove(&r.key).unwrap_or_default()),
                name: r.key,
                costs: r.costs,
                idle: r.idle,
                shared: r.shared,
                total: r.total,
            })
            .collect();
        if split_category {
            rows = by_category(rows, aggregate.is_empty());
        }
        let idle_rows = report
            .idle
            .into_iter()
            .map(|r| Row {
                name: r.key,
                costs: r.costs,
                idle: r.idle,
                shared: r.shared,
                total: r.total,
                usage: None,
            })
            .collect();
        let total = match &shared_row {
            Some(s) => report
                .total
                .checked_add(s.total)
                .map_err(AllocError::from)?,
            None => report.total,
        };
        out.push(StepReport {
            window: *window,
            rows,
            idle: idle_rows,
            shared: shared_row,
            unallocated: report.unallocated,
            filtered_out: report.filtered_out,
            total,
            unpriced: a.unpriced.into_iter().collect(),
        });
    }
    Ok(out)
}

/// Each row's costs one category per row, plus its idle and shared parts.
fn by_category(rows: Vec<Row>, alone: bool) -> Vec<Row> {
    let mut merged: BTreeMap<String, Row> = BTreeMap::new();
    let mut put = |name: String, costs: Costs, idle: Money, shared: Money, total: Money| {
        let e = merged.entry(name.clone()).or_insert(Row {
            name,
            costs: Costs::default(),
            idle: Money::ZERO,
            shared: Money::ZERO,
            total: Money::ZERO,
            usage: None,
        });
        e.costs = add_costs(e.costs, &costs).unwrap_or(e.costs);
        e.idle = e.idle.checked_add(idle).unwrap_or(e.idle);
        e.shared = e.shared.checked_add(shared).unwrap_or(e.shared);
        e.total = e.total.checked_add(total).unwrap_or(e.total);
    };
    for r in rows {
        let prefix = if alone {
            String::new()
        } else {
            format!("{}/", r.name)
        };
        for c in Category::ALL {
            let m = r.costs.get(c);
            if m != Money::ZERO {
                put(
                    format!("{prefix}{}", c.as_str()),
                    Costs::default().with(c, m),
                    Money::ZERO,
                    Money::ZERO,
                    m,
                );
            }
        }
        if r.idle != Money::ZERO {
            put(
                format!("{prefix}idle"),
                Costs::default(),
                r.idle,
                Money::ZERO,
                r.idle,
            );
        }
        if r.shared != Money::ZERO {
            put(
                format!("{prefix}shared"),
                Costs::default(),
                Money::ZERO,
                r.shared,
                r.shared,
            );
        }
    }
    merged.into_values().collect()
}
