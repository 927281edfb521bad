//! Access tokens: short-lived JWTs (RFC 9068 `at+jwt`) signed with the tenant's own key.
//!
//! `iss` is `urn:tenantplane:tenant:{tenant_id}` and `tid` repeats the tenant, so a token of
//! tenant A is meaningless on tenant B twice over: B's keys do not verify it and its issuer
//! is not B. Verification failures are classified so the edge can count cross-tenant
//! attempts without telling the client anything more than 401.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use tenantplane_core::{RoleName, TenantId, UserId};
use uuid::Uuid;

use crate::{IdentityError, Result, keys::TenantKeys, unix_now};

/// The `typ` header of access tokens.
pub const ACCESS_TYP: &str = "at+jwt";
/// The audience of access tokens.
pub const AUDIENCE: &str = "tenantplane";
/// Longest token accepted (bytes); longer inputs are refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`/`nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The issuer of a tenant's tokens.
pub fn issuer(tenant: TenantId) -> String {
    format!("urn:tenantplane:tenant:{tenant}")
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the tenant's URN.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The tenant.
    pub tid: TenantId,
    /// Session (refresh-token family).
    pub sid: Uuid,
    /// Roles at issue time.
    pub roles: Vec<RoleName>,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Token id.
    pub jti: Uuid,
    /// Issued at, in milliseconds (compared with the user's revocation time).
    #[serde(default)]
    pub iatm: i64,
    /// Only `POST /auth/password` is allowed until the one-time password is changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pwd_change: bool,
}

/// Why a token was refused. Clients only ever see 401; the kind is for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, oversized, or undecodable.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not EdDSA (including `none`) or `typ` is not `at+jwt`.
    #[error("unexpected token algorithm or type")]
    WrongAlgorithm,
    /// No `kid`, or not one of this tenant's keys.
    #[error("unknown signing key")]
    UnknownKey,
    /// The token names another tenant (its `tid`/`iss`), a cross-tenant attempt.
    #[error("token of another tenant")]
    ForeignTenant(TenantId),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Not yet valid.
    #[error("token not yet valid")]
    NotYetValid,
    /// Wrong issuer or audience, missing claims.
    #[error("invalid claims")]
    InvalidClaims,
    /// Valid, but the user is disabled or its sessions were revoked after it was issued.
    #[error("token revoked")]
    Revoked,
}

impl TokenError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::WrongAlgorithm => "wrong-algorithm",
            Self::UnknownKey => "unknown-key",
            Self::ForeignTenant(_) => "foreign-tenant",
            Self::BadSignature => "bad-signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::InvalidClaims => "invalid-claims",
            Self::Revoked => "revoked",
        }
    }
}

/// Signs `claims` with the tenant's active key.
pub fn sign(keys: &TenantKeys, claims: &AccessClaims) -> Result<String> {
    let (kid, ek) = keys
        .active
        .as_ref()
        .ok_or_else(|| IdentityError::Internal("tenant has no active signing key".into()))?;
    let mut h = Header::new(Algorithm::EdDSA);
    h.typ = Some(ACCESS_TYP.into());
    h.kid = Some(kid.clone());
    jsonwebtoken::encode(&h, claims, ek)
        .map_err(|e| IdentityError::Internal(format!("signing: {e}")))
}

/// New claims for `user` of `tenant`, valid for `ttl_secs`.
pub fn claims(
    tenant: TenantId,
    user: UserId,
    sid: Uuid,
    roles: Vec<RoleName>,
    ttl_secs: u64,
    pwd_change: bool,
) -> AccessClaims {
    let now = unix_now();
    AccessClaims {
        iss: issuer(tenant),
        aud: AUDIENCE.into(),
        sub: user,
        tid: tenant,
        sid,
        roles,
        iat: now,
        nbf: now,
        exp: now + ttl_secs as i64,
        jti: Uuid::new_v4(),
        iatm: now * 1000,
        pwd_change,
    }
}

/// Looks at the unverified claims to tell a foreign tenant's token from garbage.
fn foreign_tenant(token: &str, tenant: TenantId) -> Option<TenantId> {
    #[derive(Deserialize)]
    struct Peek {
        tid: Option<TenantId>,
    }
    let payload = token.split('.').nth(1)?;
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let p: Peek = serde_json::from_slice(&raw).ok()?;
    p.tid.filter(|t| *t != tenant)
}

/// The verification rules: EdDSA only, this tenant's issuer, our audience, `exp` and `nbf`
/// checked with [`LEEWAY_SECS`].
pub fn validation(tenant: TenantId) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    v.set_issuer(&[issuer(tenant)]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    v
}

/// Decodes the header and finds the key; `None` kid means the token cannot be ours.
pub fn key_id(token: &str, tenant: TenantId) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_BYTES || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(TokenError::Malformed);
    }
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        Err(_) => {
            // `alg: none` and unknown algorithms do not even parse as a header.
            return Err(match foreign_tenant(token, tenant) {
                Some(t) => TokenError::ForeignTenant(t),
                None => TokenError::WrongAlgorithm,
            });
        }
    };
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TYP) {
        return Err(TokenError::WrongAlgorithm);
    }
    header.kid.ok_or(TokenError::UnknownKey)
}

/// Verifies `token` against `keys` (the tenant it was presented to).
pub fn verify(token: &str, keys: &TenantKeys) -> Result<AccessClaims, TokenError> {
    let tenant = keys.tenant;
    let kid = key_id(token, tenant)?;
    let Some(dk) = keys.verifier(&kid) else {
        return Err(match foreign_tenant(token, tenant) {
            Some(t) => TokenError::ForeignTenant(t),
            None => TokenError::UnknownKey,
        });
    };
    match jsonwebtoken::decode::<AccessClaims>(token, dk, &validation(tenant)) {
        Ok(d) if d.claims.tid == tenant => Ok(d.claims),
        Ok(d) => Err(TokenError::ForeignTenant(d.claims.tid)),
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            Err(match e.kind() {
                K::InvalidSignature => match foreign_tenant(token, tenant) {
                    Some(t) => TokenError::ForeignTenant(t),
                    None => TokenError::BadSignature,
                },
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer => match foreign_tenant(token, tenant) {
                    Some(t) => TokenError::ForeignTenant(t),
                    None => TokenError::InvalidClaims,
                },
                K::InvalidAudience | K::MissingRequiredClaim(_) | K::Json(_) => {
                    TokenError::InvalidClaims
                }
                K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            })
        }
    }
}
