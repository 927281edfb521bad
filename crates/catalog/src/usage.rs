//! The usage ledger: what each tenant used, per minute (recent) and per hour (older), as
//! additive counters; absolute measures (store bytes, users, patients) sampled per hour;
//! the idempotency keys of custom meter events; the price sheet.
//!
//! Counters are added (`value = value + excluded.value`), so replicas flushing the same
//! tenant and minute add up, and a roll-up moves minute rows into their hour exactly once
//! (the rows are deleted and their sums added in one statement or transaction). Gauges are
//! replaced: two replicas sampling the same hour write the same kind of value, the later
//! one wins. Meter events commit with their idempotency keys in one transaction, so a retry
//! of a recorded event changes nothing.

use async_trait::async_trait;
use tenantplane_core::TenantId;

use crate::Result;

/// Seconds of a minute row.
pub const MINUTE: i64 = 60;
/// Seconds of an hour row.
pub const HOUR: i64 = 3_600;

/// One additive counter of one tenant in one minute or hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Whose usage.
    pub tenant: TenantId,
    /// Start of the interval, seconds since the Unix epoch, a multiple of `span`.
    pub bucket: i64,
    /// [`MINUTE`] or [`HOUR`].
    pub span: i64,
    /// What was counted (`requests:fhir-read`, `cpu_nanos`, `meter:inference-tokens`, …).
    pub meter: String,
    /// How much (never negative).
    pub value: i64,
}

/// A sum over a step of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSum {
    /// Whose usage.
    pub tenant: TenantId,
    /// Start of the step (seconds since the epoch).
    pub step_start: i64,
    /// What was counted.
    pub meter: String,
    /// The sum.
    pub value: i64,
}

/// Which rows to add up: buckets starting in `[from, to)`, grouped in steps of `step`
/// seconds from `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Window start (inclusive), seconds since the epoch.
    pub from: i64,
    /// Window end (exclusive).
    pub to: i64,
    /// Step length in seconds (> 0).
    pub step: i64,
    /// Only this tenant.
    pub tenant: Option<TenantId>,
}

/// An absolute measure of one tenant in one hour (the latest sample of that hour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaugeRow {
    /// Whose.
    pub tenant: TenantId,
    /// Start of the hour, seconds since the epoch.
    pub hour: i64,
    /// What (`store_bytes`, `users`, `patients`, `resources`).
    pub measure: String,
    /// Its value.
    pub value: i64,
}

/// A custom meter event with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    /// Unique per tenant; a retry carries the same key.
    pub key: String,
    /// SHA-256 of what the event says (meter, quantity, time): a key reused for another
    /// event is refused.
    pub digest: [u8; 32],
    /// The counter it adds to (its tenant is the key's scope).
    pub row: UsageRow,
}

/// What became of a batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsOutcome {
    /// Recorded; `true` per event recorded now, `false` per event recorded before (same
    /// key, same content).
    Recorded(Vec<bool>),
    /// These keys were recorded before with other content; nothing was written.
    KeyReused(Vec<String>),
}

/// The price sheet as stored: an opaque document and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPrices {
    /// The sheet (the costs crate's `PriceSheet`, serialized).
    pub doc: serde_json::Value,
    /// Compare-and-swap version.
    pub version: u64,
}

/// The ledger half of the catalog.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Adds counters in one transaction (rows in a fixed order, so concurrent flushes of
    /// several replicas do not deadlock).
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<()>;

    /// Records `events` (of any tenants; keys are unique per tenant) with their keys in one
    /// transaction, or nothing when a key was used before for another event. A key that
    /// appears twice in `events` counts once.
    async fn record_events(&self, events: &[MeterEvent], received_at: i64)
    -> Result<EventsOutcome>;

    /// Forgets idempotency keys received before `before`; returns how many.
    async fn prune_events(&self, before: i64) -> Result<u64>;

    /// Moves minute rows of buckets before `before` into their hours; returns how many
    /// minute rows were moved.
    async fn roll_up(&self, before: i64) -> Result<u64>;

    /// Sums of the counters in a window, per tenant, step and meter.
    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageSum>>;

    /// Writes gauges (replacing a value of the same tenant, hour and measure).
    async fn set_gauges(&self, rows: &[GaugeRow]) -> Result<()>;

    /// Gauges of hours in `[from, to)`, by tenant and hour.
    async fn gauges(&self, from: i64, to: i64, tenant: Option<TenantId>) -> Result<Vec<GaugeRow>>;

    /// The price sheet, if one was stored.
    async fn prices(&self) -> Result<Option<StoredPrices>>;

    /// Stores the price sheet if it is at `expected` (0: none stored yet); returns the new
    /// version.
    async fn put_prices(&self, doc: &serde_json::Value, expected: u64) -> Result<u64>;
}

/// The step a bucket falls in.
pub fn step_of(q: &UsageQuery, bucket: i64) -> i64 {
    q.from + (bucket - q.from).div_euclid(q.step) * q.step
}

/// Rows merged by key (one row per tenant, bucket, span and meter) in the one order every
/// writer uses.
pub(crate) fn merged(rows: &[UsageRow]) -> Vec<UsageRow> {
    let mut m: std::collections::BTreeMap<(TenantId, i64, i64, &str), i64> =
        std::collections::BTreeMap::new();
    for r in rows {
        let v = m
            .entry((r.tenant, r.bucket, r.span, r.meter.as_str()))
            .or_default();
        *v = v.saturating_add(r.value.max(0));
    }
    m.into_iter()
        .map(|((tenant, bucket, span, meter), value)| UsageRow {
            tenant,
            bucket,
            span,
            meter: meter.to_owned(),
            value,
        })
        .collect()
}
