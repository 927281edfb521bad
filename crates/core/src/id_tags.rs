//! Resource ids that carry their tenant: cross-tenant attempts with a *foreign resource id*
//! can be told apart from random or mistyped ids, without a global lookup and without
//! revealing anything to the client.
//!
//! A tagged id is a UUIDv7 (time-ordered, 42 random bits) whose last four bytes are
//! - bytes 12–13: the tenant's *hint*, 16 bits of SHA-256 of the tenant id (public; it only
//!   narrows the candidates: with 10,000 tenants ≈ 0.15 per hint);
//! - bytes 14–15: a 16-bit HMAC-SHA256 over the tenant id and the id's first 14 bytes, with a
//!   key derived from the platform key (secret: ids of tenant X cannot be forged to blame X).
//!
//! When an id is not found in the tenant it was sent to, the edge looks up the tenants with
//! the id's hint and checks the MAC for each: a match is a foreign resource id (the other
//! tenant is only recorded in the security event; the client gets the same 404). A random
//! id is mistaken for a foreign one with probability ≈ 2⁻¹⁶ × candidates.
//!
//! The key is process-wide ([`install_key`], once at start-up, from the platform key);
//! without it a built-in development key is used.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::TenantId;

static KEY: OnceLock<[u8; 32]> = OnceLock::new();
const DEV_KEY: [u8; 32] = *b"tenantplane dev resource-id key.";

/// Installs the process's tag key (the first call wins; returns whether this one did).
pub fn install_key(key: [u8; 32]) -> bool {
    KEY.set(key).is_ok()
}

fn key() -> &'static [u8; 32] {
    KEY.get().unwrap_or(&DEV_KEY)
}

/// The tenant's 16-bit hint.
pub fn hint(tenant: TenantId) -> u16 {
    let mut h = Sha256::new();
    h.update(b"tenantplane/id-hint/");
    h.update(tenant.as_uuid().as_bytes());
    let d = h.finalize();
    u16::from_be_bytes([d[0], d[1]])
}

fn mac(tenant: TenantId, prefix: &[u8]) -> [u8; 2] {
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key()) else {
        return [0, 0];
    };
    m.update(tenant.as_uuid().as_bytes());
    m.update(prefix);
    let d = m.finalize().into_bytes();
    [d[0], d[1]]
}

/// A new id minted by `tenant`.
pub fn mint(tenant: TenantId) -> Uuid {
    let mut b = *Uuid::now_v7().as_bytes();
    b[12..14].copy_from_slice(&hint(tenant).to_be_bytes());
    let m = mac(tenant, &b[..14]);
    b[14..16].copy_from_slice(&m);
    Uuid::from_bytes(b)
}

/// The hint carried by `id`.
pub fn hint_of(id: &Uuid) -> u16 {
    let b = id.as_bytes();
    u16::from_be_bytes([b[12], b[13]])
}

/// Whether `id` was minted by `tenant`.
pub fn minted_by(id: &Uuid, tenant: TenantId) -> bool {
    let b = id.as_bytes();
    hint_of(id) == hint(tenant) && mac(tenant, &b[..14]) == [b[14], b[15]]
}

/// A 16-byte MAC of `data` for `tenant` under the process key: for opaque values handed to
/// a tenant's clients (search cursors) that must be useless anywhere else.
pub fn seal_mac(tenant: TenantId, data: &[u8]) -> [u8; 16] {
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key()) else {
        return [0; 16];
    };
    m.update(b"tenantplane/seal/");
    m.update(tenant.as_uuid().as_bytes());
    m.update(data);
    let d = m.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A 128-bit MAC of `data` under the deployment's key for the platform itself (things no
/// tenant owns, such as a page of the tenant listing).
pub fn platform_mac(data: &[u8]) -> [u8; 16] {
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key()) else {
        return [0; 16];
    };
    m.update(b"tenantplane/platform-seal/");
    m.update(data);
    let d = m.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_tenant_and_stay_v7() {
        let (a, b) = (TenantId::new(), TenantId::new());
        for _ in 0..100 {
            let id = mint(a);
            assert_eq!(id.get_version_num(), 7);
            assert!(minted_by(&id, a));
            assert!(!minted_by(&id, b));
        }
        // Ids are distinct and time-ordered.
        let x = mint(a);
        let y = mint(a);
        assert_ne!(x, y);
        assert!(x.as_bytes()[..6] <= y.as_bytes()[..6]);
    }

    #[test]
    fn random_and_altered_ids_are_not_attributed() {
        let a = TenantId::new();
        let mut false_hits = 0;
        for _ in 0..2000 {
            if minted_by(&Uuid::now_v7(), a) {
                false_hits += 1;
            }
        }
        assert!(false_hits <= 1, "{false_hits}");
        // Changing any bit of the first 14 bytes breaks the tag.
        let id = mint(a);
        for i in 0..14 {
            let mut b = *id.as_bytes();
            b[i] ^= 1;
            assert!(!minted_by(&Uuid::from_bytes(b), a), "byte {i}");
        }
    }
}
