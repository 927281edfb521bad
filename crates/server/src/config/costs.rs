//! `[costs]`: the first price sheet, stored in the catalog at start when it holds none
//! (later changes go through `POST /api/v1/prices`, from a date on).

use serde::{Deserialize, Serialize};
use tenantplane_costs::{Currency, PriceSheet, Prices};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::ConfigError;

/// `[costs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostsConfig {
    /// ISO 4217 code of every amount (`USD`, `BRL`, …).
    pub currency: Option<String>,
    /// When the configured prices apply from (RFC 3339, on the hour); 2000-01-01 when absent,
    /// so every window has prices.
    pub valid_from: Option<String>,
    /// The prices (`[costs.prices]`); no sheet is seeded without them.
    pub prices: Option<Prices>,
    /// How often budgets are evaluated, in seconds (0: never).
    pub budget_interval_secs: u64,
    /// The first webhook retry waits this long; each next twice as long (≤ 1 h).
    pub webhook_backoff_secs: u64,
    /// Delivery attempts before an alert is marked failed.
    pub webhook_max_attempts: u32,
}

impl Default for CostsConfig {
    fn default() -> Self {
        Self {
            currency: None,
            valid_from: None,
            prices: None,
            budget_interval_secs: 300,
            webhook_backoff_secs: 30,
            webhook_max_attempts: 8,
        }
    }
}

impl CostsConfig {
    /// The sheet to seed, if prices are configured.
    pub fn sheet(&self) -> Result<Option<PriceSheet>, ConfigError> {
        let Some(prices) = &self.prices else {
            return Ok(None);
        };
        let invalid = |what: String| ConfigError::Invalid(format!("costs: {what}"));
        let currency = Currency::new(self.currency.as_deref().unwrap_or("USD"))
            .map_err(|e| invalid(e.to_string()))?;
        let from = match &self.valid_from {
            Some(s) => OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|_| invalid(format!("valid_from '{s}' is not an RFC 3339 date-time")))?,
            None => time::macros::datetime!(2000-01-01 0:00 UTC),
        };
        if from.unix_timestamp().rem_euclid(3_600) != 0 {
            return Err(invalid("valid_from must be on the hour".into()));
        }
        PriceSheet::new(currency, from, prices.clone())
            .map(Some)
            .map_err(|e| invalid(e.to_string()))
    }
}
