//! Usage reported by services the platform does not run itself: batches of custom meter
//! events, checked whole, counted once per idempotency key.

use tenantplane_catalog::usage::EventsOutcome;
use tenantplane_core::{
    TenantStatus,
    usage_api::{UsageEventBatch, UsageEventResult, UsageEventStatus, UsageEventsReport},
};
use tenantplane_metering::events;
use time::OffsetDateTime;

use crate::{Control, ControlError, ControlResult};

impl Control {
    /// Records a batch of custom meter events: all of them (those seen before are reported
    /// as duplicates and not counted again) or, on any invalid event or reused key, none.
    pub async fn report_usage(&self, batch: &UsageEventBatch) -> ControlResult<UsageEventsReport> {
        let now = OffsetDateTime::now_utc();
        let resolve = |r: &str| {
            self.index
                .find(r)
                .filter(|t| !matches!(t.status, TenantStatus::Deleted))
                .map(|t| t.id)
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
