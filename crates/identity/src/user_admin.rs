//! The rules of user administration, apart from any transport: what a display name may be,
//! which roles a request may give, how many departments, and what an administrator may not
//! do to their own account (disable it, drop their own `tenant-admin` role).

use tenantplane_core::{Role, RoleName, UserId, ValidationErrors, identity::TENANT_ADMIN};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::users::UserRecord;

/// Most departments one user may belong to.
pub const MAX_DEPARTMENTS: usize = 100;

/// A display name: `raw` trimmed, else `fallback`; 1–200 characters without control
/// characters (else an error at `/display_name`).
pub fn display_name(raw: Option<&str>, fallback: &str, errs: &mut ValidationErrors) -> String {
    let n = raw.map(str::trim).unwrap_or(fallback);
    if n.is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) {
        errs.push(
            "/display_name",
            "1-200 characters without control characters",
        );
    }
    n.to_owned()
}

/// The roles a request names, each one of the tenant's `known` roles, at least one, without
/// repeats (errors at `/roles/{i}`).
pub fn resolve_roles(known: &[Role], raw: &[String], errs: &mut ValidationErrors) -> Vec<RoleName> {
    let mut out = Vec::new();
    if raw.is_empty() {
        errs.push("/roles", "give at least one role");
    }
    for (i, r) in raw.iter().enumerate() {
        let p = format!("/roles/{i}");
        match r.parse::<RoleName>() {
            Ok(n) if known.iter().any(|k| k.name == n) => {
                if !out.contains(&n) {
                    out.push(n)
                }
            }
            Ok(n) => errs.push(p, format!("no role named '{n}' in this tenant")),
            Err(e) => errs.push(p, e.to_string()),
        }
    }
    out
}

/// Checks the size of a department list (each id is checked against the tenant's
/// directory by the caller).
pub fn check_department_count(ds: &[Uuid], errs: &mut ValidationErrors) {
    if ds.len() > MAX_DEPARTMENTS {
        errs.push(
            "/departments",
            format!("at most {MAX_DEPARTMENTS} departments"),
        );
    }
}

/// A change to a user, as validated fields.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// New display name (raw; checked here).
    pub display_name: Option<String>,
    /// New roles (already resolved against the tenant's roles).
    pub roles: Option<Vec<RoleName>>,
    /// New departments (already checked against the directory).
    pub departments: Option<Vec<Uuid>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// Applies `change`, made by user `actor`, to `rec`: checks the display name and that the
/// actor neither disables their own account nor drops their own `tenant-admin` role, then
/// bumps the version. Returns whether the change disables the account (its sessions must be
/// revoked); on errors (added to `errs`) `rec` is unchanged.
pub fn apply_change(
    rec: &mut UserRecord,
    actor: UserId,
    change: UserChange,
    errs: &mut ValidationErrors,
) -> bool {
    let name = change
        .display_name
        .as_deref()
        .map(|n| display_name(Some(n), "", errs));
    let myself = rec.id == actor;
    if myself && change.disabled == Some(true) {
        errs.push("/disabled", "you cannot disable your own account");
    }
    if myself
        && let Some(roles) = &change.roles
        && !roles.iter().any(|r| r.as_str() == TENANT_ADMIN)
    {
        errs.push("/roles", "you cannot remove your own tenant-admin role");
    }
    if !errs.is_empty() {
        return false;
    }
    if let Some(n) = name {
        rec.display_name = n;
    }
    if let Some(r) = change.roles {
        rec.roles = r;
    }
    if let Some(mut d) = change.departments {
        d.dedup();
        rec.departments = d;
    }
    let disabling = change.disabled == Some(true) && !rec.disabled;
    if let Some(d) = change.disabled {
        rec.disabled = d;
    }
    rec.updated_at = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(rec.updated_at);
    rec.version += 1;
    disabling
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: UserId) -> UserRecord {
        UserRecord {
            id,
            email: "a@example.org".parse().unwrap_or_else(|_| unreachable!()),
            display_name: "A".into(),
            roles: vec![TENANT_ADMIN.parse().unwrap_or_else(|_| unreachable!())],
            departments: vec![],
            disabled: false,
            password_change_required: false,
            tokens_valid_after: 0,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            version: 1,
        }
    }

    #[test]
    fn an_administrator_cannot_lock_themselves_out() {
        let me = UserId::new();
        let mut r = rec(me);
        let mut errs = ValidationErrors::new();
        let change = UserChange {
            disabled: Some(true),
            roles: Some(vec!["clinician".parse().unwrap_or_else(|_| unreachable!())]),
            display_name: Some("B".into()),
            ..Default::default()
        };
        assert!(!apply_change(&mut r, me, change.clone(), &mut errs));
        let pointers: Vec<&str> = errs.0.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/disabled", "/roles"]);
        assert_eq!((r.version, r.display_name.as_str()), (1, "A"), "unchanged");
        // Another administrator may.
        let mut errs = ValidationErrors::new();
        assert!(apply_change(&mut r, UserId::new(), change, &mut errs));
        assert!(errs.is_empty());
        assert!(r.disabled);
        assert_eq!((r.version, r.display_name.as_str()), (2, "B"));
    }

    #[test]
    fn names_and_roles_are_checked() {
        let mut errs = ValidationErrors::new();
        assert_eq!(display_name(Some("  Ann "), "x", &mut errs), "Ann");
        display_name(Some("a\u{7}"), "x", &mut errs);
        assert_eq!(errs.0.len(), 1);
        let mut errs = ValidationErrors::new();
        assert!(resolve_roles(&[], &[], &mut errs).is_empty());
        assert_eq!(errs.0[0].pointer, "/roles");
    }
}
