//! The stored form of an audit event: one [`Entry`] per row of a tenant's `audit_log`, in the
//! vocabulary of FHIR's `AuditEvent` (action code C/R/U/D/E, outcome 0/4/8/12) so the same
//! row is served as a resource without translation tables.
//!
//! Entries hold ids, names of actions and addresses — never record content, tokens or
//! passwords.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AuditEvent, ClinicalAccess, ClinicalAction, SecurityEvent};

/// What kind of event an entry records (FHIR `AuditEvent.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A clinical record was read or written (`rest`).
    Clinical,
    /// A denied cross-tenant attempt, a replayed refresh token, a lockout (`security-alert`).
    Security,
    /// Sign-ins and sessions (`user-authentication`).
    Login,
    /// Users, roles, departments and SSO changed by the tenant's administrators (`admin`).
    Admin,
    /// A platform operator acted on the tenant (`operator`).
    Operator,
}

impl Category {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clinical => "clinical",
            Self::Security => "security",
            Self::Login => "login",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }

    /// Parses a stored label.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "clinical" => Self::Clinical,
            "security" => Self::Security,
            "login" => Self::Login,
            "admin" => Self::Admin,
            "operator" => Self::Operator,
            _ => return None,
        })
    }
}

/// FHIR `AuditEvent.outcome`: 0 success, 4 minor failure (refused), 8 serious failure
/// (denied as an attack), 12 major failure (the server failed).
pub fn outcome_of_status(status: u16) -> u8 {
    match status {
        0..=399 => 0,
        400..=499 => 4,
        _ => 12,
    }
}

/// One audit entry as stored (before its place in the chain is known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it happened, milliseconds since the epoch.
    pub recorded_ms: i64,
    /// What kind of event.
    pub category: Category,
    /// What exactly (`read`, `create`, `login-failed`, `foreign-token`, `tenant-suspend`…).
    pub action: String,
    /// FHIR action code: `C`, `R`, `U`, `D` or `E`.
    pub code: String,
    /// FHIR outcome: 0, 4, 8 or 12.
    pub outcome: u8,
    /// Who: `user/<uuid>`, `operator/<name>`, `tenant/<uuid>` (a foreign tenant's
    /// credential) or `anonymous`.
    pub agent: String,
    /// What it concerned: `Patient/<id>`, `Patient/<id>/_history/<n>`, `User/<uuid>`,
    /// `Tenant`… (FHIR `AuditEvent.entity.what`).
    pub entity: Option<String>,
    /// From where (the client's address).
    pub peer: Option<String>,
    /// The request it came from.
    pub request_id: Option<String>,
    /// A small JSON object of ids and names, never content.
    pub detail: Option<String>,
}

impl Entry {
    /// An entry recorded now.
    pub fn now(category: Category, action: &str, code: &str, agent: String) -> Self {
        Self {
            recorded_ms: now_ms(),
            category,
            action: action.to_owned(),
            code: code.to_owned(),
            outcome: 0,
            agent,
            entity: None,
            peer: None,
            request_id: None,
            detail: None,
        }
    }

    /// With an entity.
    pub fn entity(mut self, e: impl Into<String>) -> Self {
        self.entity = Some(e.into());
        self
    }

    /// With an outcome.
    pub fn outcome(mut self, o: u8) -> Self {
        self.outcome = o;
        self
    }

    /// With the request's origin.
    pub fn origin(mut self, peer: Option<String>, request_id: Option<String>) -> Self {
        self.peer = peer;
        self.request_id = request_id;
        self
    }

    /// With a detail object.
    pub fn detail(mut self, d: &serde_json::Value) -> Self {
        self.detail = Some(d.to_string());
        self
    }

    /// When it happened.
    pub fn recorded(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.recorded_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The entry of an event.
    pub fn of(ev: &AuditEvent) -> Self {
        match ev {
            AuditEvent::Security(s) => Self::of_security(s),
            AuditEvent::Clinical(c) => Self::of_access(c),
            AuditEvent::Activity(a) => a.entry.clone(),
        }
    }

    fn of_security(s: &SecurityEvent) -> Self {
        let agent = match (s.user_id, &s.claimed_tenant) {
            (Some(u), _) => format!("user/{u}"),
            (None, Some(t)) => format!("tenant/{}", truncate(t, 64)),
            (None, None) => "anonymous".to_owned(),
        };
        Self {
            recorded_ms: ms(s.at),
            category: Category::Security,
            action: s.kind.as_str().to_owned(),
            code: "E".to_owned(),
            outcome: 8,
            agent,
            entity: None,
            peer: s.peer.map(|p| p.to_string()),
            request_id: s.request_id.clone(),
            detail: None,
        }
    }

    fn of_access(c: &ClinicalAccess) -> Self {
        let agent = match (&c.user_id, &c.operator) {
            (Some(u), _) => format!("user/{u}"),
            (None, Some(o)) => format!("operator/{}", truncate(o, 64)),
            (None, None) => "anonymous".to_owned(),
        };
        let entity = if c.resource_id.is_empty() {
            c.resource_type.to_owned()
        } else {
            format!("{}/{}", c.resource_type, truncate(&c.resource_id, 64))
        };
        Self {
            recorded_ms: ms(c.at),
            category: Category::Clinical,
            action: c.action.as_str().to_owned(),
            code: code_of(c.action).to_owned(),
            outcome: outcome_of_status(c.status),
            agent,
            entity: Some(entity),
            peer: c.peer.map(|p| p.to_string()),
            request_id: c.request_id.clone(),
            detail: None,
        }
    }
}

/// FHIR's action code of a clinical action.
pub fn code_of(a: ClinicalAction) -> &'static str {
    match a {
        ClinicalAction::Create => "C",
        ClinicalAction::Update => "U",
        ClinicalAction::Delete => "D",
        ClinicalAction::Search => "E",
        ClinicalAction::Read | ClinicalAction::Vread | ClinicalAction::History => "R",
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    ms(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use tenantplane_core::TenantId;

    use super::*;
    use crate::EventKind;

    #[test]
    fn events_map_to_fhir_codes_and_outcomes() {
        let c = ClinicalAccess {
            at: OffsetDateTime::UNIX_EPOCH,
            tenant_id: TenantId::new(),
            user_id: None,
            operator: Some("ops".into()),
            action: ClinicalAction::Update,
            resource_type: "Patient",
            resource_id: "p1".into(),
            status: 412,
            peer: None,
            request_id: Some("r".into()),
            in_store: false,
        };
        let e = Entry::of(&AuditEvent::Clinical(c));
        assert_eq!(
            (e.code.as_str(), e.outcome, e.agent.as_str()),
            ("U", 4, "operator/ops")
        );
        assert_eq!(e.entity.as_deref(), Some("Patient/p1"));
        let s = Entry::of(&AuditEvent::Security(SecurityEvent::new(
            EventKind::ForeignToken,
        )));
        assert_eq!(
            (s.category, s.code.as_str(), s.outcome),
            (Category::Security, "E", 8)
        );
        assert_eq!(outcome_of_status(500), 12);
        assert_eq!(Category::parse("login"), Some(Category::Login));
        assert_eq!(Category::parse("x"), None);
    }
}
