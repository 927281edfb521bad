//! A tenant's monthly statement: its costs by category (its shares of idle capacity and
//! shared costs included, exactly as in the fleet's cost report), month to date and
//! projected, against the previous month with what drove the change, per user and per
//! department.

use std::collections::BTreeMap;

use tenantplane_core::usage_api::{
    CostQuery, CostReport, CostRow, DepartmentCost, GrowthDriver, Statement, StatementLine,
};
use tenantplane_costs::{Money, split};
use time::{Date, Month, OffsetDateTime, Time, format_description::well_known::Rfc3339};

use crate::{Control, ControlError, ControlResult, costs::micros};

/// Most users read for the department split.
const MAX_USERS: usize = 100_000;

fn bounds(
    month: Option<&str>,
    now: OffsetDateTime,
) -> ControlResult<(OffsetDateTime, OffsetDateTime)> {
    let bad = || ControlError::field("/month", "a month is YYYY-MM, e.g. 2026-12");
    let (y, m) = match month {
        None => (now.year(), now.month()),
        Some(s) => {
            let (y, m) = s.split_once('-').ok_or_else(bad)?;
            if y.len() != 4 || m.len() != 2 {
                return Err(bad());
            }
            let y: i32 = y.parse().map_err(|_| bad())?;
            let m: u8 = m.parse().map_err(|_| bad())?;
            (y, Month::try_from(m).map_err(|_| bad())?)
        }
    };
    if !(2000..=2100).contains(&y) {
        return Err(ControlError::field(
            "/month",
            "the month lies too far in the past or the future",
        ));
    }
    let start = Date::from_calendar_date(y, m, 1).map_err(|_| bad())?;
    let next = if m == Month::December {
        Date::from_calendar_date(y + 1, Month::January, 1)
    } else {
        Date::from_calendar_date(y, m.next(), 1)
    }
    .map_err(|_| bad())?;
    let (a, b) = (
        start.with_time(Time::MIDNIGHT).assume_utc(),
        next.with_time(Time::MIDNIGHT).assume_utc(),
    );
    if a > now {
        return Err(ControlError::field("/month", "the month has not begun"));
    }
    Ok((a, b))
}

fn money(m: i128) -> String {
    Money::from_micros(i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX }))
        .to_string()
}

fn zero_row(name: &str) -> CostRow {
    let z = || "0.000000".to_owned();
    CostRow {
        name: name.to_owned(),
        cpu_cost: z(),
        ram_cost: z(),
        gpu_cost: z(),
        storage_cost: z(),
        network_cost: z(),
        load_balancer_cost: z(),
        database_cost: z(),
        ai_cost: z(),
        api_cost: z(),
        idle_cost: z(),
        shared_cost: z(),
        total_cost: z(),
        cpu_core_hours: Some(0.0),
        requests: Some(BTreeMap::new()),
        egress_bytes: Some(0),
        storage_gib_hours: Some(0.0),
        meters: Some(BTreeMap::new()),
    }
}

fn row_of(r: &CostReport, step: usize, key: &str) -> CostRow {
    r.data
        .get(step)
        .and_then(|d| d.allocations.get(key))
        .cloned()
        .unwrap_or_else(|| zero_row(key))
}

fn pct(prev: f64, cur: f64) -> Option<f64> {
    (prev > 0.0).then(|| ((cur - prev) / prev * 1_000.0).round() / 10.0)
}

impl Control {
    /// The monthly statement of tenant `r` for `month` (`YYYY-MM`; now's month by default).
    pub async fn statement(&self, r: &str, month: Option<&str>) -> ControlResult<Statement> {
        let t = self.get(r).await?;
        let now = OffsetDateTime::now_utc();
        let (m0, m1) = bounds(month, now)?;
        let key = t.id.to_string();
        let query = |from: OffsetDateTime, to: OffsetDateTime, step: Option<&str>| CostQuery {
            window: format!("{},{}", from.unix_timestamp(), to.unix_timestamp()),
            step: step.map(str::to_owned),
            aggregate: Some("tenant_id".into()),
            idle: Some("weighted".into()),
            shared: Some("weighted".into()),
            share_tenants: None,
            filter: Some(format!("tenant_id:{key}")),
            format: None,
        };
        let cur = self.costs(&query(m0, m1, None)).await?;
        let (p0, _) = bounds(
            Some(&format!(
                "{:04}-{:02}",
                (m0 - time::Duration::days(1)).year(),
                u8::from((m0 - time::Duration::days(1)).month())
            )),
            now,
        )?;
        let prev = self.costs(&query(p0, m0, None)).await?;
        let row = row_of(&cur, 0, &key);
        let prev_row = row_of(&prev, 0, &key);
        let total = micros(&row.total_cost);
        let as_of = now.min(m1);
        let month_secs = (m1 - m0).whole_seconds().max(1);
        let elapsed = (as_of - m0).whole_seconds().max(1);
        // Projection: month to date plus the daily run-rate of the last (up to) seven whole
        // days of the month times the days left; before a whole day has passed, the rate
        // so far.
        let (projected, method) = if as_of >= m1 {
            (i128::from(total), "the month is over: its total".to_owned())
        } else {
            let daily = self.costs(&query(m0, m1, Some("1d"))).await?;
            let whole: Vec<i64> = daily
                .data
                .iter()
                .enumerate()
                .filter(|(_, d)| {
                    OffsetDateTime::parse(&d.window.end, &Rfc3339).is_ok_and(|e| e <= now)
                })
                .map(|(i, _)| micros(&row_of(&daily, i, &key).total_cost))
                .collect();
            let last: Vec<i64> = whole.iter().rev().take(7).copied().collect();
            let left = i128::from((m1 - as_of).whole_seconds());
            if last.is_empty() {
                (
                    i128::from(total) + i128::from(total) * left / i128::from(elapsed),
                    "month to date plus its rate so far (less than a whole day has passed) \
                     times the time left"
                        .to_owned(),
                )
            } else {
                let avg = last.iter().map(|x| i128::from(*x)).sum::<i128>() / last.len() as i128;
                (
                    i128::from(total) + avg * left / 86_400,
                    format!(
                        "month to date plus the average of the last {} whole day(s) times the days left",
                        last.len()
                    ),
                )
            }
        };
        let previous = micros(&prev_row.total_cost);
        let scale = month_secs as f64 / elapsed as f64;
        let gauges = |from: OffsetDateTime, to: OffsetDateTime| {
            let catalog = self.catalog.clone();
            let id = t.id;
            async move {
                let g = catalog
                    .gauges(from.unix_timestamp(), to.unix_timestamp(), Some(id))
                    .await?;
                Ok::<_, ControlError>(
                    g.iter()
                        .filter(|g| g.measure == "users")
                        .max_by_key(|g| g.hour)
                        .map(|g| g.value.max(0) as u64),
                )
            }
        };
        let users_now = gauges(m0, as_of).await?;
        let users_prev = gauges(p0, m0).await?;
        let requests = |r: &CostRow| {
            r.requests
                .as_ref()
                .map(|m| m.values().sum::<u64>())
                .unwrap_or(0) as f64
        };
        let projected_usage = |x: f64| if as_of >= m1 { x } else { x * scale };
        let drivers = [
            (
                "users",
                users_prev.unwrap_or(0) as f64,
                users_now.unwrap_or(0) as f64,
            ),
            (
                "requests",
                requests(&prev_row),
                projected_usage(requests(&row)),
            ),
            (
                "storage_gib_hours",
                prev_row.storage_gib_hours.unwrap_or(0.0),
                projected_usage(row.storage_gib_hours.unwrap_or(0.0)),
            ),
            (
                "cpu_core_hours",
                prev_row.cpu_core_hours.unwrap_or(0.0),
                projected_usage(row.cpu_core_hours.unwrap_or(0.0)),
            ),
            (
                "ai_cost",
                micros(&prev_row.ai_cost) as f64 / 1e6,
                projected_usage(micros(&row.ai_cost) as f64 / 1e6),
            ),
        ]
        .into_iter()
        .map(|(d, p, c)| GrowthDriver {
            driver: d.to_owned(),
            previous: p,
            current: c,
            change_pct: pct(p, c),
        })
        .collect();
        let departments = self.department_split(&t, Money::from_micros(total)).await?;
        let active: u64 = users_now.unwrap_or(0);
        let lines = [
            ("cpu", &row.cpu_cost),
            ("ram", &row.ram_cost),
            ("gpu", &row.gpu_cost),
            ("storage", &row.storage_cost),
            ("network", &row.network_cost),
            ("load_balancer", &row.load_balancer_cost),
            ("database", &row.database_cost),
            ("ai", &row.ai_cost),
            ("api", &row.api_cost),
            ("idle", &row.idle_cost),
            ("shared", &row.shared_cost),
        ]
        .into_iter()
        .map(|(c, a)| StatementLine {
            category: c.to_owned(),
            amount: a.clone(),
        })
        .collect();
        let growth_pct = if previous > 0 {
            Some(
                ((projected - i128::from(previous)) as f64 / previous as f64 * 1_000.0).round()
                    / 10.0,
            )
        } else {
            None
        };
        Ok(Statement {
            tenant: t.id,
            slug: t.slug.to_string(),
            display_name: t
                .branding
                .display_name
                .clone()
                .unwrap_or_else(|| t.display_name.clone()),
            branding: t.branding.clone(),
            plan: t.plan.to_string(),
            month: format!("{:04}-{:02}", m0.year(), u8::from(m0.month())),
            currency: cur.currency.clone(),
            period: tenantplane_core::usage_api::CostWindow {
                start: m0.format(&Rfc3339).unwrap_or_default(),
                end: m1.format(&Rfc3339).unwrap_or_default(),
            },
            as_of: as_of.format(&Rfc3339).unwrap_or_default(),
            lines,
            total: row.total_cost.clone(),
            projected_total: money(projected),
            projection_method: format!(
                "{method}; usage drivers of an unfinished month are projected linearly"
            ),
            previous_total: prev_row.total_cost.clone(),
            growth_pct,
            drivers,
            users: active,
            per_user: (active > 0).then(|| money(i128::from(total) / i128::from(active))),
            departments,
            usage: CostRow {
                name: t.slug.to_string(),
                ..row
            },
        })
    }

    /// `total` by department: each active user's equal share, split evenly between their
    /// departments (to the micro-unit, parts adding up to the whole).
    async fn department_split(
        &self,
        t: &tenantplane_core::Tenant,
        total: Money,
    ) -> ControlResult<Vec<DepartmentCost>> {
        let weight = self.department_members(t).await?;
        let weights: Vec<u64> = weight.iter().map(|(_, _, w)| *w).collect();
        let parts = split::by_weight(total, &weights).unwrap_or_default();
        Ok(weight
            .into_iter()
            .zip(parts)
            .map(|((department, n, _), amount)| DepartmentCost {
                department,
                users: n,
                amount: amount.to_string(),
            })
            .collect())
    }

    /// The tenant's departments by weight (what the hourly samples record): each active
    /// user counts 2520/k in each of its k departments (users in none: `(none)`).
    pub(crate) async fn department_weights(
        &self,
        t: &tenantplane_core::Tenant,
    ) -> ControlResult<Vec<(String, u64)>> {
        Ok(self
            .department_members(t)
            .await?
            .into_iter()
            .map(|(d, _, w)| (d, w))
            .collect())
    }

    /// (department, active users, weight in 2520ths of a user).
    async fn department_members(
        &self,
        t: &tenantplane_core::Tenant,
    ) -> ControlResult<Vec<(String, u64, u64)>> {
        let Ok(db) = self.data.handle(t) else {
            return Ok(Vec::new());
        };
        let names: BTreeMap<uuid::Uuid, String> = tenantplane_tenant_data::directory::list(db)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect();
        let mut users = Vec::new();
        let mut after = None;
        loop {
            let page = tenantplane_identity::users::list(db, after.clone(), 1_000).await?;
            let done = page.len() < 1_000;
            after = page.last().map(|u| u.email.to_string());
            users.extend(page.into_iter().filter(|u| !u.disabled));
            if done || users.len() >= MAX_USERS {
                break;
            }
        }
        // Weights in 2520ths (divisible by 1..=10) of a user.
        let mut weight: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for u in &users {
            let depts: Vec<String> = if u.departments.is_empty() {
                vec!["(none)".to_owned()]
            } else {
                u.departments
                    .iter()
                    .map(|d| {
                        names
                            .get(d)
                            .cloned()
                            .unwrap_or_else(|| "(removed)".to_owned())
                    })
                    .collect()
            };
            let share = 2_520 / depts.len().clamp(1, 2_520) as u64;
            for d in depts {
                let e = weight.entry(d).or_default();
                e.0 += 1;
                e.1 += share;
            }
        }
        Ok(weight.into_iter().map(|(d, (n, w))| (d, n, w)).collect())
    }
}
