//! Savings recommendations from measured usage over a window (30 days by default):
//!
//! - **plan right-sizing**: a tenant using under 20 % of every quota of its plan (peak users,
//!   patients and record bytes; the 95th percentile of its daily requests × 30 against the
//!   monthly quota) is offered the cheapest plan it would use at most 80 % of; one over
//!   90 % of a quota the next plan up (it will otherwise be refused). Savings: the price
//!   sheet's `plan_month` of both plans;
//! - **idle tenants**: no request in the window; saving: what the tenant itself cost
//!   (storage, mostly), scaled to a month;
//! - **isolation**: a `pg-database` tenant whose p95 day has under 1,000 requests can share
//!   a schema (saving: its database's own footprint — store bytes beyond its records — at
//!   the standard storage price); a tenant of a shared mode spending over 25 % of all
//!   tenants' CPU (at least three tenants measured) should get its own database, for its
//!   neighbours' sake (cost: the median footprint of the dedicated databases, or 8 MiB);
//! - **cold storage**: record versions not written for 90 days (the seed's lifecycle rule),
//!   priced at the standard class and at the cheapest other class of the sheet.

use std::collections::BTreeMap;

use tenantplane_core::{
    IsolationMode, Tenant, TenantId,
    usage_api::{CostQuery, Recommendation, RecommendationList},
};
use tenantplane_costs::{Money, window};
use time::OffsetDateTime;

use crate::{Control, ControlError, ControlResult, costs::STORE_CLASS, costs::micros};

const GIB: f64 = (1u64 << 30) as f64;

fn m(x: f64) -> String {
    Money::from_micros(x.round().clamp(i64::MIN as f64, i64::MAX as f64) as i64).to_string()
}

fn p95(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64) * 0.95).ceil() as usize;
    v[i.saturating_sub(1).min(v.len() - 1)]
}

impl Control {
    /// Recommendations over `window` (default `30d`).
    pub async fn recommendations(
        &self,
        window_spec: Option<&str>,
    ) -> ControlResult<RecommendationList> {
        let now = OffsetDateTime::now_utc();
        let spec = window_spec.unwrap_or("30d");
        let win = window::parse_window(spec, now)
            .map_err(|e| ControlError::field("/window", e.to_string()))?;
        let Some((sheet, _)) = self.price_sheet().await? else {
            return Err(ControlError::NoPrices);
        };
        let prices = sheet.at(now).map_err(|_| ControlError::NoPrices)?.clone();
        let q = |step: Option<&str>| CostQuery {
            window: format!(
                "{},{}",
                win.start.unix_timestamp(),
                win.end.unix_timestamp()
            ),
            step: step.map(str::to_owned),
            aggregate: Some("tenant_id".into()),
            idle: Some("separate".into()),
            shared: Some("separate".into()),
            share_tenants: None,
            filter: None,
            format: None,
        };
        let whole = self.costs(&q(None)).await?;
        let daily = self.costs(&q(Some("1d"))).await?;
        let charged_secs = (win.until(now).end - win.start).whole_seconds().max(1) as f64;
        let to_month = 730.0 * 3_600.0 / charged_secs;
        let gauges = self
            .catalog
            .gauges(win.start.unix_timestamp(), win.end.unix_timestamp(), None)
            .await?;
        // Peak and latest of each measure per tenant.
        let mut peak: BTreeMap<(TenantId, &str), i64> = BTreeMap::new();
        let mut latest: BTreeMap<(TenantId, &str), (i64, i64)> = BTreeMap::new();
        for g in &gauges {
            let k = (g.tenant, g.measure.as_str());
            let p = peak.entry(k).or_insert(0);
            *p = (*p).max(g.value);
            let l = latest.entry(k).or_insert((i64::MIN, 0));
            if g.hour > l.0 {
                *l = (g.hour, g.value);
            }
        }
        let last = |t: TenantId, k: &str| {
            latest
                .get(&(t, k))
                .map(|x| x.1.max(0) as f64)
                .unwrap_or(0.0)
        };
        let mut daily_requests: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for step in &daily.data {
            for (key, row) in &step.allocations {
                daily_requests
                    .entry(key.clone())
                    .or_default()
                    .push(row.requests.as_ref().map(|r| r.values().sum()).unwrap_or(0));
            }
        }
        let rows = whole
            .data
            .first()
            .map(|d| d.allocations.clone())
            .unwrap_or_default();
        let total_cpu: f64 = rows.values().map(|r| r.cpu_core_hours.unwrap_or(0.0)).sum();
        let std_price = prices
            .storage_gib_month
            .get(STORE_CLASS)
            .map(|p| p.micros() as f64)
            .unwrap_or(0.0);
        let mut plans = self.plans().await?;
        plans.sort_by_key(|p| {
            (
                p.quotas.requests_per_month,
                p.quotas.storage_bytes,
                p.quotas.max_users,
            )
        });
        let plan_price = |name: &str| prices.plan_month.get(name).map(|p| p.micros() as f64);
        let tenants: Vec<std::sync::Arc<Tenant>> = self
            .index
            .all()
            .into_iter()
            .filter(|t| matches!(t.status, tenantplane_core::TenantStatus::Active))
            .collect();
        let dedicated_overheads: Vec<u64> = tenants
            .iter()
            .filter(|t| t.isolation == IsolationMode::PgDatabase)
            .map(|t| (last(t.id, "store_bytes") - last(t.id, "record_bytes")).max(0.0) as u64)
            .filter(|x| *x > 0)
            .collect();
        let mut median = dedicated_overheads.clone();
        median.sort_unstable();
        let dedicated_footprint = median.get(median.len() / 2).copied().unwrap_or(8 << 20) as f64;
        let mut out = Vec::new();
        for t in &tenants {
            let key = t.id.to_string();
            let row = rows.get(&key);
            let reqs: Vec<u64> = daily_requests.get(&key).cloned().unwrap_or_default();
            let total_requests: u64 = reqs.iter().sum();
            let p95_day = p95(reqs.clone());
            let push = |out: &mut Vec<Recommendation>,
                        kind: &str,
                        action: String,
                        saving: f64,
                        method: String,
                        evidence: serde_json::Value| {
                out.push(Recommendation {
                    kind: kind.to_owned(),
                    tenant: t.slug.to_string(),
                    tenant_id: t.id,
                    action,
                    monthly_saving: m(saving),
                    method,
                    evidence,
                });
            };
            // Idle tenants.
            if total_requests == 0 {
                let own = row.map(|r| micros(&r.total_cost) as f64).unwrap_or(0.0) * to_month;
                push(&mut out, "idle-tenant",
                    format!("{} served no request in the window: suspend it, or delete it after the retention its data needs", t.slug),
                    own,
                    "what the tenant itself cost in the window (storage, mostly), scaled to 730 hours; its shares of idle and shared costs move to the others".into(),
                    serde_json::json!({"requests": 0, "store_bytes": last(t.id, "store_bytes")}));
            }
            // Plan right-sizing.
            if let Some(q) = self.quotas(&t.plan) {
                let used = [
                    (
                        "users",
                        peak.get(&(t.id, "users")).copied().unwrap_or(0).max(0) as f64,
                        q.max_users as f64,
                    ),
                    (
                        "patients",
                        peak.get(&(t.id, "patients")).copied().unwrap_or(0).max(0) as f64,
                        q.max_patients as f64,
                    ),
                    (
                        "storage_bytes",
                        peak.get(&(t.id, "record_bytes"))
                            .copied()
                            .unwrap_or(0)
                            .max(0) as f64,
                        q.storage_bytes as f64,
                    ),
                    (
                        "requests_per_month",
                        p95_day as f64 * 30.0,
                        q.requests_per_month as f64,
                    ),
                ];
                let ratio = |u: f64, l: f64| if l > 0.0 { u / l } else { 0.0 };
                let max_use = used
                    .iter()
                    .map(|(_, u, l)| ratio(*u, *l))
                    .fold(0.0, f64::max);
                let evidence = serde_json::json!(
                    used.iter()
                        .map(|(k, u, l)| (
                            k.to_string(),
                            serde_json::json!({"used": u, "limit": l})
                        ))
                        .collect::<BTreeMap<_, _>>()
                );
                let fits = |p: &tenantplane_core::Plan, share: f64| {
                    used.iter()
                        .zip([
                            p.quotas.max_users,
                            p.quotas.max_patients,
                            p.quotas.storage_bytes,
                            p.quotas.requests_per_month,
                        ])
                        .all(|((_, u, _), l)| *u <= share * l as f64)
                };
                let current = plans.iter().position(|p| p.name == t.plan);
                if total_requests > 0 && max_use < 0.2 {
                    if let Some(smaller) = plans
                        .iter()
                        .take(current.unwrap_or(0))
                        .find(|p| fits(p, 0.8))
                    {
                        let saving = match (
                            plan_price(t.plan.as_str()),
                            plan_price(smaller.name.as_str()),
                        ) {
                            (Some(a), Some(b)) => a - b,
                            _ => 0.0,
                        };
                        push(&mut out, "plan-downsize",
                            format!("{} uses under 20 % of plan {}: move it to {}", t.slug, t.plan, smaller.name),
                            saving,
                            "the price sheet's plan_month of both plans (0 when it names them not); usage: peak users, patients and record bytes, p95 daily requests × 30".into(),
                            evidence.clone());
                    }
                } else if max_use > 0.9
                    && let Some(bigger) = plans
                        .iter()
                        .skip(current.map_or(usize::MAX, |c| c + 1))
                        .find(|p| fits(p, 0.8))
                {
                    let saving = match (
                        plan_price(t.plan.as_str()),
                        plan_price(bigger.name.as_str()),
                    ) {
                        (Some(a), Some(b)) => a - b,
                        _ => 0.0,
                    };
                    push(
                        &mut out,
                        "plan-upsize",
                        format!(
                            "{} uses over 90 % of a quota of plan {}: move it to {} before requests are refused",
                            t.slug, t.plan, bigger.name
                        ),
                        saving,
                        "the price sheet's plan_month of both plans (negative: it costs more)"
                            .into(),
                        evidence,
                    );
                }
            }
            // Isolation.
            let cpu = row.and_then(|r| r.cpu_core_hours).unwrap_or(0.0);
            if t.isolation == IsolationMode::PgDatabase && total_requests > 0 && p95_day < 1_000 {
                let footprint = (last(t.id, "store_bytes") - last(t.id, "record_bytes")).max(0.0);
                push(&mut out, "isolation-shared",
                    format!("{} has its own database for a light load (p95 day: {p95_day} requests): a schema in a shared database serves it", t.slug),
                    footprint / GIB * std_price,
                    "the database's own footprint (store bytes beyond its records) at the standard storage price per GiB-month".into(),
                    serde_json::json!({"p95_daily_requests": p95_day, "footprint_bytes": footprint}));
            } else if t.isolation != IsolationMode::PgDatabase
                && rows.len() >= 3
                && total_cpu > 0.0
                && cpu / total_cpu > 0.25
            {
                push(&mut out, "isolation-dedicated",
                    format!("{} spends {:.0} % of all tenants' CPU in a shared mode: give it its own database so its neighbours keep their latency", t.slug, cpu / total_cpu * 100.0),
                    -(dedicated_footprint / GIB * std_price),
                    "the median footprint of the dedicated databases (8 MiB without any) at the standard storage price; negative: a cost, paid for isolation".into(),
                    serde_json::json!({"cpu_core_hours": cpu, "share_of_cpu": cpu / total_cpu}));
            }
            // Cold storage.
            let cold = last(t.id, "cold_bytes");
            let coldest = prices
                .storage_gib_month
                .iter()
                .filter(|(k, _)| k.as_str() != STORE_CLASS)
                .min_by_key(|(_, p)| **p);
            if cold > 0.0
                && let Some((class, price)) = coldest
                && (price.micros() as f64) < std_price
            {
                push(
                    &mut out,
                    "cold-storage",
                    format!(
                        "{} holds {:.2} GiB of record versions unchanged for 90 days: move them to {class}",
                        t.slug,
                        cold / GIB
                    ),
                    cold / GIB * (std_price - price.micros() as f64),
                    format!(
                        "cold bytes × (standard − {class}) per GiB-month, from the price sheet"
                    ),
                    serde_json::json!({"cold_bytes": cold, "class": class}),
                );
            }
        }
        out.sort_by(|a, b| {
            micros(&b.monthly_saving)
                .cmp(&micros(&a.monthly_saving))
                .then(a.tenant.cmp(&b.tenant))
        });
        let f = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        Ok(RecommendationList {
            currency: whole.currency,
            window: tenantplane_core::usage_api::CostWindow {
                start: f(win.start),
                end: f(win.end),
            },
            items: out,
        })
    }
}
