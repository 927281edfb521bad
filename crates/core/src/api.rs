//! Wire types of the control-plane and tenant APIs, shared by the server and the client.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Branding, Domain, IsolationMode, OperatorId, OperatorRole, Plan, Profile, Quotas, Settings,
    Slug, StepRecord, Tenant, TenantId, TenantStatus,
};

/// A tenant as the control-plane API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Immutable identity.
    pub id: TenantId,
    /// Unique URL-safe name.
    pub slug: Slug,
    /// Human-readable name.
    pub display_name: String,
    /// Kind of organisation.
    pub profile: Profile,
    /// Plan name.
    pub plan: String,
    /// Where its data lives.
    pub isolation: IsolationMode,
    /// Database server it is placed on, if any.
    pub placement: Option<String>,
    /// Platform subdomain first, then custom domains.
    pub domains: Vec<Domain>,
    /// Presentation.
    pub branding: Branding,
    /// Free-form settings.
    #[schema(value_type = Object)]
    pub settings: Settings,
    /// Labels for cost reports (`label:<key>`).
    #[serde(default)]
    pub labels: crate::tenant::Labels,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Why it is in this status.
    pub status_reason: Option<String>,
    /// For `deleting` tenants: when deletion becomes final.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delete_after: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Version for optimistic concurrency (also the `ETag`).
    pub version: u64,
    /// Schema version of the tenant's data store.
    #[serde(default)]
    pub schema_version: u32,
    /// Provisioning (and deletion) steps completed.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// Only in the answer to a creation with `admin_email`: the first administrator and
    /// its one-time password, shown this once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_admin: Option<crate::identity::AdminCredentials>,
}

impl TenantView {
    /// Builds the API view of a stored tenant.
    pub fn from_tenant(t: &Tenant, base_domain: &str) -> Self {
        Self {
            id: t.id,
            slug: t.slug.clone(),
            display_name: t.display_name.clone(),
            profile: t.profile,
            plan: t.plan.to_string(),
            isolation: t.isolation,
            placement: t.placement.clone(),
            domains: t.domains(base_domain),
            branding: t.branding.clone(),
            settings: t.settings.clone(),
            labels: t.labels.clone(),
            status: t.status,
            status_reason: t.status_reason.clone(),
            delete_after: t.delete_after,
            created_at: t.created_at,
            updated_at: t.updated_at,
            version: t.version,
            schema_version: t.schema_version,
            steps: t.steps.clone(),
            initial_admin: None,
        }
    }
}

/// Body of `POST /api/v1/tenants`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 3–63 characters: lowercase letters, digits, '-'; starts with a letter; not a
    /// reserved word; no '--' at positions 3–4.
    #[schema(pattern = "^[a-z](?![a-z0-9]--)[a-z0-9-]{1,61}[a-z0-9]$")]
    pub slug: String,
    /// Human-readable name (1–200 characters, not blank, no control characters).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub display_name: String,
    /// Kind of organisation (default `other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Plan name (default from configuration); the plan must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")]
    pub plan: Option<String>,
    /// Isolation mode (default: the plan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationMode>,
    /// Custom domains (lowercase, at least two labels, not under the platform's base
    /// domain, not an IP address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::DomainName>)]
    pub custom_domains: Vec<String>,
    /// Presentation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub branding: Option<Branding>,
    /// Free-form settings (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Settings>,
    /// Departments seeded into the tenant's store at provisioning (at most 200; names of
    /// 1–100 characters, unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
    /// Labels for cost reports (`department`, `region`, …): at most 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<crate::tenant::Labels>,
    /// E-mail of the tenant's first administrator, created at provisioning with a one-time
    /// password returned once in `initial_admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
}

/// Body of `PATCH /api/v1/tenants/{tenant}`: only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New display name (1–200 characters, not blank, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub display_name: Option<String>,
    /// New profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// New plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// New branding (replaces the whole object).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub branding: Option<Branding>,
    /// New settings (replaces the whole object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Settings>,
    /// New labels (replace all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<crate::tenant::Labels>,
}

/// Optional body of the lifecycle actions (suspend, resume, delete, restore).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// Why (kept as `status_reason`), at most 500 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A page of tenants.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantList {
    /// The tenants, in creation order.
    pub items: Vec<TenantView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/v1/tenants/{tenant}/domains`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// The custom domain, e.g. `records.hospital.example`.
    #[schema(value_type = crate::DomainName)]
    pub domain: String,
}

/// Body of `PATCH /api/v1/plans/{plan}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// New quotas (all five values).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub quotas: Option<Quotas>,
    /// New default isolation mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_isolation: Option<IsolationMode>,
}

/// The plans.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanList {
    /// Every plan, by name.
    pub items: Vec<Plan>,
}

/// An operator as the API shows it (never with its token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorView {
    /// Identity.
    pub id: OperatorId,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: OperatorRole,
    /// Disabled operators cannot authenticate.
    pub disabled: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&crate::Operator> for OperatorView {
    fn from(o: &crate::Operator) -> Self {
        Self {
            id: o.id,
            name: o.name.clone(),
            role: o.role,
            disabled: o.disabled,
            created_at: o.created_at,
        }
    }
}

/// The operators.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorList {
    /// Every operator, by name.
    pub items: Vec<OperatorView>,
}

/// Body of `POST /api/v1/operators`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    /// Login name: 1–64 of a-z, 0-9, '.', '_', '-', '@'.
    #[schema(pattern = "^[a-z0-9._@-]{1,64}$")]
    pub name: String,
    /// Role (default `platform-admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<OperatorRole>,
}

/// An operator with its new token, shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorCredentials {
    /// The operator.
    pub operator: OperatorView,
    /// Bearer token; only its hash is stored, so keep it now.
    pub token: String,
}

/// `GET /api/tenant`: a tenant's public profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicTenant {
    /// Immutable identity.
    pub id: TenantId,
    /// URL-safe name.
    pub slug: Slug,
    /// Human-readable name.
    pub display_name: String,
    /// Kind of organisation.
    pub profile: Profile,
    /// Presentation.
    pub branding: Branding,
    /// Where it is reachable.
    pub domains: Vec<Domain>,
}

/// One field-level error in a problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProblemFieldError {
    /// JSON pointer into the request body.
    pub pointer: String,
    /// Why it was refused.
    pub detail: String,
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the problem kind, `urn:tenantplane:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Human explanation of this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Request id, for support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Field-level validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemFieldError>,
    /// For illegal transitions: the statuses reachable from the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_transitions: Option<Vec<TenantStatus>>,
    /// For version conflicts: the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// For `quota-exceeded`: which quota of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// For `quota-exceeded`: the plan's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// For `quota-exceeded`: the current usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
}

impl Problem {
    /// The `<code>` part of `type`.
    pub fn code(&self) -> &str {
        self.kind
            .strip_prefix("urn:tenantplane:problem:")
            .unwrap_or(&self.kind)
    }
}

/// `GET /readyz` and `/healthz` bodies.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Catalog backend (`sqlite`, `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// Tenants in the in-memory index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants_indexed: Option<u64>,
}

/// A department of the tenant (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DepartmentView {
    /// Identity.
    pub id: uuid::Uuid,
    /// Name, unique within the tenant.
    pub name: String,
}

/// `GET /api/tenant/departments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DepartmentList {
    /// Departments by name.
    pub items: Vec<DepartmentView>,
}

/// One database server of `GET /api/v1/placement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlacementServer {
    /// Name (`[data.servers.<name>]`), or `embedded` for the SQLite file store.
    pub name: String,
    /// Isolation modes placed on it.
    pub modes: Vec<IsolationMode>,
    /// Tenants placed on it (not deleted).
    pub tenants: u64,
    /// Application connections open now (SQLite: tenant databases open now).
    pub connections_open: u64,
    /// Of which idle.
    pub connections_idle: u64,
    /// The budget (SQLite: the open-database cap).
    pub budget: u64,
    /// Its standby pools (one per mode with a configured size, or with stores left).
    pub standby: Vec<StandbyPool>,
}

/// A standby pool of one mode on one server: stores provisioned ahead of sign-ups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StandbyPool {
    /// Isolation mode of its stores.
    pub mode: IsolationMode,
    /// Configured size.
    pub target: u64,
    /// Ready to claim.
    pub ready: u64,
    /// Being created and migrated.
    pub preparing: u64,
    /// Ready but at another schema version than this binary's (migrated by the refill).
    pub outdated: u64,
    /// Being dropped.
    pub retiring: u64,
}

impl StandbyPool {
    /// An empty pool of `mode` with `target` stores configured.
    pub fn new(mode: IsolationMode, target: u64) -> Self {
        Self {
            mode,
            target,
            ready: 0,
            preparing: 0,
            outdated: 0,
            retiring: 0,
        }
    }
}

/// `GET /api/v1/placement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlacementList {
    /// Servers, the embedded store first.
    pub servers: Vec<PlacementServer>,
}

/// `GET /api/v1/tenants/{t}/usage`: what a tenant uses of its plan's quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: crate::TenantId,
    /// The plan.
    pub plan: crate::PlanName,
    /// The month counted (`YYYY-MM`, UTC).
    pub month: String,
    /// Requests this month (all replicas, as of the last flush, plus this replica's since).
    pub requests: u64,
    /// The plan's `requests_per_month`.
    pub requests_limit: u64,
    /// User accounts.
    pub users: u64,
    /// The plan's `max_users`.
    pub users_limit: u64,
    /// Patients (FHIR `Patient` resources not deleted).
    pub patients: u64,
    /// The plan's `max_patients`.
    pub patients_limit: u64,
    /// Bytes of every stored record version.
    pub storage_bytes: u64,
    /// The plan's `storage_bytes`.
    pub storage_limit: u64,
    /// CPU time spent on the tenant's requests this month, in nanoseconds, measured per
    /// request (its own polls and the database and hashing work done for it): every
    /// replica's flushed usage plus what the answering replica has not flushed yet.
    pub cpu_nanos: u64,
}

/// An optional nested object of a request body: `null` or a JSON object. serde would also
/// read a struct from an array (`[null, null]` as every field absent), accepting what the
/// document refuses. The object's own fields are read by `T` from the same map, so error
/// pointers still name the nested field.
fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectOnly<T>(T);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
                type Value = T;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<T, A::Error> {
                    T::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
                .map(ObjectOnly)
        }
    }
    Ok(Option::<ObjectOnly<T>>::deserialize(d)?.map(|o| o.0))
}

/// A tenant's database connections on its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantConnections {
    /// The database server.
    pub server: String,
    /// Connections in use on it now (every tenant placed there).
    pub in_use: u64,
    /// Its connection budget.
    pub budget: u64,
}

/// `GET /api/v1/tenants/{t}/health`: the last hour at a glance, all replicas together (as
/// of their last flushes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantHealth {
    /// The tenant.
    pub tenant: crate::TenantId,
    /// When (RFC 3339).
    pub as_of: String,
    /// Requests answered in the last hour.
    pub requests_last_hour: u64,
    /// Their average rate per second.
    pub rps: f64,
    /// Share of them answered 4xx.
    pub error_rate_4xx: f64,
    /// Share answered 5xx.
    pub error_rate_5xx: f64,
    /// Median latency, ms (interpolated in the ledger's latency buckets).
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub latency_p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub latency_p99_ms: Option<f64>,
    /// Successful uptime probes this month over all of them.
    pub uptime_ratio_month: Option<f64>,
    /// Uptime probes this month.
    pub probes_month: u64,
    /// Store size at the latest hourly sample.
    pub store_bytes: Option<u64>,
    /// Connection use of its database server (none for SQLite tenants).
    pub connections: Option<TenantConnections>,
}
