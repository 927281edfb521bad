//! Integration tests of the catalog crate: the conformance suite, run against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod budgets;
mod conformance;
mod ledger;
mod platform_audit;
mod standby;

use tenantplane_core::{IsolationMode, Profile, Tenant, TenantStatus};
use time::OffsetDateTime;

/// An active sqlite tenant on the small plan.
pub fn tenant(slug: &str) -> Tenant {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    Tenant {
        status: TenantStatus::Active,
        ..Tenant::new(
            slug.parse().unwrap(),
            format!("Tenant {slug}"),
            Profile::Hospital,
            "small".parse().unwrap(),
            IsolationMode::Sqlite,
            now,
        )
    }
}
