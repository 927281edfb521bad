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
    /// Kubernetes mode (`[costs.kubernetes]`): namespaces of a cluster as tenants.
    pub kubernetes: Option<KubernetesConfig>,
}

/// `[costs.kubernetes]`: where the cluster's metrics are and how namespaces map to tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Base URL of the Prometheus HTTP API scraping cAdvisor and kube-state-metrics.
    pub prometheus_url: String,
    /// The cluster's name in reports.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The namespace label (as kube-state-metrics exports it, e.g.
    /// `label_tenantplane_io_tenant`) carrying a tenant's slug; without it a namespace
    /// named like a tenant's slug is that tenant's.
    #[serde(default)]
    pub tenant_label: Option<String>,
    /// Query resolution in seconds (also the window of `rate()`: at least twice the scrape
    /// interval).
    #[serde(default = "default_resolution")]
    pub resolution_secs: u64,
}

fn default_cluster() -> String {
    "cluster".into()
}

fn default_resolution() -> u64 {
    300
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
            kubernetes: None,
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
        if let Some(k) = &self.kubernetes {
            let url_ok = (k.prometheus_url.starts_with("http://")
                || k.prometheus_url.starts_with("https://"))
                && k.prometheus_url.len() > 8;
            if !url_ok || k.resolution_secs == 0 || k.cluster.is_empty() {
                return Err(invalid(
                    "kubernetes: prometheus_url is an http(s) URL, resolution_secs > 0, a cluster name".into(),
                ));
            }
        }
        if from.unix_timestamp().rem_euclid(3_600) != 0 {
            return Err(invalid("valid_from must be on the hour".into()));
        }
        PriceSheet::new(currency, from, prices.clone())
            .map(Some)
            .map_err(|e| invalid(e.to_string()))
    }
}
