//! Standby stores: tenant stores provisioned ahead of demand (created, migrated, given a
//! signing key and the common roles) under an id minted for the tenant that will claim one.
//!
//! The catalog keeps one row per standby store. A row is written *before* its store is
//! created (`preparing`), so a crash while preparing leaves a row to resume, never an
//! unknown store; a store is claimable only once `ready` and at the claimer's schema
//! version; a claim deletes the row and inserts the tenant under the store's id in **one
//! transaction**, so a store is never handed out twice and never claimed without its tenant
//! being recorded. Retiring a store (the pool shrank) first marks it `retiring` — no longer
//! claimable — then drops the store, then deletes the row.

use tenantplane_core::{IsolationMode, TenantId};
use time::OffsetDateTime;

use crate::CatalogError;

/// Where a standby store is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StandbyState {
    /// Recorded; its store is being created and migrated.
    Preparing,
    /// Claimable (at its schema version).
    Ready,
    /// No longer claimable; its store is being dropped.
    Retiring,
}

impl StandbyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Ready => "ready",
            Self::Retiring => "retiring",
        }
    }
}

impl std::str::FromStr for StandbyState {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self, CatalogError> {
        Ok(match s {
            "preparing" => Self::Preparing,
            "ready" => Self::Ready,
            "retiring" => Self::Retiring,
            other => return Err(CatalogError::Internal(format!("standby state '{other}'"))),
        })
    }
}

/// One standby store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StandbyStore {
    /// The id its tenant will have (the store is named after it).
    pub id: TenantId,
    /// Isolation mode of the store.
    pub isolation: IsolationMode,
    /// Its database server (`None` for sqlite).
    pub placement: Option<String>,
    /// Schema version of the store (claims need the binary's).
    pub schema_version: u32,
    /// State.
    pub state: StandbyState,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl StandbyStore {
    /// A new store to prepare: `preparing`, schema version 0.
    pub fn new(isolation: IsolationMode, placement: Option<String>, at: OffsetDateTime) -> Self {
        Self {
            id: TenantId::new(),
            isolation,
            placement,
            schema_version: 0,
            state: StandbyState::Preparing,
            updated_at: at,
        }
    }
}

/// The placement column's key: the server name, or empty for sqlite (so equality works).
pub(crate) fn placement_key(p: &Option<String>) -> &str {
    p.as_deref().unwrap_or("")
}

/// The placement from its column.
pub(crate) fn placement_of(k: String) -> Option<String> {
    (!k.is_empty()).then_some(k)
}
