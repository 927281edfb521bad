//! Wire types of the audit endpoints of the platform API: the verification of an audit
//! chain (a tenant's or the platform's) and the platform audit log of operators' actions.

use serde::{Deserialize, Serialize};

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The tenant (slug), for a tenant's log.
    pub tenant: Option<String>,
    /// `true` when the whole chain holds.
    pub intact: bool,
    /// Entries whose hash was checked.
    pub checked: u64,
    /// The last entry of the chain.
    pub head_seq: i64,
    /// Its hash (hex).
    pub head_hash: String,
    /// The signed checkpoint the walk started from (0: none, never pruned).
    pub checkpoint_seq: i64,
    /// Entries appended but not sealed (0 after a tenant verification, which seals first).
    pub unsealed: u64,
    /// Where the chain breaks first: `{"kind": "altered", "seq": 3}`, `gap` (`after`,
    /// `next`), `truncated` (`last`, `head`), `head-mismatch` (`head`), `bad-checkpoint`
    /// (`seq`).
    #[schema(value_type = Option<Object>)]
    pub broken: Option<serde_json::Value>,
}

/// One operator action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformAuditEntry {
    /// Place in the platform chain.
    pub seq: i64,
    /// When (RFC 3339).
    pub recorded: String,
    /// What (`tenant-suspend`, `plan-update:small`, …).
    pub action: String,
    /// FHIR action code.
    pub code: String,
    /// FHIR outcome (0 success, 4 refused, 12 failed).
    pub outcome: u8,
    /// Who (`operator/<name>`).
    pub agent: String,
    /// On what (`Tenant/<id>` or the route).
    pub entity: Option<String>,
    /// From where.
    pub peer: Option<String>,
    /// The request.
    pub request_id: Option<String>,
    /// Method, route and status.
    #[schema(value_type = Object)]
    pub detail: Option<serde_json::Value>,
}

/// A page of operator actions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformAuditPage {
    /// The entries.
    pub items: Vec<PlatformAuditEntry>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/audit` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlatformAuditParams {
    /// Only actions on this tenant (id or slug).
    pub tenant: Option<String>,
    /// Only actions of this operator.
    pub operator: Option<String>,
    /// Recorded at or after (RFC 3339).
    pub since: Option<String>,
    /// Recorded before (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}
