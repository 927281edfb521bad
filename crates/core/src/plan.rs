//! Plans and their quotas. Quota values are data (stored in the catalog and editable by
//! operators); the built-in plans below only seed an empty catalog.

use serde::{Deserialize, Serialize};

use crate::{IsolationMode, PlanName, ValidationErrors};

/// The limits a plan grants each tenant on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Maximum number of tenant user accounts.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub max_users: u64,
    /// Maximum number of patients (or primary records) stored.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub max_patients: u64,
    /// Maximum storage, in bytes.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub storage_bytes: u64,
    /// Sustained request rate allowed per minute.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub requests_per_minute: u64,
    /// Requests allowed per calendar month.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub requests_per_month: u64,
    /// Fair-share weight: when tenants compete for a database server's connections or the
    /// SQLite pool, each gets slots in proportion to its plan's weight (and a tenant of
    /// weight w holds at most w × the server's `per_tenant` connections).
    #[serde(default = "default_weight")]
    #[schema(minimum = 1, maximum = 100)]
    pub weight: u32,
    /// Expensive requests (FHIR searches, history, transaction and batch Bundles) one tenant
    /// may run at once; more wait their turn, past the wait 429 with Retry-After.
    #[serde(default = "default_heavy")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent_heavy: u32,
    /// Days the tenant's audit log keeps entries before they are pruned behind a signed
    /// checkpoint. Absent: the deployment's default for the tenant's profile
    /// (`[audit.retention_days]`: hospitals 7,305 days — 20 years, as Brazil's Lei
    /// 13.787/2018 asks of medical records — others 2,557, 7 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36525)]
    pub audit_retention_days: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

fn default_heavy() -> u32 {
    4
}

impl Quotas {
    /// Checks the quotas are coherent; pointers are relative to `prefix`.
    pub fn validate(&self, prefix: &str, errs: &mut ValidationErrors) {
        let fields = [
            ("max_users", self.max_users),
            ("max_patients", self.max_patients),
            ("storage_bytes", self.storage_bytes),
            ("requests_per_minute", self.requests_per_minute),
            ("requests_per_month", self.requests_per_month),
        ];
        for (name, v) in fields {
            if v == 0 {
                errs.push(format!("{prefix}/{name}"), "must be greater than 0");
            }
            if v > i64::MAX as u64 {
                errs.push(format!("{prefix}/{name}"), "is too large");
            }
        }
        if !(1..=100).contains(&self.weight) {
            errs.push(format!("{prefix}/weight"), "must be between 1 and 100");
        }
        if !(1..=1000).contains(&self.max_concurrent_heavy) {
            errs.push(
                format!("{prefix}/max_concurrent_heavy"),
                "must be between 1 and 1000",
            );
        }
        if let Some(d) = self.audit_retention_days
            && !(1..=36_525).contains(&d)
        {
            errs.push(
                format!("{prefix}/audit_retention_days"),
                "must be between 1 and 36525 (100 years)",
            );
        }
        if self.requests_per_month < self.requests_per_minute {
            errs.push(
                format!("{prefix}/requests_per_month"),
                "must be at least requests_per_minute",
            );
        }
    }
}

/// A named bundle of quotas and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// Stable name, e.g. `medium`.
    pub name: PlanName,
    /// Human-readable name.
    pub display_name: String,
    /// The limits granted.
    pub quotas: Quotas,
    /// Isolation mode given to new tenants on this plan unless overridden.
    pub default_isolation: IsolationMode,
    /// Optimistic-concurrency version, incremented on every change.
    pub version: u64,
}

const GIB: u64 = 1024 * 1024 * 1024;

/// The plans a new catalog starts with.
pub fn builtin_plans() -> Vec<Plan> {
    let mk = |name: &str, display: &str, q: Quotas, iso: IsolationMode| -> Option<Plan> {
        Some(Plan {
            name: name.parse().ok()?,
            display_name: display.to_owned(),
            quotas: q,
            default_isolation: iso,
            version: 1,
        })
    };
    [
        mk(
            "small",
            "Small",
            Quotas {
                max_users: 50,
                max_patients: 10_000,
                storage_bytes: 10 * GIB,
                requests_per_minute: 600,
                weight: 1,
                max_concurrent_heavy: 2,
                audit_retention_days: None,
                requests_per_month: 1_000_000,
            },
            IsolationMode::Sqlite,
        ),
        mk(
            "medium",
            "Medium",
            Quotas {
                max_users: 250,
                max_patients: 100_000,
                storage_bytes: 100 * GIB,
                requests_per_minute: 3_000,
                weight: 2,
                max_concurrent_heavy: 4,
                audit_retention_days: None,
                requests_per_month: 10_000_000,
            },
            IsolationMode::Sqlite,
        ),
        mk(
            "large",
            "Large",
            Quotas {
                max_users: 1_000,
                max_patients: 1_000_000,
                storage_bytes: 1_000 * GIB,
                requests_per_minute: 12_000,
                weight: 4,
                max_concurrent_heavy: 4,
                audit_retention_days: None,
                requests_per_month: 50_000_000,
            },
            IsolationMode::PgSchema,
        ),
        mk(
            "enterprise",
            "Enterprise",
            Quotas {
                max_users: 10_000,
                max_patients: 10_000_000,
                storage_bytes: 10_000 * GIB,
                requests_per_minute: 60_000,
                weight: 8,
                max_concurrent_heavy: 8,
                audit_retention_days: None,
                requests_per_month: 500_000_000,
            },
            IsolationMode::PgDatabase,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid() {
        let plans = builtin_plans();
        assert_eq!(plans.len(), 4);
        for p in plans {
            let mut e = ValidationErrors::new();
            p.quotas.validate("/quotas", &mut e);
            assert!(e.is_empty(), "{}: {e}", p.name);
        }
    }

    #[test]
    fn incoherent_quotas_are_refused() {
        let mut q = builtin_plans()[0].quotas;
        q.max_users = 0;
        q.requests_per_month = 1;
        let mut e = ValidationErrors::new();
        q.validate("/quotas", &mut e);
        let pointers: Vec<_> = e.0.iter().map(|f| f.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/quotas/max_users", "/quotas/requests_per_month"]
        );
    }
}
