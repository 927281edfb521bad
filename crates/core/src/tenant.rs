//! The tenant record and its validated parts.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{DomainName, PlanName, Slug, TenantId, TenantStatus, ValidationErrors};

/// What kind of organisation a tenant is; drives defaults (e.g. records on for hospitals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// A hospital or clinic.
    Hospital,
    /// A city council / municipal chamber.
    Council,
    /// A company using SaaS modules.
    Company,
    /// Anything else.
    Other,
}

impl Profile {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hospital => "hospital",
            Self::Council => "council",
            Self::Company => "company",
            Self::Other => "other",
        }
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Hospital, Self::Council, Self::Company, Self::Other]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown profile '{s}' (hospital, council, company, other)"))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a tenant's data lives (used by the tenant-data layer).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// One SQLite file per tenant.
    Sqlite,
    /// One PostgreSQL database per tenant.
    PgDatabase,
    /// One PostgreSQL schema per tenant in a shared database.
    PgSchema,
    /// Shared PostgreSQL tables with row-level security.
    PgShared,
}

impl IsolationMode {
    /// Every mode.
    pub const ALL: [Self; 4] = [
        Self::Sqlite,
        Self::PgDatabase,
        Self::PgSchema,
        Self::PgShared,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::PgDatabase => "pg-database",
            Self::PgSchema => "pg-schema",
            Self::PgShared => "pg-shared",
        }
    }
}

impl FromStr for IsolationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown isolation mode '{s}' (sqlite, pg-database, pg-schema, pg-shared)")
            })
    }
}

impl fmt::Display for IsolationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a domain is the platform subdomain or one the tenant brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DomainKind {
    /// `{slug}.{base_domain}`, derived from the slug.
    Subdomain,
    /// A custom domain, unique across tenants.
    Custom,
}

/// A domain a tenant is reachable at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Domain {
    /// The host name.
    pub name: DomainName,
    /// Subdomain or custom.
    pub kind: DomainKind,
}

/// How a tenant presents itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// Name shown in the tenant's UI (defaults to the tenant's display name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// An `https://` URL of the logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// Primary colour, `#rgb` or `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    /// Secondary colour, `#rgb` or `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_color: Option<String>,
}

fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| (h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks a human-readable name: 1–200 characters after trimming, no control characters.
pub fn validate_display_name(pointer: &str, s: &str, errs: &mut ValidationErrors) {
    let t = s.trim();
    if t.is_empty() {
        errs.push(pointer, "must not be empty");
    } else if t.chars().count() > 200 {
        errs.push(pointer, "must be at most 200 characters");
    } else if t.chars().any(char::is_control) {
        errs.push(pointer, "must not contain control characters");
    }
}

impl Branding {
    /// Validates every field; pointers are relative to `prefix`.
    pub fn validate(&self, prefix: &str, errs: &mut ValidationErrors) {
        if let Some(n) = &self.display_name {
            validate_display_name(&format!("{prefix}/display_name"), n, errs);
        }
        if let Some(u) = &self.logo_url {
            let ok = u.len() <= 2048
                && u.strip_prefix("https://").is_some_and(|rest| {
                    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                    !host.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
                });
            if !ok {
                errs.push(
                    format!("{prefix}/logo_url"),
                    "must be an https:// URL of at most 2048 characters",
                );
            }
        }
        for (name, v) in [
            ("primary_color", &self.primary_color),
            ("secondary_color", &self.secondary_color),
        ] {
            if let Some(c) = v
                && !is_hex_color(c)
            {
                errs.push(
                    format!("{prefix}/{name}"),
                    "must be a colour like #0a7d5c or #fff",
                );
            }
        }
    }
}

/// Free-form tenant settings: a JSON object of bounded size and depth.
pub type Settings = serde_json::Map<String, serde_json::Value>;

/// Maximum serialized size of a tenant's settings.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;
const MAX_SETTINGS_DEPTH: usize = 16;

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A tenant's labels: key → value.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Most labels on one tenant.
pub const MAX_LABELS: usize = 32;

/// Validates labels: at most 32; keys of 1-63 characters `a-z 0-9 . _ -` starting with a
/// letter or digit; values of at most 128 printable characters.
pub fn validate_labels(pointer: &str, labels: &Labels, errs: &mut ValidationErrors) {
    if labels.len() > MAX_LABELS {
        errs.push(pointer, format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in labels {
        let kb = k.as_bytes();
        let key_ok = (1..=63).contains(&kb.len())
            && (kb[0].is_ascii_lowercase() || kb[0].is_ascii_digit())
            && kb
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c));
        if !key_ok {
            errs.push(
                format!("{pointer}/{}", k.chars().take(63).collect::<String>()),
                "label keys are 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            );
        }
        if v.chars().count() > 128 || v.chars().any(char::is_control) {
            errs.push(
                format!("{pointer}/{}", k.chars().take(63).collect::<String>()),
                "label values are at most 128 printable characters",
            );
        }
    }
}

/// Validates settings: size, nesting depth and key length.
pub fn validate_settings(pointer: &str, s: &Settings, errs: &mut ValidationErrors) {
    let size = serde_json::to_vec(s).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_SETTINGS_BYTES {
        errs.push(
            pointer,
            format!("must serialize to at most {MAX_SETTINGS_BYTES} bytes"),
        );
    }
    let obj = serde_json::Value::Object(s.clone());
    if depth(&obj) > MAX_SETTINGS_DEPTH {
        errs.push(
            pointer,
            format!("must nest at most {MAX_SETTINGS_DEPTH} levels deep"),
        );
    }
    for k in s.keys() {
        if k.is_empty() || k.len() > 128 {
            errs.push(format!("{pointer}/{k}"), "keys must be 1 to 128 characters");
        }
    }
}

/// A tenant as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Immutable identity.
    pub id: TenantId,
    /// Unique, immutable, URL-safe name.
    pub slug: Slug,
    /// Human-readable name.
    pub display_name: String,
    /// Kind of organisation.
    pub profile: Profile,
    /// The plan it is on.
    pub plan: PlanName,
    /// Where its data lives.
    pub isolation: IsolationMode,
    /// The database server it is placed on (`None` for embedded storage).
    pub placement: Option<String>,
    /// Custom domains (the platform subdomain is derived from the slug, not stored).
    pub custom_domains: Vec<DomainName>,
    /// Presentation.
    pub branding: Branding,
    /// Free-form settings.
    pub settings: Settings,
    /// Labels for reports (`department`, `region`, `cost-center`, …): cost reports
    /// aggregate and filter by `label:<key>`.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Why it is in its status (failures, suspensions).
    pub status_reason: Option<String>,
    /// The status to return to when restored from `deleting`.
    pub restore_to: Option<TenantStatus>,
    /// When a `deleting` tenant becomes `deleted`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delete_after: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version, incremented on every change.
    pub version: u64,
    /// Schema version of the tenant's data store (the number of migration steps applied),
    /// kept here so fleet status is answered from the catalog alone.
    #[serde(default)]
    pub schema_version: u32,
    /// Provisioning and deletion steps completed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// Data to seed into the tenant's store when it is provisioned.
    #[serde(default, skip_serializing_if = "TenantSeed::is_empty")]
    pub seed: TenantSeed,
}

/// A step of the provisioning pipeline or of the final deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProvisionStep {
    /// The tenant's store (file, database, schema or shared tables) exists.
    StoreCreated,
    /// Its migrations were run (or verified) up to the binary's schema version.
    Migrated,
    /// Default data was seeded.
    Seeded,
    /// Identity was set up: roles, a signing key, the first administrator.
    IdentityReady,
    /// The tenant was activated.
    Activated,
    /// The store was dropped after the deletion grace period.
    StoreDropped,
}

impl ProvisionStep {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StoreCreated => "store-created",
            Self::Migrated => "migrated",
            Self::Seeded => "seeded",
            Self::IdentityReady => "identity-ready",
            Self::Activated => "activated",
            Self::StoreDropped => "store-dropped",
        }
    }
}

/// A completed step and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    /// The step.
    pub step: ProvisionStep,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// Data given at creation and seeded into the tenant's store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSeed {
    /// Department names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
    /// E-mail of the first tenant administrator, created at provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<crate::Email>,
}

impl TenantSeed {
    /// Whether there is nothing to seed.
    pub fn is_empty(&self) -> bool {
        self.departments.is_empty() && self.admin_email.is_none()
    }
}

impl Tenant {
    /// A new tenant record in `provisioning`, version 1, with no domains, default branding
    /// and empty settings.
    pub fn new(
        slug: Slug,
        display_name: String,
        profile: Profile,
        plan: PlanName,
        isolation: IsolationMode,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: TenantId::new(),
            slug,
            display_name,
            profile,
            plan,
            isolation,
            placement: None,
            custom_domains: Vec::new(),
            branding: Branding::default(),
            settings: Settings::new(),
            labels: Labels::new(),
            status: TenantStatus::Provisioning,
            status_reason: None,
            restore_to: None,
            delete_after: None,
            created_at: now,
            updated_at: now,
            version: 1,
            schema_version: 0,
            steps: Vec::new(),
            seed: TenantSeed::default(),
        }
    }

    /// Whether `step` has completed.
    pub fn has_step(&self, step: ProvisionStep) -> bool {
        self.steps.iter().any(|s| s.step == step)
    }

    /// Records `step` as completed at `at` (once).
    pub fn record_step(&mut self, step: ProvisionStep, at: OffsetDateTime) {
        if !self.has_step(step) {
            self.steps.push(StepRecord { step, at });
        }
    }

    /// The platform subdomain of this tenant under `base_domain`.
    pub fn subdomain(&self, base_domain: &str) -> Option<DomainName> {
        format!("{}.{}", self.slug, base_domain).parse().ok()
    }

    /// All domains: the platform subdomain first, then the custom ones.
    pub fn domains(&self, base_domain: &str) -> Vec<Domain> {
        self.subdomain(base_domain)
            .map(|name| Domain {
                name,
                kind: DomainKind::Subdomain,
            })
            .into_iter()
            .chain(self.custom_domains.iter().map(|d| Domain {
                name: d.clone(),
                kind: DomainKind::Custom,
            }))
            .collect()
    }
}

/// How an API path names a tenant: by UUID or by slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    /// By immutable id.
    Id(TenantId),
    /// By slug.
    Slug(Slug),
}

impl FromStr for TenantRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.parse::<TenantId>() {
            return Ok(Self::Id(id));
        }
        s.parse::<Slug>()
            .map(Self::Slug)
            .map_err(|_| format!("'{s}' is neither a tenant id nor a valid slug"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branding_validation() {
        let mut e = ValidationErrors::new();
        Branding {
            display_name: Some("Hospital".into()),
            logo_url: Some("https://cdn.example.org/logo.svg".into()),
            primary_color: Some("#0a7d5c".into()),
            secondary_color: Some("#fff".into()),
        }
        .validate("/branding", &mut e);
        assert!(e.is_empty(), "{e}");
        let mut e = ValidationErrors::new();
        Branding {
            display_name: Some(" ".into()),
            logo_url: Some("javascript:alert(1)".into()),
            primary_color: Some("red".into()),
            secondary_color: Some("#12345".into()),
        }
        .validate("/branding", &mut e);
        assert_eq!(e.0.len(), 4);
    }

    #[test]
    fn settings_limits() {
        let mut deep = serde_json::json!(1);
        for _ in 0..20 {
            deep = serde_json::json!([deep]);
        }
        let mut s = Settings::new();
        s.insert("x".into(), deep);
        let mut e = ValidationErrors::new();
        validate_settings("/settings", &s, &mut e);
        assert_eq!(e.0.len(), 1);
        let mut s = Settings::new();
        s.insert("big".into(), serde_json::Value::String("a".repeat(70_000)));
        let mut e = ValidationErrors::new();
        validate_settings("/settings", &s, &mut e);
        assert_eq!(e.0.len(), 1);
    }

    #[test]
    fn tenant_ref_parsing() {
        assert!(matches!(
            "abc-def".parse::<TenantRef>(),
            Ok(TenantRef::Slug(_))
        ));
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantRef>(), Ok(TenantRef::Id(id)));
        assert!("A!".parse::<TenantRef>().is_err());
    }
}
