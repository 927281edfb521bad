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

/// `GET /api/v1/costs`: which costs, how cut and shared (OpenCost's `/allocation` names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CostQuery {
    /// `today`, `yesterday`, `week`, `lastweek`, `month`, `lastmonth`, a duration back
    /// from now (`24h`, `7d`), or `start,end` (RFC 3339 or Unix seconds). UTC, whole
    /// minutes.
    pub window: String,
    /// Step: `window` (default), `1h`, `1d`, `1w` or any duration in whole minutes.
    pub step: Option<String>,
    /// Comma-separated properties: `tenant`, `tenant_id`, `plan`, `profile`, `isolation`,
    /// `placement`, `status`, `source`, `cluster`, `namespace`, `department` (each tenant's
    /// costs split by its departments' active users), `label:<key>`, and `category` (last)
    /// for one row per cost category.
    pub aggregate: Option<String>,
    /// Idle capacity: `separate` (default, an `__idle__` row), `weighted` (by each row's
    /// CPU cost) or `even`.
    pub idle: Option<String>,
    /// Shared costs (database, load balancer, platform overhead, shared tenants):
    /// `weighted` (default, by each row's own cost), `even`, or `separate` (a `__shared__`
    /// row).
    pub shared: Option<String>,
    /// Comma-separated tenants (slugs) whose costs are shared by the others (e.g. a
    /// monitoring tenant).
    pub share_tenants: Option<String>,
    /// Only these: `property:value|value,property:value` (all clauses must match).
    pub filter: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A report interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostWindow {
    /// Start (RFC 3339, UTC).
    pub start: String,
    /// End, exclusive.
    pub end: String,
}

/// One row of a step: amounts are exact decimal strings in the sheet's currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostRow {
    /// The row's key (`acme-hospital`, `large/acme-hospital`, `__idle__`, `__shared__`).
    pub name: String,
    /// CPU time at the price per core-hour.
    pub cpu_cost: String,
    /// Memory.
    pub ram_cost: String,
    /// GPU time.
    pub gpu_cost: String,
    /// Stored bytes by storage class.
    pub storage_cost: String,
    /// Egress.
    pub network_cost: String,
    /// Load balancers.
    pub load_balancer_cost: String,
    /// Managed databases.
    pub database_cost: String,
    /// AI workloads (custom meters of category `ai`).
    pub ai_cost: String,
    /// API requests by route class.
    pub api_cost: String,
    /// Idle capacity given to the row (or shown, for an idle row).
    pub idle_cost: String,
    /// Shared costs given to the row.
    pub shared_cost: String,
    /// Everything.
    pub total_cost: String,
    /// CPU core-hours used (tenant rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_core_hours: Option<f64>,
    /// Requests by route class (tenant rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<std::collections::BTreeMap<String, u64>>,
    /// Bytes sent (tenant rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_bytes: Option<u64>,
    /// Stored GiB × hours (tenant rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_gib_hours: Option<f64>,
    /// Custom meters, in their units (tenant rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meters: Option<std::collections::BTreeMap<String, String>>,
}

/// One step of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostStep {
    /// The step.
    pub window: CostWindow,
    /// Rows by name.
    pub allocations: std::collections::BTreeMap<String, CostRow>,
    /// Idle rows by name (idle shown apart, or idle nobody could take).
    pub idle: std::collections::BTreeMap<String, CostRow>,
    /// Shared costs shown apart (`shared=separate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<CostRow>,
    /// Shared cost nobody could take.
    pub unallocated_cost: String,
    /// What the filter left out.
    pub filtered_out_cost: String,
    /// The step's whole cost: `Σ allocations + Σ idle + shared + unallocated + filtered
    /// out`, exactly.
    pub total_cost: String,
    /// Usage priced at nothing (meters, classes or times without a price).
    pub unpriced: Vec<String>,
}

/// `GET /api/v1/costs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    /// 200, as OpenCost answers.
    pub code: u16,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// The window reported (its charged part ends now at the latest).
    pub window: CostWindow,
    /// Step length in seconds.
    pub step_seconds: i64,
    /// The aggregation.
    pub aggregate: Vec<String>,
    /// One entry per step.
    pub data: Vec<CostStep>,
}

/// `GET /api/v1/tenants/{t}/statement`: which month, in which form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// `YYYY-MM` (UTC); the current month when absent.
    pub month: Option<String>,
    /// `json` (default), `csv` or `html` (a printable page in the tenant's branding).
    pub format: Option<String>,
}

/// One amount of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementLine {
    /// `cpu`, `ram`, `gpu`, `storage`, `network`, `load_balancer`, `database`, `ai`,
    /// `api`, `idle` (the tenant's share of unused capacity), `shared` (its share of the
    /// platform's shared costs).
    pub category: String,
    /// Amount (decimal string).
    pub amount: String,
}

/// What changed from the previous month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrowthDriver {
    /// `users`, `requests`, `storage_gib_hours`, `ai_cost`, `cpu_core_hours`.
    pub driver: String,
    /// Previous month.
    pub previous: f64,
    /// This month (so far).
    pub current: f64,
    /// Change in percent (none when the previous month had none).
    pub change_pct: Option<f64>,
}

/// A department's part of the tenant's cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DepartmentCost {
    /// Department name (`(none)` for users in no department).
    pub department: String,
    /// Active users in it.
    pub users: u64,
    /// Its part (decimal string).
    pub amount: String,
}

/// A tenant's monthly statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Statement {
    /// The tenant.
    pub tenant: crate::TenantId,
    /// Its slug.
    pub slug: String,
    /// Its name as branded.
    pub display_name: String,
    /// Its branding (for the printable page).
    pub branding: crate::Branding,
    /// Its plan.
    pub plan: String,
    /// `YYYY-MM`.
    pub month: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// The month.
    pub period: CostWindow,
    /// Costs up to this instant (the month's end once it is over).
    pub as_of: String,
    /// Amounts by category, idle and shared shares included.
    pub lines: Vec<StatementLine>,
    /// Month to date (the month's total once it is over).
    pub total: String,
    /// Projected total at the month's end.
    pub projected_total: String,
    /// How the projection is made.
    pub projection_method: String,
    /// The previous month's total.
    pub previous_total: String,
    /// Growth of this month (projected) over the previous one, percent.
    pub growth_pct: Option<f64>,
    /// What drove it.
    pub drivers: Vec<GrowthDriver>,
    /// Active users at the last sample.
    pub users: u64,
    /// Month to date per active user.
    pub per_user: Option<String>,
    /// Month to date by department: each active user's equal share, split evenly between
    /// their departments.
    pub departments: Vec<DepartmentCost>,
    /// Usage behind it.
    pub usage: CostRow,
}

/// `POST /api/v1/budgets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBudget {
    /// A name for people.
    pub name: String,
    /// The tenant (id or slug) — or `plan`: a budget of that amount for each tenant on it.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The plan (every tenant on it has this budget).
    #[serde(default)]
    pub plan: Option<String>,
    /// `monthly` (calendar month, default) or `weekly` (from Monday, UTC).
    #[serde(default)]
    pub period: Option<String>,
    /// The amount per period (decimal string, the price sheet's currency).
    pub amount: String,
    /// Percentages of the amount that raise an alert (default 50, 80, 100).
    #[serde(default)]
    pub thresholds: Option<Vec<u32>>,
    /// On what: `actual` spend, `projected` spend at the period's end (default both).
    #[serde(default)]
    pub on: Option<Vec<String>>,
    /// Where alerts are sent (`https://`, or `http://` to a private receiver), signed.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Alert when a day costs more than this many times the tenant's average of the seven
    /// days before (e.g. 2.0); none: no spike alerts.
    #[serde(default)]
    pub spike_factor: Option<f64>,
    /// Days cheaper than this never count as spikes (decimal string; default 0).
    #[serde(default)]
    pub spike_min: Option<String>,
}

/// A budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetView {
    /// Its id.
    pub id: uuid::Uuid,
    /// Its name.
    pub name: String,
    /// The tenant, for a tenant's budget.
    pub tenant: Option<crate::TenantId>,
    /// The plan, for a plan's budget.
    pub plan: Option<String>,
    /// `monthly` or `weekly`.
    pub period: String,
    /// Amount per period.
    pub amount: String,
    /// Alert thresholds, percent.
    pub thresholds: Vec<u32>,
    /// `actual` and/or `projected`.
    pub on: Vec<String>,
    /// The webhook.
    pub webhook_url: Option<String>,
    /// The spike factor.
    pub spike_factor: Option<f64>,
    /// The smallest spike.
    pub spike_min: String,
    /// The HMAC-SHA256 key of the webhook's signatures: shown once, at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// `GET /api/v1/budgets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetList {
    /// Every budget.
    pub items: Vec<BudgetView>,
}

/// An alert and its delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertView {
    /// Its id (the webhook's `Tenantplane-Event-Id`).
    pub id: uuid::Uuid,
    /// The budget.
    pub budget: uuid::Uuid,
    /// The tenant.
    pub tenant: crate::TenantId,
    /// `actual`, `projected` or `spike`.
    pub kind: String,
    /// The threshold crossed (percent; 0 for spikes).
    pub threshold: u32,
    /// When it was raised (RFC 3339).
    pub created_at: String,
    /// What the webhook receives.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `pending`, `delivered`, `failed` (attempts exhausted) or `not_sent` (no webhook).
    pub delivery: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Newest first.
    pub items: Vec<AlertView>,
}

/// `GET /api/v1/alerts` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this tenant's (id or slug).
    pub tenant: Option<String>,
    /// Only this budget's.
    pub budget: Option<uuid::Uuid>,
}

/// One delivery attempt of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// From 1.
    pub attempt: u32,
    /// When (RFC 3339).
    pub at: String,
    /// The receiver's HTTP status.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}

/// `GET /api/v1/alerts/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryList {
    /// In order.
    pub items: Vec<DeliveryView>,
}

/// One savings recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// `plan-downsize`, `plan-upsize`, `idle-tenant`, `isolation-shared`,
    /// `isolation-dedicated` or `cold-storage`.
    pub kind: String,
    /// The tenant's slug.
    pub tenant: String,
    /// The tenant's id.
    pub tenant_id: crate::TenantId,
    /// What to do, for people.
    pub action: String,
    /// Estimated saving per month (decimal string; negative: it costs more, for a reason
    /// `action` states).
    pub monthly_saving: String,
    /// How the saving was computed.
    pub method: String,
    /// The measurements behind it.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
}

/// `GET /api/v1/recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecommendationList {
    /// Currency of the savings.
    pub currency: String,
    /// The measured window.
    pub window: CostWindow,
    /// Largest saving first.
    pub items: Vec<Recommendation>,
}

/// `GET /api/v1/recommendations` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecommendationQuery {
    /// The window measured (default `30d`; the same forms as `/api/v1/costs`).
    pub window: Option<String>,
}
