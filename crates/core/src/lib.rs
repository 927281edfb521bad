//! Tenantplane's domain model: typed identifiers, the tenant record and its lifecycle state
//! machine, plans and quotas, and the error kinds every other crate maps to HTTP statuses.
//!
//! Pure logic, no I/O: everything here is unit-tested without a database or a network.

pub mod api;
pub mod audit_api;
pub mod cursor;
pub mod error;
pub mod id_tags;
pub mod identity;
pub mod ids;
pub mod lifecycle;
pub mod names;
pub mod operator;
pub mod plan;
pub mod sso;
pub mod tenant;
pub mod usage_api;

pub use error::{ErrorKind, FieldError, ValidationErrors};
pub use identity::{Email, Permission, Role, RoleName};
pub use ids::{OperatorId, TenantId, UserId};
pub use lifecycle::{TenantAction, TenantStatus};
pub use names::{DomainName, PlanName, Slug};
pub use operator::{Operator, OperatorRole};
pub use plan::{Plan, Quotas};
pub use tenant::{
    Branding, Domain, DomainKind, IsolationMode, Profile, ProvisionStep, Settings, StepRecord,
    Tenant, TenantRef, TenantSeed,
};
