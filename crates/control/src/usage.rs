//! Usage reported by services the platform does not run itself: batches of custom meter
//! events, checked whole, counted once per idempotency key.

use futures_util::StreamExt as _;
use tenantplane_catalog::usage::{EventsOutcome, GaugeRow, HOUR};
use tenantplane_core::{
    TenantRef, TenantStatus,
    usage_api::{UsageEventBatch, UsageEventResult, UsageEventStatus, UsageEventsReport},
};
use tenantplane_metering::events;
use time::OffsetDateTime;

use crate::{Control, ControlError, ControlResult};

type TenantStatusAndId = (TenantStatus, tenantplane_core::TenantId);

impl Control {
    /// Records a batch of custom meter events: all of them (those seen before are reported
    /// as duplicates and not counted again) or, on any invalid event or reused key, none.
    pub async fn report_usage(&self, batch: &UsageEventBatch) -> ControlResult<UsageEventsReport> {
        let now = OffsetDateTime::now_utc();
        // Tenants this replica has not indexed yet (created moments ago elsewhere) are
        // looked up in the catalog.
        let mut known: std::collections::HashMap<&str, Option<TenantStatusAndId>> =
            std::collections::HashMap::new();
        for e in &batch.events {
            if known.contains_key(e.tenant.as_str()) {
                continue;
            }
            let found = match self.index.find(&e.tenant) {
                Some(t) => Some((t.status, t.id)),
                None => match e.tenant.parse::<TenantRef>() {
                    Ok(r) => self.catalog.get_tenant(&r).await?.map(|t| (t.status, t.id)),
                    Err(_) => None,
                },
            };
            known.insert(e.tenant.as_str(), found);
        }
        let resolve = |r: &str| {
            known
                .get(r)
                .copied()
                .flatten()
                .filter(|(status, _)| !matches!(status, TenantStatus::Deleted))
                .map(|(_, id)| id)
        };
        let prepared = events::prepare(&batch.events, resolve, now, self.settings.event_window)?;
        match self
            .catalog
            .record_events(&prepared, now.unix_timestamp())
            .await?
        {
            EventsOutcome::KeyReused(keys) => Err(ControlError::KeyReused(keys)),
            EventsOutcome::Recorded(fresh) => {
                let recorded = fresh.iter().filter(|f| **f).count() as u64;
                metrics::counter!("tenantplane_usage_events_total", "outcome" => "recorded")
                    .increment(recorded);
                metrics::counter!("tenantplane_usage_events_total", "outcome" => "duplicate")
                    .increment(fresh.len() as u64 - recorded);
                Ok(UsageEventsReport {
                    recorded,
                    duplicates: fresh.len() as u64 - recorded,
                    events: prepared
                        .iter()
                        .zip(fresh)
                        .map(|(e, f)| UsageEventResult {
                            idempotency_key: e.key.clone(),
                            status: if f {
                                UsageEventStatus::Recorded
                            } else {
                                UsageEventStatus::Duplicate
                            },
                        })
                        .collect(),
                })
            }
        }
    }
}

impl Control {
    /// Samples every servable tenant's absolute measures for the current hour: store
    /// bytes, users, patients, resources and record bytes (`usage_gauges`; a later sample of the same
    /// hour replaces an earlier one, so replicas sampling alike do no harm). A tenant whose
    /// store cannot be read now is skipped and logged. Returns how many were sampled.
    pub async fn sample_stores(&self) -> ControlResult<usize> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // Record versions older than 90 days (the lifecycle rule's cold data) are counted
        // once a day, in the 02:00 UTC hour: it reads every version's length.
        self.sample_stores_with(now.rem_euclid(86_400) / HOUR == 2)
            .await
    }

    /// [`Control::sample_stores`], counting cold record bytes when `cold`.
    pub async fn sample_stores_with(&self, cold: bool) -> ControlResult<usize> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let cold_before_ms = (now - 90 * 86_400) * 1_000;
        let hour = now - now.rem_euclid(HOUR);
        let tenants: Vec<_> = self
            .index
            .all()
            .into_iter()
            .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
            .collect();
        let measured: Vec<Option<Vec<GaugeRow>>> = futures_util::stream::iter(tenants)
            .map(|t| async move {
                let g = |measure: &str, value: u64| GaugeRow {
                    tenant: t.id,
                    hour,
                    measure: measure.to_owned(),
                    value: i64::try_from(value).unwrap_or(i64::MAX),
                };
                let store = self.data.store_bytes(&t).await;
                if let Ok(b) = &store {
                    metrics::gauge!("tenantplane_tenant_store_bytes", "tenant" => t.slug.to_string())
                        .set(*b as f64);
                }
                let counts = match self.data.handle(&t) {
                    Ok(db) => {
                        let users = tenantplane_identity::users::count(db).await;
                        let records = tenantplane_records::store::usage(db).await;
                        let cold_bytes = if cold {
                            tenantplane_records::store::cold_bytes(db, cold_before_ms)
                                .await
                                .map(Some)
                        } else {
                            Ok(None)
                        };
                        let resources = tenantplane_records::store::resource_count(db).await;
                        let departments = self.department_weights(&t).await;
                        users.map_err(ControlError::from).and_then(|u| {
                            let r = records.map_err(ControlError::from)?;
                            let c = cold_bytes.map_err(ControlError::from)?;
                            let n = resources.map_err(ControlError::from)?;
                            let d = departments?;
                            Ok((u, r, c, n, d))
                        })
                    }
                    Err(e) => Err(e.into()),
                };
                match (store, counts) {
                    (Ok(bytes), Ok((users, records, cold, resources, departments))) => {
                        let mut v = vec![
                            g("store_bytes", bytes),
                            g("users", users),
                            g("patients", records.patients),
                            g("resources", resources),
                            g("record_bytes", records.bytes),
                        ];
                        v.extend(cold.map(|c| g("cold_bytes", c)));
                        v.extend(
                            departments
                                .into_iter()
                                .map(|(d, w)| g(&format!("department:{d}"), w)),
                        );
                        Some(v)
                    }
                    (Err(e), _) => {
                        tracing::warn!(tenant = %t.id, error = %e, "store size not sampled");
                        None
                    }
                    (_, Err(e)) => {
                        tracing::warn!(tenant = %t.id, code = e.label(), error = %e, "tenant counts not sampled");
                        None
                    }
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let measured_tenants = measured.iter().filter(|m| m.is_some()).count();
        let rows: Vec<GaugeRow> = measured.into_iter().flatten().flatten().collect();
        for chunk in rows.chunks(2_000) {
            self.catalog.set_gauges(chunk).await?;
        }
        Ok(measured_tenants)
    }

    /// Sets `tenantplane_tenant_cost_daily{tenant,currency}`: each tenant's cost over the last
    /// 24 hours, idle and shared costs included (weighted), as the cost report gives it. Does
    /// nothing without prices.
    pub async fn export_daily_costs(&self) -> ControlResult<usize> {
        let q = tenantplane_core::usage_api::CostQuery {
            window: "24h".into(),
            step: None,
            aggregate: Some("tenant".into()),
            idle: Some("weighted".into()),
            shared: Some("weighted".into()),
            share_tenants: None,
            filter: None,
            format: None,
        };
        let report = match self.costs(&q).await {
            Ok(r) => r,
            Err(ControlError::NoPrices) => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for step in &report.data {
            for (tenant, row) in &step.allocations {
                if tenant.starts_with("__") {
                    continue;
                }
                if let Ok(v) = row.total_cost.parse::<f64>() {
                    metrics::gauge!("tenantplane_tenant_cost_daily",
                        "tenant" => tenant.clone(), "currency" => report.currency.clone())
                    .set(v);
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
