//! Budgets, the alerts they raise, and the delivery of each alert to its webhook.
//!
//! An alert is unique per (budget, tenant, period, kind, threshold): evaluating a budget
//! again — on this replica or another — never raises the same alert twice. Deliveries are
//! claimed with a lease (`next_attempt_at` moved ahead in the claiming statement), so two
//! replicas never send the same attempt; every attempt is logged.

use async_trait::async_trait;
use tenantplane_core::TenantId;
use uuid::Uuid;

use crate::Result;

/// A stored budget: an opaque document (the control plane's `Budget`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBudget {
    /// Its id.
    pub id: Uuid,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// The budget.
    pub doc: serde_json::Value,
}

/// An alert and its delivery state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Its id (the webhook's event id).
    pub id: Uuid,
    /// The budget that raised it.
    pub budget: Uuid,
    /// The tenant it is about.
    pub tenant: TenantId,
    /// Start of the period (or day, for spikes), Unix seconds.
    pub period_start: i64,
    /// `actual`, `projected` or `spike`.
    pub kind: String,
    /// The threshold crossed, percent of the budget (0 for spikes).
    pub threshold: i32,
    /// When it was raised.
    pub created_at: i64,
    /// What the webhook receives.
    pub payload: serde_json::Value,
    /// When a delivery succeeded.
    pub delivered_at: Option<i64>,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (`None`: delivered, given up, or no webhook).
    pub next_attempt_at: Option<i64>,
    /// The last attempt's failure.
    pub last_error: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Attempt number, from 1.
    pub attempt: i32,
    /// When (Unix seconds).
    pub at: i64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The outcome of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its number.
    pub attempt: i32,
    /// When.
    pub at: i64,
    /// The receiver's status.
    pub status: Option<i32>,
    /// The failure, if any.
    pub error: Option<String>,
    /// Delivered now.
    pub delivered: bool,
    /// When to try again (`None`: no more attempts).
    pub next_attempt_at: Option<i64>,
}

/// The budgets half of the catalog.
#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// Stores a new budget.
    async fn put_budget(&self, b: &StoredBudget) -> Result<()>;
    /// Every budget, oldest first.
    async fn budgets(&self) -> Result<Vec<StoredBudget>>;
    /// Deletes a budget (its alerts stay); whether it existed.
    async fn delete_budget(&self, id: Uuid) -> Result<bool>;
    /// Records an alert unless the same one exists; whether it was new.
    async fn insert_alert(&self, a: &AlertRow) -> Result<bool>;
    /// Alerts, newest first, optionally of one tenant or budget, at most `limit`.
    async fn alerts(
        &self,
        tenant: Option<TenantId>,
        budget: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AlertRow>>;
    /// Claims alerts due for delivery at `now`: their next attempt moves to `now + lease`
    /// in the same statement, so no other replica claims them meanwhile.
    async fn claim_due(&self, now: i64, lease: i64, limit: usize) -> Result<Vec<AlertRow>>;
    /// Logs an attempt and sets the alert's delivery state.
    async fn record_attempt(&self, alert: Uuid, a: &Attempt) -> Result<()>;
    /// An alert's attempts, in order.
    async fn deliveries(&self, alert: Uuid) -> Result<Vec<DeliveryRow>>;
}
