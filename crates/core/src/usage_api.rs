//! Wire types of the usage and cost API: custom meter events (`POST /api/v1/usage/events`).

use serde::{Deserialize, Serialize};

/// A quantity as sent: a JSON number or a decimal string (at most six decimals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A whole number.
    Whole(u64),
    /// A JSON number with a fraction (or a negative one, which is refused).
    Number(f64),
    /// A decimal string, e.g. `"12.5"`.
    Text(String),
}

/// One usage event of a service the platform does not run itself (AI inference, tokens,
/// GPU time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// The tenant: its id or slug.
    pub tenant: String,
    /// The meter (`[a-z0-9][a-z0-9._-]{0,63}`), priced by the price sheet's `meters`.
    pub meter: String,
    /// How much, in the meter's unit; never negative.
    #[schema(value_type = String, example = "1500")]
    pub quantity: Quantity,
    /// When it was used (RFC 3339); now when absent. At most five minutes ahead and no
    /// older than the idempotency window (`metering.event_key_days`).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Unique per tenant: a retry with the same key is not counted again (1–128 printable
    /// ASCII characters).
    pub idempotency_key: String,
}

/// `POST /api/v1/usage/events`: a batch of events (1 to 1,000).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEventBatch {
    /// The events.
    pub events: Vec<UsageEvent>,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageEventStatus {
    /// Counted now.
    Recorded,
    /// Counted before (same key, same content): not counted again.
    Duplicate,
}

/// One event's outcome, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageEventResult {
    /// The event's key.
    pub idempotency_key: String,
    /// Recorded now or before.
    pub status: UsageEventStatus,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageEventsReport {
    /// Events counted now.
    pub recorded: u64,
    /// Events counted before.
    pub duplicates: u64,
    /// Each event's outcome.
    pub events: Vec<UsageEventResult>,
}
