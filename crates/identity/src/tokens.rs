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

/// How long a successful verification is remembered.
pub const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most verified tokens remembered at once.
pub const VERIFIED_CAP: usize = 50_000;

/// Remembers tokens that verified, so a client sending the same access token on every
/// request pays for the EdDSA check once a minute instead of every time.
///
/// The key is the whole token (compared byte for byte) and a hit also needs the tenant it
/// verified for, so a hit is exactly the token that verified, on the tenant it names. Only successes are kept; `exp`
/// is checked again on every hit; entries live at most [`VERIFIED_TTL`]. Revocation is not
/// affected: the user's state is checked after this, on every request.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    map: std::sync::RwLock<
        std::collections::HashMap<Box<str>, (TenantId, std::time::Instant, AccessClaims)>,
    >,
}

impl VerifiedCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The claims of `token` if it verified for `tenant` within [`VERIFIED_TTL`] and has not
    /// expired since.
    pub fn get(&self, tenant: TenantId, token: &str) -> Option<AccessClaims> {
        let g = self.map.read().unwrap_or_else(|p| p.into_inner());
        let (t, at, claims) = g.get(token)?;
        let fresh = *t == tenant
            && at.elapsed() < VERIFIED_TTL
            && claims.exp + LEEWAY_SECS as i64 > unix_now();
        fresh.then(|| claims.clone())
    }

    /// Remembers a verified token.
    pub fn put(&self, tenant: TenantId, token: &str, claims: &AccessClaims) {
        let mut g = self.map.write().unwrap_or_else(|p| p.into_inner());
        if g.len() >= VERIFIED_CAP {
            g.retain(|_, (_, at, _)| at.elapsed() < VERIFIED_TTL);
            if g.len() >= VERIFIED_CAP {
                g.clear();
            }
        }
        g.insert(
            token.into(),
            (tenant, std::time::Instant::now(), claims.clone()),
        );
    }

    /// Verifies through the cache.
    pub fn verify(&self, token: &str, keys: &TenantKeys) -> Result<AccessClaims, TokenError> {
        if let Some(c) = self.get(keys.tenant, token) {
            return Ok(c);
        }
        let c = verify(token, keys)?;
        self.put(keys.tenant, token, &c);
        Ok(c)
    }

    /// Forgets everything of `tenant` (after a key change).
    pub fn forget_tenant(&self, tenant: TenantId) {
        let mut g = self.map.write().unwrap_or_else(|p| p.into_inner());
        g.retain(|_, (t, _, _)| *t != tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{PlatformKey, bench_keys};

    fn signed(keys: &TenantKeys, ttl: u64) -> (String, AccessClaims) {
        let c = claims(
            keys.tenant,
            UserId::new(),
            Uuid::now_v7(),
            vec![],
            ttl,
            false,
        );
        let t = sign(keys, &c).unwrap();
        (t, c)
    }

    #[test]
    fn verified_cache_hits_only_the_same_token_on_the_same_tenant() {
        let platform = PlatformKey::generate();
        let a = bench_keys(&platform, TenantId::new());
        let b = bench_keys(&platform, TenantId::new());
        let cache = VerifiedCache::new();
        let (tok, c) = signed(&a, 900);
        assert_eq!(cache.verify(&tok, &a).unwrap(), c);
        assert_eq!(cache.get(a.tenant, &tok).unwrap(), c);
        // The same string on another tenant is not a hit and fails verification there.
        assert!(cache.get(b.tenant, &tok).is_none());
        assert!(
            matches!(cache.verify(&tok, &b), Err(TokenError::ForeignTenant(t)) if t == a.tenant)
        );
        // A one-character change is a miss and then a verification failure.
        let mut bad = tok.clone();
        bad.pop();
        bad.push(if tok.ends_with('A') { 'B' } else { 'A' });
        assert!(cache.get(a.tenant, &bad).is_none());
        assert!(cache.verify(&bad, &a).is_err());
        // Failures are never remembered.
        assert!(cache.get(a.tenant, &bad).is_none());
        cache.forget_tenant(a.tenant);
        assert!(cache.get(a.tenant, &tok).is_none());
    }

    #[test]
    fn verified_cache_does_not_outlive_expiry() {
        let platform = PlatformKey::generate();
        let a = bench_keys(&platform, TenantId::new());
        let cache = VerifiedCache::new();
        let (tok, mut c) = signed(&a, 900);
        // Pretend it verified but expired long ago (beyond the leeway).
        c.exp = unix_now() - 2 * LEEWAY_SECS as i64;
        cache.put(a.tenant, &tok, &c);
        assert!(cache.get(a.tenant, &tok).is_none());
    }
}
