//! Budgets per tenant or per plan (monthly or weekly; thresholds on actual and projected
//! spend) and spend spikes against a tenant's own baseline, evaluated from the cost report,
//! each crossing raised once as an alert (delivery: `alerts`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tenantplane_catalog::budgets::{AlertRow, StoredBudget};
use tenantplane_core::{
    TenantId,
    usage_api::{BudgetView, CostQuery, CreateBudget},
};
use tenantplane_costs::Money;
use time::{Duration, OffsetDateTime, Time};
use uuid::Uuid;

use crate::{
    Control, ControlError, ControlResult,
    costs::{micros, rfc3339},
};

/// The budget as stored (its webhook secret sealed under the platform key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Budget {
    pub name: String,
    pub tenant: Option<TenantId>,
    pub plan: Option<String>,
    pub period: String,
    pub amount: Money,
    pub thresholds: Vec<u32>,
    pub on: Vec<String>,
    pub webhook_url: Option<String>,
    /// Base64 of the sealed secret.
    pub webhook_secret: Option<String>,
    pub spike_factor: Option<f64>,
    pub spike_min: Money,
}

pub(crate) fn secret_aad(id: Uuid) -> Vec<u8> {
    format!("tenantplane:budget-webhook:{id}").into_bytes()
}

fn view(id: Uuid, b: &Budget, secret: Option<String>) -> BudgetView {
    BudgetView {
        id,
        name: b.name.clone(),
        tenant: b.tenant,
        plan: b.plan.clone(),
        period: b.period.clone(),
        amount: b.amount.to_string(),
        thresholds: b.thresholds.clone(),
        on: b.on.clone(),
        webhook_url: b.webhook_url.clone(),
        spike_factor: b.spike_factor,
        spike_min: b.spike_min.to_string(),
        webhook_secret: secret,
    }
}

/// The period of `kind` around `now`: its start and end.
pub(crate) fn period(kind: &str, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let today = now.replace_time(Time::MIDNIGHT);
    if kind == "weekly" {
        let monday = today - Duration::days(now.weekday().number_days_from_monday().into());
        return (monday, monday + Duration::days(7));
    }
    let start = today.replace_day(1).unwrap_or(today);
    let end = (start + Duration::days(32))
        .replace_day(1)
        .unwrap_or(start + Duration::days(31));
    (start, end)
}

impl Control {
    /// Creates a budget; its webhook secret is in the answer, once.
    pub async fn create_budget(&self, req: CreateBudget) -> ControlResult<BudgetView> {
        let f = ControlError::field;
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(f("/name", "1-100 characters"));
        }
        let (tenant, plan) = match (&req.tenant, &req.plan) {
            (Some(t), None) => {
                let t = self.get(t).await.map_err(|e| match e {
                    ControlError::NotFound(_) => f("/tenant", "no such tenant"),
                    other => other,
                })?;
                (Some(t.id), None)
            }
            (None, Some(p)) => {
                if self
                    .quotas(&p.parse().map_err(|_| f("/plan", "no such plan"))?)
                    .is_none()
                {
                    return Err(f("/plan", "no such plan"));
                }
                (None, Some(p.clone()))
            }
            _ => return Err(f("/tenant", "name either a tenant or a plan")),
        };
        let period = req.period.clone().unwrap_or_else(|| "monthly".into());
        if !matches!(period.as_str(), "monthly" | "weekly") {
            return Err(f("/period", "monthly or weekly"));
        }
        let amount: Money = req
            .amount
            .parse()
            .map_err(|_| f("/amount", "a decimal amount with at most six decimals"))?;
        if amount.micros() <= 0 {
            return Err(f("/amount", "must be above zero"));
        }
        let mut thresholds = req.thresholds.clone().unwrap_or_else(|| vec![50, 80, 100]);
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds.is_empty()
            || thresholds.len() > 10
            || thresholds.iter().any(|t| !(1..=1_000).contains(t))
        {
            return Err(f("/thresholds", "1 to 10 percentages, each 1-1000"));
        }
        let on = req
            .on
            .clone()
            .unwrap_or_else(|| vec!["actual".into(), "projected".into()]);
        if on.is_empty()
            || on
                .iter()
                .any(|o| !matches!(o.as_str(), "actual" | "projected"))
        {
            return Err(f("/on", "actual and/or projected"));
        }
        if let Some(u) = &req.webhook_url {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && u.len() <= 2_000
                && reqwest::Url::parse(u).is_ok_and(|p| p.host_str().is_some());
            if !ok {
                return Err(f("/webhook_url", "an http(s) URL"));
            }
        }
        if let Some(x) = req.spike_factor
            && !(x.is_finite() && (1.0..=1_000.0).contains(&x))
        {
            return Err(f("/spike_factor", "a factor from 1 to 1000, e.g. 2.0"));
        }
        let spike_min: Money = match &req.spike_min {
            Some(m) => m
                .parse()
                .ok()
                .filter(|m: &Money| !m.is_negative())
                .ok_or_else(|| f("/spike_min", "a non-negative decimal amount"))?,
            None => Money::ZERO,
        };
        let id = Uuid::now_v7();
        let secret = req.webhook_url.as_ref().map(|_| {
            let mut k = [0u8; 24];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
            format!(
                "whsec_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
            )
        });
        let sealed = match &secret {
            Some(s) => Some(
                base64::engine::general_purpose::STANDARD.encode(
                    self.identity
                        .keyring()
                        .platform()
                        .seal(&secret_aad(id), s.as_bytes())
                        .map_err(ControlError::from)?,
                ),
            ),
            None => None,
        };
        let b = Budget {
            name,
            tenant,
            plan,
            period,
            amount,
            thresholds,
            on,
            webhook_url: req.webhook_url.clone(),
            webhook_secret: sealed,
            spike_factor: req.spike_factor,
            spike_min,
        };
        let doc = serde_json::to_value(&b).map_err(|e| ControlError::Internal(e.to_string()))?;
        self.catalog
            .put_budget(&StoredBudget {
                id,
                created_at: OffsetDateTime::now_utc().unix_timestamp(),
                doc,
            })
            .await?;
        Ok(view(id, &b, secret))
    }

    pub(crate) async fn stored_budgets(&self) -> ControlResult<Vec<(Uuid, Budget)>> {
        self.catalog
            .budgets()
            .await?
            .into_iter()
            .map(|s| {
                serde_json::from_value(s.doc)
                    .map(|b| (s.id, b))
                    .map_err(|e| ControlError::Internal(format!("stored budget unreadable: {e}")))
            })
            .collect()
    }

    /// Every budget.
    pub async fn budgets(&self) -> ControlResult<Vec<BudgetView>> {
        Ok(self
            .stored_budgets()
            .await?
            .iter()
            .map(|(id, b)| view(*id, b, None))
            .collect())
    }

    /// Deletes a budget (its alerts stay listed).
    pub async fn delete_budget(&self, id: Uuid) -> ControlResult<()> {
        if self.catalog.delete_budget(id).await? {
            Ok(())
        } else {
            Err(ControlError::NotFound("budget"))
        }
    }

    /// Evaluates every budget at `now`; returns how many alerts were raised now (an alert
    /// already raised is not raised again, here or on another replica).
    pub async fn evaluate_budgets(&self, now: OffsetDateTime) -> ControlResult<usize> {
        let mut raised = 0;
        for (id, b) in self.stored_budgets().await? {
            raised += self.evaluate_budget(id, &b, now).await?;
        }
        Ok(raised)
    }

    async fn spend(
        &self,
        b: &Budget,
        from: OffsetDateTime,
        to: OffsetDateTime,
        step: Option<&str>,
        own_only: bool,
    ) -> ControlResult<tenantplane_core::usage_api::CostReport> {
        let filter = match (&b.tenant, &b.plan) {
            (Some(t), _) => format!("tenant_id:{t}"),
            (_, Some(p)) => format!("plan:{p}"),
            _ => return Err(ControlError::Internal("a budget without scope".into())),
        };
        self.costs(&CostQuery {
            window: format!("{},{}", from.unix_timestamp(), to.unix_timestamp()),
            step: step.map(str::to_owned),
            aggregate: Some("tenant_id".into()),
            // Budgets see what statements show (idle and shared costs included); spikes
            // compare what the tenant itself used, which other tenants cannot move.
            idle: Some(if own_only { "separate" } else { "weighted" }.into()),
            shared: Some(if own_only { "separate" } else { "weighted" }.into()),
            share_tenants: None,
            filter: Some(filter),
            format: None,
        })
        .await
    }

    async fn evaluate_budget(
        &self,
        id: Uuid,
        b: &Budget,
        now: OffsetDateTime,
    ) -> ControlResult<usize> {
        let (p0, p1) = period(&b.period, now);
        let report = self.spend(b, p0, p1, None, false).await?;
        let elapsed = (now - p0).whole_seconds().max(1);
        let length = (p1 - p0).whole_seconds().max(1);
        let budget = i128::from(b.amount.micros());
        let mut alerts = Vec::new();
        let currency = report.currency.clone();
        let base = |tenant: TenantId,
                    kind: &str,
                    threshold: u32,
                    start: OffsetDateTime,
                    extra: serde_json::Value| {
            let slug = self
                .index
                .get(&tenant)
                .map(|t| t.slug.to_string())
                .unwrap_or_default();
            let alert_id = Uuid::now_v7();
            let mut payload = serde_json::json!({
                "id": alert_id,
                "type": match kind { "spike" => "spend.spike", "projected" => "budget.projected", _ => "budget.threshold" },
                "created_at": rfc3339(now),
                "budget": {"id": id, "name": b.name, "amount": b.amount.to_string(), "period": b.period},
                "tenant": {"id": tenant, "slug": slug},
                "currency": currency,
                "threshold_pct": threshold,
            });
            if let (Some(p), serde_json::Value::Object(e)) = (payload.as_object_mut(), extra) {
                p.extend(e);
            }
            AlertRow {
                id: alert_id,
                budget: id,
                tenant,
                period_start: start.unix_timestamp(),
                kind: kind.to_owned(),
                threshold: i32::try_from(threshold).unwrap_or(0),
                created_at: now.unix_timestamp(),
                payload,
                delivered_at: None,
                attempts: 0,
                next_attempt_at: b.webhook_url.as_ref().map(|_| now.unix_timestamp()),
                last_error: None,
            }
        };
        if let Some(step) = report.data.first() {
            for (key, row) in &step.allocations {
                let Ok(tenant) = key.parse::<TenantId>() else {
                    continue;
                };
                let actual = i128::from(micros(&row.total_cost));
                let projected = actual * i128::from(length) / i128::from(elapsed);
                for &t in &b.thresholds {
                    let line = budget * i128::from(t) / 100;
                    let extra = |kind: &str| {
                        serde_json::json!({
                            "period": {"start": rfc3339(p0), "end": rfc3339(p1)},
                            "spend": row.total_cost,
                            "projected": Money::from_micros(i64::try_from(projected).unwrap_or(i64::MAX)).to_string(),
                            "basis": kind,
                        })
                    };
                    if b.on.iter().any(|o| o == "actual") && actual >= line {
                        alerts.push(base(tenant, "actual", t, p0, extra("actual")));
                    } else if b.on.iter().any(|o| o == "projected")
                        && projected >= line
                        && elapsed >= 3_600
                    {
                        alerts.push(base(tenant, "projected", t, p0, extra("projected")));
                    }
                }
            }
        }
        if let Some(factor) = b.spike_factor {
            alerts.extend(self.spikes(b, factor, now, &base).await?);
        }
        let mut raised = 0;
        for a in &alerts {
            if self.catalog.insert_alert(a).await? {
                raised += 1;
                metrics::counter!("tenantplane_budget_alerts_total", "kind" => a.kind.clone())
                    .increment(1);
                tracing::info!(budget = %id, tenant = %a.tenant, kind = %a.kind, threshold = a.threshold, "budget alert raised");
            }
        }
        Ok(raised)
    }

    /// Yesterday's own cost (idle and shared costs left out), and today's so far projected
    /// to the whole day (after its first hour), against the average of the seven days
    /// before yesterday.
    async fn spikes(
        &self,
        b: &Budget,
        factor: f64,
        now: OffsetDateTime,
        base: &(dyn Fn(TenantId, &str, u32, OffsetDateTime, serde_json::Value) -> AlertRow + Sync),
    ) -> ControlResult<Vec<AlertRow>> {
        let today = now.replace_time(Time::MIDNIGHT);
        let from = today - Duration::days(8);
        let daily = self
            .spend(b, from, today + Duration::days(1), Some("1d"), true)
            .await?;
        let mut per: BTreeMap<TenantId, [i64; 9]> = BTreeMap::new();
        for (i, step) in daily.data.iter().enumerate().take(9) {
            for (key, row) in &step.allocations {
                if let Ok(t) = key.parse::<TenantId>() {
                    per.entry(t).or_insert([0; 9])[i] = micros(&row.total_cost);
                }
            }
        }
        let since_midnight = (now - today).whole_seconds();
        let mut out = Vec::new();
        for (t, days) in per {
            let baseline = days[..7].iter().map(|d| i128::from(*d)).sum::<i128>() / 7;
            if baseline <= 0 {
                continue; // no history to compare with
            }
            let mut candidates = vec![(today - Duration::days(1), i128::from(days[7]))];
            if since_midnight >= 3_600 {
                candidates.push((
                    today,
                    i128::from(days[8]) * 86_400 / i128::from(since_midnight),
                ));
            }
            for (day, cost) in candidates {
                if cost as f64 > factor * baseline as f64
                    && cost >= i128::from(b.spike_min.micros())
                {
                    let m = |x: i128| {
                        Money::from_micros(i64::try_from(x).unwrap_or(i64::MAX)).to_string()
                    };
                    out.push(base(
                        t,
                        "spike",
                        0,
                        day,
                        serde_json::json!({
                            "day": rfc3339(day),
                            "day_cost": m(cost),
                            "baseline_daily": m(baseline),
                            "factor": factor,
                        }),
                    ));
                }
            }
        }
        Ok(out)
    }
}
