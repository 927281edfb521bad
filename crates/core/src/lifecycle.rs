//! The tenant lifecycle as an explicit state machine.
//!
//! ```text
//! provisioning ──► active ◄──► suspended
//!                    │            │
//!                    └──► deleting ◄┘   (grace period; restore returns to the prior state)
//!                           │
//!                           ▼
//!                        deleted
//! any state but deleted ──► failed (with a reason); failed ──► provisioning | deleting
//! ```

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TenantStatus {
    /// Its stores are being created; not served yet.
    Provisioning,
    /// Served normally.
    Active,
    /// Kept but refused (403 `tenant-suspended`).
    Suspended,
    /// Scheduled for deletion after a grace period; restorable; refused (410).
    Deleting,
    /// Gone for good (410). Terminal.
    Deleted,
    /// Something went wrong; `status_reason` says what.
    Failed,
}

impl TenantStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TenantStatus; 6] = [
        Self::Provisioning,
        Self::Active,
        Self::Suspended,
        Self::Deleting,
        Self::Deleted,
        Self::Failed,
    ];

    /// The statuses this one may move to.
    pub fn allowed_next(self) -> &'static [TenantStatus] {
        use TenantStatus::*;
        match self {
            Provisioning => &[Active, Failed],
            Active => &[Suspended, Deleting, Failed],
            Suspended => &[Active, Deleting, Failed],
            Deleting => &[Active, Suspended, Deleted, Failed],
            Deleted => &[],
            Failed => &[Provisioning, Deleting],
        }
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_move_to(self, to: TenantStatus) -> bool {
        self.allowed_next().contains(&to)
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown tenant status '{s}'"))
    }
}

/// An operator's (or the system's) request to move a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TenantAction {
    /// provisioning → active (end of the provisioning pipeline).
    Activate,
    /// active → suspended.
    Suspend,
    /// suspended → active.
    Resume,
    /// active/suspended/failed → deleting.
    Delete,
    /// deleting → the status it had before deletion.
    Restore,
    /// deleting → deleted (after the grace period).
    Purge,
    /// any → failed.
    Fail,
    /// failed → provisioning.
    Retry,
}

impl TenantAction {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::Purge => "purge",
            Self::Fail => "fail",
            Self::Retry => "retry",
        }
    }
}

/// A refused transition; carries what would have been allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a tenant that is {from}")]
pub struct IllegalTransition {
    /// The current status.
    pub from: TenantStatus,
    /// The requested action.
    pub action: &'static str,
    /// The statuses reachable from `from`.
    pub allowed: Vec<TenantStatus>,
}

/// Computes the target status of `action` from `from`. `restore_to` is the status the tenant
/// had before it entered `deleting`.
pub fn target_status(
    from: TenantStatus,
    action: TenantAction,
    restore_to: Option<TenantStatus>,
) -> Result<TenantStatus, IllegalTransition> {
    use TenantAction as A;
    use TenantStatus as S;
    let to = match (action, from) {
        (A::Activate, S::Provisioning) => Some(S::Active),
        (A::Suspend, S::Active) => Some(S::Suspended),
        (A::Resume, S::Suspended) => Some(S::Active),
        (A::Delete, S::Active | S::Suspended | S::Failed) => Some(S::Deleting),
        (A::Restore, S::Deleting) => Some(match restore_to {
            Some(S::Suspended) => S::Suspended,
            _ => S::Active,
        }),
        (A::Purge, S::Deleting) => Some(S::Deleted),
        (A::Fail, s) if s != S::Deleted && s != S::Failed => Some(S::Failed),
        (A::Retry, S::Failed) => Some(S::Provisioning),
        _ => None,
    };
    match to {
        Some(to) if from.can_move_to(to) => Ok(to),
        _ => Err(IllegalTransition {
            from,
            action: action.as_str(),
            allowed: from.allowed_next().to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TenantAction as A;
    use TenantStatus as S;

    #[test]
    fn happy_paths() {
        assert_eq!(
            target_status(S::Provisioning, A::Activate, None),
            Ok(S::Active)
        );
        assert_eq!(target_status(S::Active, A::Suspend, None), Ok(S::Suspended));
        assert_eq!(target_status(S::Suspended, A::Resume, None), Ok(S::Active));
        assert_eq!(
            target_status(S::Suspended, A::Delete, None),
            Ok(S::Deleting)
        );
        assert_eq!(
            target_status(S::Deleting, A::Restore, Some(S::Suspended)),
            Ok(S::Suspended)
        );
        assert_eq!(
            target_status(S::Deleting, A::Restore, Some(S::Active)),
            Ok(S::Active)
        );
        assert_eq!(target_status(S::Deleting, A::Purge, None), Ok(S::Deleted));
        assert_eq!(target_status(S::Active, A::Fail, None), Ok(S::Failed));
        assert_eq!(
            target_status(S::Failed, A::Retry, None),
            Ok(S::Provisioning)
        );
    }

    #[test]
    fn illegal_transitions_list_allowed_ones() {
        let e = target_status(S::Active, A::Resume, None).unwrap_err();
        assert_eq!(e.allowed, vec![S::Suspended, S::Deleting, S::Failed]);
        assert!(target_status(S::Deleted, A::Restore, None).is_err());
        assert!(target_status(S::Deleted, A::Fail, None).is_err());
        assert!(target_status(S::Provisioning, A::Suspend, None).is_err());
        assert!(target_status(S::Active, A::Purge, None).is_err());
    }

    #[test]
    fn every_action_result_is_in_the_allowed_table() {
        let actions = [
            A::Activate,
            A::Suspend,
            A::Resume,
            A::Delete,
            A::Restore,
            A::Purge,
            A::Fail,
            A::Retry,
        ];
        for from in S::ALL {
            for a in actions {
                if let Ok(to) = target_status(from, a, None) {
                    assert!(from.can_move_to(to), "{from} -{a:?}-> {to}");
                }
            }
        }
    }

    #[test]
    fn status_parses() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
        }
        assert!("gone".parse::<S>().is_err());
    }
}
