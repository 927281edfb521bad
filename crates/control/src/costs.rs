//! Per-tenant costs: the price sheet (stored in the catalog, seeded from the configuration,
//! changed through the API from a date on) and the cost report — the usage ledger and the
//! hourly store sizes of a window, priced step by step and allocated with nothing lost
//! (`tenantplane_costs::chargeback`).

use std::{collections::BTreeMap, sync::Arc};

use tenantplane_catalog::usage::{HOUR, UsageQuery, UsageSum};
use tenantplane_core::{
    Tenant, TenantId,
    usage_api::{CostQuery, CostReport, CostRow, CostStep, CostWindow},
};
use tenantplane_costs::{
    Category, Filter, IdleShare, Money, PriceSheet, Prices, Usage,
    allocate::Properties,
    chargeback::{self, Options, Row, Segment, SharedMode},
    window::{self, Window},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{Control, ControlError, ControlResult};

/// The storage class of tenant stores.
pub const STORE_CLASS: &str = "standard";
/// Properties a report can aggregate or filter by.
pub const PROPERTIES: [&str; 11] = [
    "tenant",
    "tenant_id",
    "plan",
    "profile",
    "isolation",
    "placement",
    "status",
    "source",
    "cluster",
    "namespace",
    "department",
];

/// The amount of a decimal string, in micro-units (0 when it is not one).
pub(crate) fn micros(s: &str) -> i64 {
    s.parse::<Money>().map(Money::micros).unwrap_or(0)
}

/// `t` in RFC 3339 (empty if it cannot be written).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn properties_of(t: &Tenant) -> Properties {
    let mut p = Properties::from([
        ("tenant".to_owned(), t.slug.to_string()),
        ("tenant_id".to_owned(), t.id.to_string()),
        ("plan".to_owned(), t.plan.to_string()),
        ("profile".to_owned(), t.profile.to_string()),
        ("isolation".to_owned(), t.isolation.to_string()),
        (
            "placement".to_owned(),
            t.placement.clone().unwrap_or_else(|| "embedded".to_owned()),
        ),
        ("status".to_owned(), t.status.to_string()),
        ("source".to_owned(), "tenantplane".to_owned()),
    ]);
    p.extend(
        t.labels
            .iter()
            .map(|(k, v)| (format!("label:{k}"), v.clone())),
    );
    p
}

/// Whether reports can aggregate or filter by `key`: a property, or `label:<key>`.
fn known_property(key: &str) -> bool {
    PROPERTIES.contains(&key)
        || key
            .strip_prefix("label:")
            .is_some_and(|k| !k.is_empty() && k.len() <= 63)
}

fn field(pointer: &str, detail: impl Into<String>) -> ControlError {
    ControlError::field(pointer, detail)
}

/// The report options of a query, checked.
pub fn options(q: &CostQuery) -> ControlResult<Options> {
    let list = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let aggregate = list(&q.aggregate);
    for (i, a) in aggregate.iter().enumerate() {
        let last = i + 1 == aggregate.len();
        if !(known_property(a) || a == "category" && last) {
            return Err(field(
                "/aggregate",
                format!(
                    "cannot aggregate by '{a}': use {}, label:<key> and category (last)",
                    PROPERTIES.join(", ")
                ),
            ));
        }
    }
    let idle = match q.idle.as_deref() {
        None | Some("separate") => IdleShare::Separate,
        Some("weighted") => IdleShare::Weighted,
        Some("even") => IdleShare::Even,
        Some(_) => return Err(field("/idle", "use separate, weighted or even")),
    };
    let shared = match q.shared.as_deref() {
        None | Some("weighted") => SharedMode::Weighted,
        Some("even") => SharedMode::Even,
        Some("separate") => SharedMode::Separate,
        Some(_) => return Err(field("/shared", "use weighted, even or separate")),
    };
    let share_tenants = list(&q.share_tenants);
    let share_units = if share_tenants.is_empty() {
        Vec::new()
    } else {
        vec![Filter {
            clauses: vec![("tenant".to_owned(), share_tenants)],
        }]
    };
    let filter = match q.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => {
            let mut clauses = Vec::new();
            for clause in f.split(',') {
                let bad = || {
                    field(
                        "/filter",
                        "write clauses as property:value|value, joined by commas",
                    )
                };
                // `label:<key>:<values>` names a label; otherwise `<property>:<values>`.
                let (k, vs) = match clause.trim().strip_prefix("label:") {
                    Some(rest) => {
                        let (lk, vs) = rest.split_once(':').ok_or_else(bad)?;
                        (format!("label:{lk}"), vs)
                    }
                    None => {
                        let (k, vs) = clause.split_once(':').ok_or_else(bad)?;
                        (k.trim().to_owned(), vs)
                    }
                };
                let k = k.as_str();
                if !known_property(k) {
                    return Err(field(
                        "/filter",
                        format!(
                            "cannot filter by '{}': use {} or label:<key>",
                            k.chars().take(40).collect::<String>(),
                            PROPERTIES.join(", ")
                        ),
                    ));
                }
                let vs: Vec<String> = vs
                    .split('|')
                    .map(|v| v.trim().trim_matches('"').to_owned())
                    .filter(|v| !v.is_empty())
                    .collect();
                if vs.is_empty() {
                    return Err(field("/filter", format!("no value for '{k}'")));
                }
                clauses.push((k.to_owned(), vs));
            }
            Some(Filter { clauses })
        }
    };
    Ok(Options {
        aggregate,
        idle,
        share_units,
        shared,
        filter,
        split: BTreeMap::new(),
        split_by: "department".into(),
    })
}

/// Adds one ledger sum to a usage.
fn add_sum(u: &mut Usage, s: &UsageSum) {
    let v = s.value.max(0) as u64;
    let bump = |m: &mut BTreeMap<String, u64>, k: &str| {
        let e = m.entry(k.to_owned()).or_default();
        *e = e.saturating_add(v);
    };
    match s.meter.as_str() {
        "cpu_nanos" => u.cpu_nanos = u.cpu_nanos.saturating_add(v),
        "bytes_out" => u.egress_bytes = u.egress_bytes.saturating_add(v),
        m => {
            if let Some(class) = m.strip_prefix("requests:") {
                bump(&mut u.requests, class);
            } else if let Some(name) = m.strip_prefix(tenantplane_metering::events::METER_PREFIX) {
                bump(&mut u.meters, name);
            }
        }
    }
}

impl Control {
    /// The price sheet, if one is stored.
    pub async fn price_sheet(&self) -> ControlResult<Option<(PriceSheet, u64)>> {
        match self.catalog.prices().await? {
            None => Ok(None),
            Some(stored) => {
                let sheet: PriceSheet = serde_json::from_value(stored.doc).map_err(|e| {
                    ControlError::Internal(format!("stored price sheet unreadable: {e}"))
                })?;
                Ok(Some((sheet, stored.version)))
            }
        }
    }

    /// Stores `sheet` as the first price sheet unless one exists (configuration seeding;
    /// replicas starting at once store it once).
    pub async fn seed_prices(&self, sheet: &PriceSheet) -> ControlResult<bool> {
        if self.catalog.prices().await?.is_some() {
            return Ok(false);
        }
        let doc = serde_json::to_value(sheet).map_err(|e| ControlError::Internal(e.to_string()))?;
        match self.catalog.put_prices(&doc, 0).await {
            Ok(_) => Ok(true),
            Err(tenantplane_catalog::CatalogError::VersionMismatch { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// New prices from `from` on (on the hour; never before the version in force began).
    /// With no sheet yet, `currency` starts one.
    pub async fn change_prices(
        &self,
        currency: Option<&str>,
        from: OffsetDateTime,
        prices: Prices,
        if_match: Option<u64>,
    ) -> ControlResult<(PriceSheet, u64)> {
        if from.unix_timestamp().rem_euclid(HOUR) != 0 {
            return Err(field(
                "/valid_from",
                "prices change on the hour (e.g. 2027-01-01T00:00:00Z)",
            ));
        }
        let current = self.price_sheet().await?;
        if let (Some(expected), Some((_, v))) = (if_match, &current)
            && expected != *v
        {
            return Err(ControlError::VersionMismatch { current: *v });
        }
        let price_err = |e: tenantplane_costs::PriceError| match e {
            tenantplane_costs::PriceError::Currency => field("/currency", e.to_string()),
            tenantplane_costs::PriceError::BackDated(_) => field("/valid_from", e.to_string()),
            other => field("/prices", other.to_string()),
        };
        let (sheet, expected) = match current {
            Some((mut sheet, v)) => {
                if let Some(c) = currency
                    && c != sheet.currency().as_str()
                {
                    return Err(field(
                        "/currency",
                        format!(
                            "the sheet is in {}; its currency does not change",
                            sheet.currency().as_str()
                        ),
                    ));
                }
                sheet.change(from, prices).map_err(price_err)?;
                (sheet, v)
            }
            None => {
                let c = tenantplane_costs::Currency::new(currency.unwrap_or("USD"))
                    .map_err(price_err)?;
                (PriceSheet::new(c, from, prices).map_err(price_err)?, 0)
            }
        };
        let doc =
            serde_json::to_value(&sheet).map_err(|e| ControlError::Internal(e.to_string()))?;
        let version = self
            .catalog
            .put_prices(&doc, expected)
            .await
            .map_err(|e| match e {
                tenantplane_catalog::CatalogError::VersionMismatch { current } => {
                    ControlError::VersionMismatch { current }
                }
                other => other.into(),
            })?;
        Ok((sheet, version))
    }

    /// The cost report of `q`.
    pub async fn costs(&self, q: &CostQuery) -> ControlResult<CostReport> {
        let now = OffsetDateTime::now_utc();
        let win =
            window::parse_window(&q.window, now).map_err(|e| field("/window", e.to_string()))?;
        let step = window::parse_step(q.step.as_deref(), &win)
            .map_err(|e| field("/step", e.to_string()))?;
        let mut opts = options(q)?;
        let Some((sheet, _)) = self.price_sheet().await? else {
            return Err(ControlError::NoPrices);
        };
        let steps = window::steps(&win, step);
        // Nothing after now is charged.
        let limit = now + time::Duration::minutes(1);
        let (segments, kube_units) = self.segments(&sheet, &steps, step, limit).await?;
        let mut units: BTreeMap<String, Arc<Properties>> = self
            .index
            .all()
            .iter()
            .map(|t| (t.id.to_string(), Arc::new(properties_of(t))))
            .collect();
        units.extend(kube_units.into_iter().map(|(k, p)| (k, Arc::new(p))));
        // By department: each tenant's costs split by its departments' active users (the
        // latest sample up to the window's end; a user in k departments counts 1/k in each).
        let by_department = opts.aggregate.iter().any(|a| a == "department")
            || opts
                .filter
                .as_ref()
                .is_some_and(|f| f.clauses.iter().any(|(k, _)| k == "department"));
        if by_department {
            let end = win.end.min(now).unix_timestamp();
            let gauges = self.catalog.gauges(end - 7 * 86_400, end + 1, None).await?;
            let mut latest: BTreeMap<TenantId, (i64, Vec<(String, u64)>)> = BTreeMap::new();
            for g in gauges {
                let Some(name) = g.measure.strip_prefix("department:") else {
                    continue;
                };
                let e = latest.entry(g.tenant).or_insert((i64::MIN, Vec::new()));
                if g.hour > e.0 {
                    *e = (g.hour, Vec::new());
                }
                if g.hour == e.0 {
                    e.1.push((name.to_owned(), g.value.max(0) as u64));
                }
            }
            opts.split = latest
                .into_iter()
                .map(|(t, (_, parts))| (t.to_string(), parts))
                .collect();
        }
        let reports =
            chargeback::chargeback(&sheet, &steps, &segments, &units, &opts).map_err(|e| {
                field(
                    "/window",
                    format!("the costs of this window cannot be computed: {e}"),
                )
            })?;
        let name_of = |key: &str| -> String {
            // Rows keyed by tenant id read better by slug.
            key.parse::<TenantId>()
                .ok()
                .and_then(|id| self.index.get(&id))
                .map(|t| t.slug.to_string())
                .unwrap_or_else(|| key.to_owned())
        };
        Ok(CostReport {
            code: 200,
            currency: sheet.currency().as_str().to_owned(),
            window: CostWindow {
                start: rfc3339(win.start),
                end: rfc3339(win.end),
            },
            step_seconds: step,
            aggregate: opts.aggregate.clone(),
            data: reports
                .into_iter()
                .map(|r| CostStep {
                    window: CostWindow {
                        start: rfc3339(r.window.start),
                        end: rfc3339(r.window.end),
                    },
                    allocations: r
                        .rows
                        .iter()
                        .map(|x| (x.name.clone(), wire_row(x)))
                        .collect(),
                    idle: r
                        .idle
                        .iter()
                        .map(|x| (x.name.clone(), wire_row(x)))
                        .collect(),
                    shared: r.shared.as_ref().map(wire_row),
                    unallocated_cost: r.unallocated.to_string(),
                    filtered_out_cost: r.filtered_out.to_string(),
                    total_cost: r.total.to_string(),
                    unpriced: r.unpriced.iter().map(|u| name_of(u)).collect(),
                })
                .collect(),
        })
    }

    /// The window's usage in segments of one price version each.
    async fn segments(
        &self,
        sheet: &PriceSheet,
        steps: &[Window],
        step_len: i64,
        limit: OffsetDateTime,
    ) -> ControlResult<(Vec<Segment>, BTreeMap<String, Properties>)> {
        let step_len = step_len.max(60);
        let charged: Vec<Window> = steps.iter().map(|s| s.until(limit)).collect();
        let steps = &charged[..];
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            return Ok((Vec::new(), BTreeMap::new()));
        };
        let boundaries: Vec<OffsetDateTime> =
            sheet.versions().iter().map(|v| v.valid_from).collect();
        // Each step cut at the price changes inside it.
        let mut parts: Vec<(usize, Window)> = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let mut start = s.start;
            for b in boundaries.iter().filter(|b| **b > s.start && **b < s.end) {
                parts.push((i, Window { start, end: *b }));
                start = *b;
            }
            parts.push((i, Window { start, end: s.end }));
        }
        let whole = Window {
            start: first.start,
            end: last.end,
        };
        let mut sums = self
            .catalog
            .usage(&UsageQuery {
                from: whole.start.unix_timestamp(),
                to: whole
                    .end
                    .unix_timestamp()
                    .max(whole.start.unix_timestamp() + 1),
                step: step_len,
                tenant: None,
            })
            .await?;
        let cut_steps: std::collections::BTreeSet<usize> = parts
            .iter()
            .filter(|(i, w)| {
                steps
                    .get(*i)
                    .is_some_and(|s| s.start != w.start || s.end != w.end)
            })
            .map(|(i, _)| *i)
            .collect();
        // Steps cut by a price change: their rows again, per part.
        let mut part_sums: BTreeMap<(usize, i64), Vec<UsageSum>> = BTreeMap::new();
        if !cut_steps.is_empty() {
            sums.retain(|s| {
                let i = ((s.step_start - whole.start.unix_timestamp()) / step_len) as usize;
                !cut_steps.contains(&i)
            });
            for (i, w) in parts.iter().filter(|(i, _)| cut_steps.contains(i)) {
                if w.seconds() <= 0 {
                    continue;
                }
                let rows = self
                    .catalog
                    .usage(&UsageQuery {
                        from: w.start.unix_timestamp(),
                        to: w.end.unix_timestamp(),
                        step: w.seconds(),
                        tenant: None,
                    })
                    .await?;
                part_sums.insert((*i, w.start.unix_timestamp()), rows);
            }
        }
        let gauges = self
            .catalog
            .gauges(
                whole.start.unix_timestamp() - HOUR,
                whole.end.unix_timestamp(),
                None,
            )
            .await?;
        let mut store: BTreeMap<TenantId, Vec<(i64, i64)>> = BTreeMap::new();
        for g in gauges.iter().filter(|g| g.measure == "store_bytes") {
            store.entry(g.tenant).or_default().push((g.hour, g.value));
        }
        let mut out: Vec<Segment> = parts
            .iter()
            .map(|(i, w)| Segment {
                step: *i,
                window: *w,
                usage: BTreeMap::new(),
                capacity: Vec::new(),
            })
            .collect();
        let seg_of = |step: usize, at: i64| {
            out.iter().position(|s| {
                s.step == step
                    && s.window.start.unix_timestamp() <= at
                    && at
                        < s.window
                            .end
                            .unix_timestamp()
                            .max(s.window.start.unix_timestamp() + 1)
            })
        };
        let mut placed: Vec<(usize, UsageSum)> = Vec::new();
        for s in sums {
            let i = ((s.step_start - whole.start.unix_timestamp()) / step_len) as usize;
            if let Some(k) = seg_of(i, s.step_start) {
                placed.push((k, s));
            }
        }
        for ((i, start), rows) in part_sums {
            if let Some(k) = seg_of(i, start) {
                placed.extend(rows.into_iter().map(|r| (k, r)));
            }
        }
        for (k, s) in placed {
            if let Some(seg) = out.get_mut(k) {
                add_sum(seg.usage.entry(s.tenant.to_string()).or_default(), &s);
            }
        }
        // Storage: each hour's sample covers that hour, clipped to the segment.
        for seg in &mut out {
            let (a, b) = (
                seg.window.start.unix_timestamp(),
                seg.window.end.unix_timestamp(),
            );
            for (t, samples) in &store {
                let byte_seconds: u64 = samples
                    .iter()
                    .map(|(h, v)| {
                        let overlap = (h + HOUR).min(b) - (*h).max(a);
                        (overlap.max(0) as u64).saturating_mul((*v).max(0) as u64)
                    })
                    .fold(0u64, u64::saturating_add);
                if byte_seconds > 0 {
                    seg.usage
                        .entry(t.to_string())
                        .or_default()
                        .storage_byte_seconds
                        .insert(STORE_CLASS.to_owned(), byte_seconds);
                }
            }
        }
        // Kubernetes mode: the cluster's namespaces and nodes, sample by sample.
        let mut kube_units = BTreeMap::new();
        if let Some(k) = &self.settings.kubernetes {
            // Up to now: Prometheus would carry gauges up to five minutes into the future.
            let end = whole.end.min(OffsetDateTime::now_utc()).unix_timestamp();
            let kw = self
                .kube_window(k, sheet, whole.start.unix_timestamp(), end)
                .await?;
            let seg_at = |out: &[Segment], t: i64| {
                out.iter().position(|s| {
                    s.window.start.unix_timestamp() <= t && t < s.window.end.unix_timestamp()
                })
            };
            for (t, unit, u) in kw.usage {
                if let Some(i) = seg_at(&out, t) {
                    let e = out[i].usage.entry(unit).or_default();
                    e.cpu_nanos = e.cpu_nanos.saturating_add(u.cpu_nanos);
                    e.ram_byte_seconds = e.ram_byte_seconds.saturating_add(u.ram_byte_seconds);
                }
            }
            let scope = Properties::from([
                ("source".to_owned(), "kubernetes".to_owned()),
                ("cluster".to_owned(), k.cluster.clone()),
            ]);
            for (t, cost) in kw.capacity {
                if let Some(i) = seg_at(&out, t) {
                    let seg = &mut out[i];
                    match seg.capacity.iter_mut().find(|(s, _)| *s == scope) {
                        Some((_, c)) => *c = c.checked_add(cost).unwrap_or(*c),
                        None => seg.capacity.push((scope.clone(), cost)),
                    }
                }
            }
            kube_units = kw.units;
        }
        Ok((out, kube_units))
    }
}
fn wire_row(r: &Row) -> CostRow {
    let c = |cat: Category| r.costs.get(cat).to_string();
    let u = r.usage.as_ref();
    CostRow {
        name: r.name.clone(),
        cpu_cost: c(Category::Cpu),
        ram_cost: c(Category::Ram),
        gpu_cost: c(Category::Gpu),
        storage_cost: c(Category::Storage),
        network_cost: c(Category::Network),
        load_balancer_cost: c(Category::LoadBalancer),
        database_cost: c(Category::Database),
        ai_cost: c(Category::Ai),
        api_cost: c(Category::Api),
        idle_cost: r.idle.to_string(),
        shared_cost: r.shared.to_string(),
        total_cost: r.total.to_string(),
        cpu_core_hours: u.map(|u| u.cpu_nanos as f64 / 3.6e12),
        requests: u.map(|u| u.requests.clone()),
        egress_bytes: u.map(|u| u.egress_bytes),
        storage_gib_hours: u.map(|u| u.storage_byte_seconds as f64 / (1u64 << 30) as f64 / 3_600.0),
        meters: u.map(|u| {
            u.meters
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Money::from_micros((*v).min(i64::MAX as u64) as i64).to_string(),
                    )
                })
                .collect()
        }),
    }
}
