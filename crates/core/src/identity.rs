//! Tenant identity: e-mail addresses, roles as data with permissions, the password policy,
//! and the wire types of the tenant authentication and user-management APIs.
//!
//! Pure logic: the identity crate stores users in each tenant's own store and signs tokens.

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::{UserId, names::NameError};

/// Longest password accepted (bytes). Longer inputs are refused before hashing, so an
/// attacker cannot make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Shortest password accepted (characters).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest e-mail address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// A tenant user's e-mail address, normalised to lowercase ASCII.
///
/// Non-ASCII addresses are refused (internationalised domains go in their `xn--` form):
/// this makes look-alike addresses (`аdmin@…` with a Cyrillic `а`) impossible instead of
/// merely unlikely, and the address is the login name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Email)]
pub struct Email(String);

impl Email {
    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = NameError;

    fn from_str(raw: &str) -> Result<Self, NameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(NameError("must not be empty".into()));
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(NameError(format!(
                "must be at most {MAX_EMAIL_LEN} characters"
            )));
        }
        if !s.is_ascii() {
            return Err(NameError(
                "must be ASCII (write internationalised domains in their xn-- form)".into(),
            ));
        }
        let s = s.to_ascii_lowercase();
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or_else(|| NameError("must look like name@example.org".into()))?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&b));
        if !local_ok {
            return Err(NameError(
                "the part before @ has characters that are not allowed".into(),
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !domain_ok {
            return Err(NameError("the domain after @ is not valid".into()));
        }
        Ok(Self(s))
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A role's name: 1–40 lowercase letters, digits or `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct RoleName(String);

impl RoleName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RoleName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError(
                "role names are 1-40 lowercase letters, digits or '-', starting with a letter"
                    .into(),
            ))
        }
    }
}

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a role allows. Roles are data (stored per tenant); permissions are the fixed
/// vocabulary the code checks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Permission {
    /// Create, change, disable users and revoke their sessions.
    #[serde(rename = "users:manage")]
    UsersManage,
    /// List users.
    #[serde(rename = "users:read")]
    UsersRead,
    /// Change departments and tenant settings.
    #[serde(rename = "directory:manage")]
    DirectoryManage,
    /// Read clinical (or primary) records.
    #[serde(rename = "records:read")]
    RecordsRead,
    /// Write clinical (or primary) records.
    #[serde(rename = "records:write")]
    RecordsWrite,
    /// Read the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Manage identity settings: signing keys, single sign-on.
    #[serde(rename = "identity:manage")]
    IdentityManage,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 7] = [
        Permission::UsersManage,
        Permission::UsersRead,
        Permission::DirectoryManage,
        Permission::RecordsRead,
        Permission::RecordsWrite,
        Permission::AuditRead,
        Permission::IdentityManage,
    ];

    /// The wire name, e.g. `users:manage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsersManage => "users:manage",
            Self::UsersRead => "users:read",
            Self::DirectoryManage => "directory:manage",
            Self::RecordsRead => "records:read",
            Self::RecordsWrite => "records:write",
            Self::AuditRead => "audit:read",
            Self::IdentityManage => "identity:manage",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role: a name and the permissions it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Role {
    /// Stable name, e.g. `clinician`.
    pub name: RoleName,
    /// Human-readable name.
    pub display_name: String,
    /// What it allows.
    pub permissions: BTreeSet<Permission>,
}

/// The name of the role every tenant's first administrator gets.
pub const TENANT_ADMIN: &str = "tenant-admin";

/// The roles every tenant starts with (seeded into its store at provisioning).
pub fn builtin_roles() -> Vec<Role> {
    use Permission as P;
    let mk = |name: &str, display: &str, perms: &[Permission]| Role {
        name: RoleName(name.to_owned()),
        display_name: display.to_owned(),
        permissions: perms.iter().copied().collect(),
    };
    vec![
        mk(TENANT_ADMIN, "Tenant administrator", &Permission::ALL),
        mk(
            "clinician",
            "Clinician",
            &[P::RecordsRead, P::RecordsWrite, P::UsersRead],
        ),
        mk("nurse", "Nurse", &[P::RecordsRead, P::RecordsWrite]),
        mk("staff", "Staff", &[P::UsersRead]),
        mk(
            "auditor",
            "Auditor (read-only)",
            &[P::RecordsRead, P::UsersRead, P::AuditRead],
        ),
    ]
}

/// The built-in roles a tenant of `profile` is provisioned with: clinical roles
/// (`clinician`, `nurse`) only for hospitals; everyone has `tenant-admin`, `staff` and
/// `auditor`.
pub fn builtin_roles_for(profile: crate::Profile) -> Vec<Role> {
    let clinical = profile == crate::Profile::Hospital;
    builtin_roles()
        .into_iter()
        .filter(|r| clinical || !matches!(r.name.0.as_str(), "clinician" | "nurse"))
        .collect()
}

const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "password1234",
    "passwordpassword",
    "qwertyuiopas",
    "administrator",
    "changeme1234",
    "letmein12345",
    "welcome12345",
    "iloveyou1234",
    "hospital1234",
    "tenantplane1",
];

/// Checks a new password against the policy: 12 characters to 256 bytes, not a well-known
/// password, not built from the e-mail address, at least 5 distinct characters. The message
/// is safe to show.
pub fn check_password_policy(pw: &str, email: Option<&Email>) -> Result<(), String> {
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    let chars = pw.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if pw.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let distinct: BTreeSet<char> = pw.chars().collect();
    if distinct.len() < 5 {
        return Err("must use at least 5 different characters".into());
    }
    let lower = pw.to_lowercase();
    if COMMON_PASSWORDS.iter().any(|c| lower == *c) {
        return Err("is a well-known password".into());
    }
    if let Some(e) = email {
        let local = e.as_str().split('@').next().unwrap_or_default();
        if local.len() >= 4 && lower.contains(local) {
            return Err("must not contain the e-mail address".into());
        }
    }
    Ok(())
}

/// `POST /auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user's e-mail address.
    pub email: String,
    /// The password.
    pub password: String,
}

/// Tokens issued by login and refresh.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// Short-lived access token (JWT signed with the tenant's key).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// One-time refresh token (opaque).
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
    /// The password is a one-time password and must be changed (`POST /auth/password`)
    /// before anything else is allowed.
    pub password_change_required: bool,
}

/// `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: String,
}

/// `POST /auth/password`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The current (or one-time) password.
    pub current_password: String,
    /// The new password (see the password policy).
    pub new_password: String,
}

/// A tenant user as the tenant API shows it (never with a password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    /// Identity.
    pub id: UserId,
    /// Login e-mail, unique within the tenant.
    pub email: Email,
    /// Name shown to others.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<RoleName>,
    /// Departments the user belongs to (ids of the tenant's departments).
    pub departments: Vec<uuid::Uuid>,
    /// Disabled users cannot log in and their sessions are revoked.
    pub disabled: bool,
    /// The password is a one-time password that must be changed.
    pub password_change_required: bool,
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
}

/// `POST /api/tenant/users`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login e-mail.
    pub email: String,
    /// Name shown to others (defaults to the e-mail address).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Department ids.
    #[serde(default)]
    pub departments: Vec<uuid::Uuid>,
}

/// `PATCH /api/tenant/users/{id}`: fields left out are unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// New roles (replaces the list).
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// New departments (replaces the list).
    #[serde(default)]
    pub departments: Option<Vec<uuid::Uuid>>,
    /// Disable (true) or enable (false). Disabling revokes every session.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// A user and a one-time password, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserCredentials {
    /// The user.
    pub user: UserView,
    /// One-time password; must be changed at first login. Never stored in clear, never
    /// shown again.
    pub one_time_password: String,
}

/// A page of users.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserList {
    /// Users, by e-mail.
    pub items: Vec<UserView>,
    /// Cursor for the next page.
    pub next_cursor: Option<String>,
}

/// The roles of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleList {
    /// Roles by name.
    pub items: Vec<Role>,
}

/// `POST /api/v1/tenants/{t}/admin`: create or reset a tenant administrator.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminReset {
    /// The administrator's e-mail; when omitted, the tenant's first administrator.
    #[serde(default)]
    pub email: Option<String>,
}

/// The answer to an admin reset: who, and the one-time password (shown once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdminCredentials {
    /// The tenant.
    pub tenant: crate::TenantId,
    /// The administrator.
    pub user_id: UserId,
    /// Login e-mail.
    pub email: Email,
    /// Whether the account was created (false: an existing one was reset and re-enabled).
    pub created: bool,
    /// One-time password; must be changed at first login.
    pub one_time_password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_confusables_refused() {
        let e: Email = "  Ana.Silva+er@Hospital.Example ".parse().unwrap();
        assert_eq!(e.as_str(), "ana.silva+er@hospital.example");
        for bad in [
            "",
            "no-at",
            "a@b",
            "a@@b.org",
            ".a@b.org",
            "a..b@c.org",
            "a@-b.org",
            "a b@c.org",
            "\u{0430}dmin@hospital.example", // Cyrillic а
            "admin@hospit\u{0430}l.example",
            "admin@xn--.example",
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad:?} accepted");
        }
        assert!(
            format!("{}@x.org", "a".repeat(65))
                .parse::<Email>()
                .is_err()
        );
        assert!("user@xn--hospital-2za.example".parse::<Email>().is_ok());
    }

    #[test]
    fn role_names() {
        assert!("tenant-admin".parse::<RoleName>().is_ok());
        for bad in ["", "Admin", "1x", "a_b", &"a".repeat(41)] {
            assert!(bad.parse::<RoleName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn builtin_roles_cover_the_seed_roles() {
        let roles = builtin_roles();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["tenant-admin", "clinician", "nurse", "staff", "auditor"]
        );
        let auditor = &roles[4];
        assert!(!auditor.permissions.contains(&Permission::RecordsWrite));
        assert!(roles[0].permissions.len() == Permission::ALL.len());
        let json = serde_json::to_value(&roles[2]).unwrap();
        assert_eq!(
            json["permissions"],
            serde_json::json!(["records:read", "records:write"])
        );
    }

    #[test]
    fn password_policy() {
        let e: Email = "maria.santos@h.example".parse().unwrap();
        assert!(check_password_policy("correct horse battery", Some(&e)).is_ok());
        assert!(check_password_policy("short", None).is_err());
        assert!(check_password_policy("aaaaaaaaaaaaaaaa", None).is_err());
        assert!(check_password_policy("Password1234", None).is_err());
        assert!(check_password_policy("maria.santos-2026!", Some(&e)).is_err());
        assert!(check_password_policy(&"x1y2z3w4v5".repeat(30), None).is_err());
        assert!(check_password_policy("tab\tinside password", None).is_err());
    }
}
