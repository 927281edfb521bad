//! `[audit]`: the tenants' persistent audit logs — the asynchronous writer's queue and loss
//! window, and how long entries are kept.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events queued for the asynchronous writer at most; beyond, new events are dropped
    /// and counted (`tenantplane_audit_dropped_total`).
    pub queue_capacity: usize,
    /// The longest an event waits in the queue, in milliseconds: the loss window of a
    /// `kill -9` for reads and sign-ins (writes commit their entry with the change).
    pub flush_interval_ms: u64,
    /// How often entries past their retention are pruned, in seconds (0: never).
    pub prune_interval_secs: u64,
    /// Retention by profile when the tenant's plan sets none (`[audit.retention_days]`).
    pub retention_days: RetentionDays,
}

/// `[audit.retention_days]`, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionDays {
    /// Hospitals: 20 years (Brazil's Lei 13.787/2018 keeps medical records at least 20
    /// years from the last entry).
    pub hospital: u32,
    /// Every other profile: 7 years.
    pub other: u32,
}

impl Default for RetentionDays {
    fn default() -> Self {
        Self {
            hospital: 7_305,
            other: 2_557,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            flush_interval_ms: 250,
            prune_interval_secs: 86_400,
            retention_days: RetentionDays::default(),
        }
    }
}

impl AuditConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "audit.queue_capacity must be at least 1".into(),
            ));
        }
        if !(10..=10_000).contains(&self.flush_interval_ms) {
            return Err(ConfigError::Invalid(
                "audit.flush_interval_ms must be between 10 and 10000".into(),
            ));
        }
        for (name, d) in [
            ("hospital", self.retention_days.hospital),
            ("other", self.retention_days.other),
        ] {
            if !(1..=36_525).contains(&d) {
                return Err(ConfigError::Invalid(format!(
                    "audit.retention_days.{name} must be between 1 and 36525"
                )));
            }
        }
        Ok(())
    }
}
