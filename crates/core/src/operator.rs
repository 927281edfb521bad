//! Platform operators: staff who run the platform, separate from tenant users.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::OperatorId;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorRole {
    /// Everything on the control plane.
    PlatformAdmin,
    /// Read-only access (tenants, plans, costs).
    BillingViewer,
    /// A service reporting usage (`POST /api/v1/usage/events`) and nothing else.
    UsageReporter,
}

impl OperatorRole {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlatformAdmin => "platform-admin",
            Self::BillingViewer => "billing-viewer",
            Self::UsageReporter => "usage-reporter",
        }
    }

    /// Whether this role may read and use the control-plane API (a usage reporter may only
    /// report usage).
    pub fn can_read(self) -> bool {
        !matches!(self, Self::UsageReporter)
    }

    /// Whether this role may report usage events.
    pub fn can_report_usage(self) -> bool {
        matches!(self, Self::PlatformAdmin | Self::UsageReporter)
    }

    /// Whether this role may change state.
    pub fn can_write(self) -> bool {
        matches!(self, Self::PlatformAdmin)
    }
}

impl FromStr for OperatorRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::PlatformAdmin,
            Self::BillingViewer,
            Self::UsageReporter,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| {
            format!("unknown role '{s}' (platform-admin, billing-viewer, usage-reporter)")
        })
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validates an operator name: 1–64 characters of `a-z 0-9 . _ - @`.
pub fn validate_operator_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err("operator name must be 1 to 64 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b))
    {
        return Err("operator name may contain only a-z, 0-9, '.', '_', '-' and '@'".into());
    }
    Ok(())
}

/// An operator account as stored. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Identity; also the public part of the operator's token.
    pub id: OperatorId,
    /// Unique login name.
    pub name: String,
    /// Role.
    pub role: OperatorRole,
    /// Hex SHA-256 of the secret part of the token.
    pub token_hash: String,
    /// Disabled operators cannot authenticate.
    pub disabled: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
