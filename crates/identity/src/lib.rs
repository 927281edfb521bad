//! Tenant identity: the accounts of each tenant's people, kept in the tenant's own store so
//! they move, back up and erase with it.
//!
//! - [`schema`]: the `identity` component's migrations (users, roles, refresh tokens,
//!   signing keys), one per dialect; PostgreSQL tables carry `tenant_id` under forced RLS;
//! - [`password`]: Argon2id hashing and verification on the blocking pool behind a
//!   semaphore, with a dummy hash so unknown accounts cost the same as wrong passwords;
//! - [`users`] and [`roles`]: user records (e-mail unique per tenant, roles, departments,
//!   disabled, one-time passwords) and roles as data;
//! - [`sessions`]: opaque 256-bit refresh tokens stored as SHA-256 hashes, rotated on every
//!   use; replaying a used one revokes its whole family;
//! - [`keys`]: the platform key that seals each tenant's private signing keys
//!   (XChaCha20-Poly1305), per-tenant Ed25519 signing keys with rotation and overlap, the
//!   JWKS, and an in-memory keyring cache;
//! - [`tokens`]: access JWTs (`typ: at+jwt`, EdDSA, `iss` naming the tenant) and their
//!   verification, with the failure classified (expired, foreign tenant, bad signature…),
//!   and a cache of verified tokens;
//! - [`sso`]: per-tenant OpenID Connect sign-in (authorization code + PKCE, ID-token
//!   validation against the provider's JWKS, claim mapping) and its stored settings.
//!
//! [`Identity`] ties them together; every operation takes a [`TenantDb`] handle, which only
//! exists for a resolved tenant.

pub mod keys;
pub mod password;
pub mod roles;
pub mod schema;
pub mod service;
pub mod sessions;
pub mod sso;
pub mod tokens;
pub mod user_admin;
pub mod users;

pub use service::{Identity, IdentityConfig, LoginOutcome, PasswordChange, RefreshOutcome, Tokens};

use tenantplane_tenant_data::DataError;

/// Errors of identity operations.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The tenant store failed (busy, unavailable, a database error).
    #[error(transparent)]
    Data(#[from] DataError),
    /// An e-mail address already has an account in this tenant.
    #[error("an account with this e-mail address exists")]
    EmailTaken,
    /// No such user (in this tenant).
    #[error("user not found")]
    NotFound,
    /// The record changed since it was read.
    #[error("version mismatch (current {current})")]
    VersionMismatch {
        /// Current version.
        current: u64,
    },
    /// The plan's user quota is used up.
    #[error("user quota exceeded ({current} of {limit})")]
    QuotaExceeded {
        /// The plan's limit.
        limit: u64,
        /// Users now.
        current: u64,
    },
    /// A single sign-on failure.
    #[error(transparent)]
    Sso(#[from] sso::SsoError),
    /// A crypto or encoding failure (keys that do not open, a corrupted record).
    #[error("identity internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for IdentityError {
    fn from(e: rusqlite::Error) -> Self {
        IdentityError::Data(DataError::from(e))
    }
}

/// Result alias.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

pub use tenantplane_tenant_data::TenantDb;

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
