//! Operator tokens: opaque bearer tokens, stored only as SHA-256 hashes, compared in
//! constant time, and cached in memory for a few seconds so a disabled operator is locked out
//! across replicas quickly without a catalog round-trip per request.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tenantplane_catalog::{Catalog, CatalogError};
use tenantplane_core::Operator;

/// Prefix of generated operator tokens (helps secret scanners).
pub const TOKEN_PREFIX: &str = "tpo_";
/// Shortest token accepted from a bootstrap token file.
pub const MIN_TOKEN_LEN: usize = 24;
/// Longest token accepted anywhere.
pub const MAX_TOKEN_LEN: usize = 512;
const CACHE_TTL: Duration = Duration::from_secs(5);

/// A new random operator token (256 bits).
pub fn generate_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// Hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a token supplied by an administrator (bootstrap file).
pub fn validate_supplied_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN || token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "the token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters long"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// In-memory view of the operators, refreshed from the catalog.
#[derive(Debug, Default)]
pub struct OperatorCache {
    inner: RwLock<Option<(Instant, HashMap<String, Operator>)>>,
}

impl OperatorCache {
    /// Drops the cache so the next lookup reads the catalog.
    pub fn invalidate(&self) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The enabled-or-not operator whose token hashes to `hash` (cached for a few seconds).
    pub async fn lookup(
        &self,
        catalog: &Catalog,
        hash: &str,
    ) -> Result<Option<Operator>, CatalogError> {
        {
            let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
            if let Some((at, map)) = guard.as_ref()
                && at.elapsed() < CACHE_TTL
            {
                return Ok(find(map, hash));
            }
        }
        let ops = catalog.list_operators().await?;
        let map: HashMap<String, Operator> =
            ops.into_iter().map(|o| (o.token_hash.clone(), o)).collect();
        let found = find(&map, hash);
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), map));
        Ok(found)
    }
}

fn find(map: &HashMap<String, Operator>, hash: &str) -> Option<Operator> {
    let op = map.get(hash)?;
    // The map lookup located a candidate; confirm in constant time.
    bool::from(op.token_hash.as_bytes().ct_eq(hash.as_bytes())).then(|| op.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a).len(), 64);
        assert!(validate_supplied_token(&a).is_ok());
        assert!(validate_supplied_token("short").is_err());
        assert!(validate_supplied_token(&format!("{a} x")).is_err());
    }
}
