//! Keys: the platform key that seals tenant secrets, and each tenant's token signing keys.
//!
//! Every tenant has its own Ed25519 signing keys in its own store. The private half is
//! sealed with XChaCha20-Poly1305 under the platform key (from config or a `*_file`), with
//! the tenant id and key id as associated data, so a sealed key copied into another
//! tenant's store does not open. Rotation makes a new key active and keeps the previous one
//! published (`retiring`) until every token it signed has expired.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::RngCore;
use subtle::ConstantTimeEq;
use tenantplane_core::TenantId;
use tenantplane_tenant_data::TenantDb;

use crate::{IdentityError, Result, unix_now};

/// The platform key: 32 bytes that seal every tenant's private keys.
#[derive(Clone)]
pub struct PlatformKey([u8; 32]);

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformKey(***)")
    }
}

impl PlatformKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Parses 64 hex characters or 43 base64url characters (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bytes = if t.len() == 64 {
            hex::decode(t).map_err(|_| "not valid hex".to_owned())?
        } else {
            URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .map_err(|_| "expected 64 hex or 43 base64url characters".to_owned())?
        };
        let k: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the platform key must be 32 bytes".to_owned())?;
        Ok(Self(k))
    }

    /// The key as 64 hex characters (for writing a new key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A 32-byte key for `purpose`, derived from the platform key (HMAC-SHA256), so other
    /// uses never touch the sealing key itself.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac;
        let Ok(mut m) = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        m.update(b"tenantplane/derive/");
        m.update(purpose.as_bytes());
        m.finalize().into_bytes().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `plaintext` bound to `aad`: nonce (24 bytes) ‖ ciphertext.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| IdentityError::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 24 + 16 {
            return Err(IdentityError::Internal("sealed value too short".into()));
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| {
                IdentityError::Internal("a sealed key does not open with the platform key".into())
            })
    }
}

/// Status of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// Signs new tokens (exactly one per tenant).
    Active,
    /// Still verifies (and is published) until `retire_after`.
    Retiring,
}

/// A signing key row.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Status.
    pub status: KeyStatus,
    /// For retiring keys: when they stop verifying.
    pub retire_after: Option<i64>,
    /// Ed25519 public key, base64url (the JWK `x`).
    pub public_x: String,
    /// Sealed private key seed.
    pub sealed: Vec<u8>,
}

fn aad(tenant: TenantId, kid: &str) -> Vec<u8> {
    format!("tenantplane/signing-key/{tenant}/{kid}").into_bytes()
}

/// PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410), as `EncodingKey::from_ed_der` reads.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

fn new_key(platform: &PlatformKey, tenant: TenantId) -> Result<KeyRecord> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public_x = URL_SAFE_NO_PAD.encode(sk.verifying_key().as_bytes());
    let mut kid_bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut kid_bytes);
    let kid = URL_SAFE_NO_PAD.encode(kid_bytes);
    let sealed = platform.seal(&aad(tenant, &kid), &seed)?;
    Ok(KeyRecord {
        kid,
        created_at: unix_now(),
        status: KeyStatus::Active,
        retire_after: None,
        public_x,
        sealed,
    })
}

fn status_str(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "active",
        KeyStatus::Retiring => "retiring",
    }
}

fn parse_status(s: &str) -> KeyStatus {
    if s == "active" {
        KeyStatus::Active
    } else {
        KeyStatus::Retiring
    }
}

/// Keys still valid now (active, and retiring ones before `retire_after`), newest first.
pub async fn list(db: TenantDb<'_>) -> Result<Vec<KeyRecord>> {
    let now = unix_now();
    let rows = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT kid, created_at, status, retire_after, public_x, sealed FROM signing_keys \
                     WHERE status = 'active' OR retire_after > ?1 ORDER BY created_at DESC, kid",
                )?;
                st.query_map([now], |r| {
                    Ok(KeyRecord {
                        kid: r.get(0)?,
                        created_at: r.get(1)?,
                        status: parse_status(&r.get::<_, String>(2)?),
                        retire_after: r.get(3)?,
                        public_x: r.get(4)?,
                        sealed: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .query(
                            "SELECT kid, created_at, status, retire_after, public_x, sealed FROM signing_keys \
                             WHERE status = 'active' OR retire_after > $1 ORDER BY created_at DESC, kid",
                            &[&now],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| KeyRecord {
                            kid: r.get(0),
                            created_at: r.get(1),
                            status: parse_status(r.get::<_, &str>(2)),
                            retire_after: r.get(3),
                            public_x: r.get(4),
                            sealed: r.get(5),
                        })
                        .collect())
                })
            })
            .await?
        }
    };
    Ok(rows)
}

/// Makes a new key active; the previous active key becomes `retiring` for `overlap` (the
/// access-token lifetime plus clock skew), and keys past their time are deleted. With
/// `only_if_none`, does nothing when an active key exists (first use of a tenant).
pub async fn rotate(
    db: TenantDb<'_>,
    platform: &PlatformKey,
    tenant: TenantId,
    overlap: Duration,
    only_if_none: bool,
) -> Result<String> {
    let k = new_key(platform, tenant)?;
    let now = unix_now();
    let retire = now + overlap.as_secs() as i64;
    let kid = k.kid.clone();
    let out = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT kid FROM signing_keys WHERE status = 'active' LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .ok();
                if only_if_none && let Some(e) = existing {
                    return Ok(e);
                }
                tx.execute(
                    "DELETE FROM signing_keys WHERE status = 'retiring' AND retire_after <= ?1",
                    [now],
                )?;
                tx.execute(
                    "UPDATE signing_keys SET status = 'retiring', retire_after = ?1 WHERE status = 'active'",
                    [retire],
                )?;
                tx.execute(
                    "INSERT INTO signing_keys (kid, created_at, status, retire_after, public_x, sealed) \
                     VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
                    (&k.kid, k.created_at, status_str(k.status), &k.public_x, &k.sealed),
                )?;
                tx.commit()?;
                Ok(k.kid)
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    // Serialise rotations of this tenant (two replicas creating a first key).
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended('tp-keys:' || current_setting('app.tenant_id', true), 0))",
                        &[],
                    )
                    .await?;
                    let existing = tx
                        .query_opt(
                            "SELECT kid FROM signing_keys WHERE status = 'active' LIMIT 1",
                            &[],
                        )
                        .await?;
                    if only_if_none && let Some(e) = existing {
                        return Ok(e.get::<_, String>(0));
                    }
                    tx.execute(
                        "DELETE FROM signing_keys WHERE status = 'retiring' AND retire_after <= $1",
                        &[&now],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE signing_keys SET status = 'retiring', retire_after = $1 WHERE status = 'active'",
                        &[&retire],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO signing_keys (kid, created_at, status, retire_after, public_x, sealed) \
                         VALUES ($1, $2, $3, NULL, $4, $5)",
                        &[&k.kid, &k.created_at, &status_str(k.status), &k.public_x, &k.sealed],
                    )
                    .await?;
                    Ok(k.kid)
                })
            })
            .await?
        }
    };
    if out == kid {
        tracing::info!(tenant_id = %tenant, kid = %kid, "signing key created");
    }
    Ok(out)
}

/// A tenant's keys, ready to sign and verify.
pub struct TenantKeys {
    /// The tenant.
    pub tenant: TenantId,
    /// Key id and signing key of the active key.
    pub active: Option<(String, jsonwebtoken::EncodingKey)>,
    /// Verification keys by kid (active and retiring).
    pub verifiers: Vec<(String, jsonwebtoken::DecodingKey, Option<i64>)>,
    /// The public JWK set.
    pub jwks: serde_json::Value,
    loaded: Instant,
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKeys")
            .field("tenant", &self.tenant)
            .field(
                "kids",
                &self.verifiers.iter().map(|v| &v.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TenantKeys {
    /// The verification key for `kid`, if it is one of this tenant's current keys
    /// (compared in constant time).
    pub fn verifier(&self, kid: &str) -> Option<&jsonwebtoken::DecodingKey> {
        let now = unix_now();
        self.verifiers
            .iter()
            .find(|(k, _, retire)| {
                bool::from(k.as_bytes().ct_eq(kid.as_bytes())) && retire.is_none_or(|t| t > now)
            })
            .map(|(_, d, _)| d)
    }

    fn build(platform: &PlatformKey, tenant: TenantId, rows: &[KeyRecord]) -> Result<Self> {
        let mut active = None;
        let mut verifiers = Vec::new();
        let mut jwk = Vec::new();
        for r in rows {
            let dk = jsonwebtoken::DecodingKey::from_ed_components(&r.public_x)
                .map_err(|e| IdentityError::Internal(format!("public key {}: {e}", r.kid)))?;
            verifiers.push((r.kid.clone(), dk, r.retire_after));
            jwk.push(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": r.public_x, "kid": r.kid,
                "use": "sig", "alg": "EdDSA",
            }));
            if r.status == KeyStatus::Active && active.is_none() {
                let seed = platform.open(&aad(tenant, &r.kid), &r.sealed)?;
                let seed: [u8; 32] = seed
                    .try_into()
                    .map_err(|_| IdentityError::Internal("sealed seed has a wrong size".into()))?;
                let ek = jsonwebtoken::EncodingKey::from_ed_der(&ed25519_pkcs8(&seed));
                active = Some((r.kid.clone(), ek));
            }
        }
        Ok(Self {
            tenant,
            active,
            verifiers,
            jwks: serde_json::json!({ "keys": jwk }),
            loaded: Instant::now(),
        })
    }
}

/// An in-memory cache of tenants' keys, bounded in size, refreshed after `ttl` (so a rotation
/// on another replica is seen within it) and at once when a token names an unknown kid
/// (at most once per `min_reload` per tenant).
pub struct Keyring {
    platform: PlatformKey,
    overlap: Duration,
    ttl: Duration,
    min_reload: Duration,
    capacity: usize,
    cache: RwLock<HashMap<TenantId, Arc<TenantKeys>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring sealing with `platform`; retiring keys overlap for `overlap`.
    pub fn new(platform: PlatformKey, overlap: Duration) -> Self {
        Self {
            platform,
            overlap,
            ttl: Duration::from_secs(30),
            min_reload: Duration::from_secs(1),
            capacity: 20_000,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The platform key.
    pub fn platform(&self) -> &PlatformKey {
        &self.platform
    }

    /// Cached keys if fresh.
    pub fn cached(&self, tenant: TenantId) -> Option<Arc<TenantKeys>> {
        let g = self.cache.read().unwrap_or_else(|p| p.into_inner());
        g.get(&tenant)
            .filter(|k| k.loaded.elapsed() < self.ttl)
            .cloned()
    }

    /// Whether a reload for an unknown kid is allowed now.
    pub fn may_reload(&self, tenant: TenantId) -> bool {
        let g = self.cache.read().unwrap_or_else(|p| p.into_inner());
        g.get(&tenant)
            .is_none_or(|k| k.loaded.elapsed() >= self.min_reload)
    }

    /// Drops a tenant's cached keys.
    pub fn invalidate(&self, tenant: TenantId) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tenant);
    }

    /// The tenant's keys, creating the first signing key if it has none.
    pub async fn load(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        force: bool,
    ) -> Result<Arc<TenantKeys>> {
        if !force && let Some(k) = self.cached(tenant) {
            return Ok(k);
        }
        let mut rows = list(db).await?;
        if !rows.iter().any(|r| r.status == KeyStatus::Active) {
            rotate(db, &self.platform, tenant, self.overlap, true).await?;
            rows = list(db).await?;
        }
        let keys = Arc::new(TenantKeys::build(&self.platform, tenant, &rows)?);
        let mut g = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if g.len() >= self.capacity && !g.contains_key(&tenant) {
            // Evict the stalest entry (rare: only past `capacity` distinct tenants).
            if let Some(old) = g.iter().min_by_key(|(_, v)| v.loaded).map(|(k, _)| *k) {
                g.remove(&old);
            }
        }
        g.insert(tenant, keys.clone());
        Ok(keys)
    }

    /// Rotates the tenant's signing key now.
    pub async fn rotate(&self, tenant: TenantId, db: TenantDb<'_>) -> Result<String> {
        let kid = rotate(db, &self.platform, tenant, self.overlap, false).await?;
        self.invalidate(tenant);
        Ok(kid)
    }
}

/// Keys for a fresh tenant, built in memory (benchmarks and tests; no store involved).
#[doc(hidden)]
pub fn bench_keys(platform: &PlatformKey, tenant: TenantId) -> TenantKeys {
    match new_key(platform, tenant).and_then(|r| TenantKeys::build(platform, tenant, &[r])) {
        Ok(k) => k,
        Err(_) => TenantKeys {
            tenant,
            active: None,
            verifiers: Vec::new(),
            jwks: serde_json::json!({"keys": []}),
            loaded: Instant::now(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_the_associated_data() {
        let k = PlatformKey::generate();
        let s = k.seal(b"tenant-a/kid", b"secret seed").unwrap();
        assert_eq!(k.open(b"tenant-a/kid", &s).unwrap(), b"secret seed");
        assert!(k.open(b"tenant-b/kid", &s).is_err());
        assert!(PlatformKey::generate().open(b"tenant-a/kid", &s).is_err());
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(k.open(b"tenant-a/kid", &bad).is_err());
        assert!(k.open(b"x", &s[..10]).is_err());
    }

    #[test]
    fn platform_key_parsing() {
        let k = PlatformKey::generate();
        let again = PlatformKey::parse(&format!("{}\n", k.to_hex())).unwrap();
        assert_eq!(again.0, k.0);
        let b64 = URL_SAFE_NO_PAD.encode(k.0);
        assert_eq!(PlatformKey::parse(&b64).unwrap().0, k.0);
        assert!(PlatformKey::parse("short").is_err());
        assert!(PlatformKey::parse(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{k:?}"), "PlatformKey(***)");
    }

    #[test]
    fn keys_sign_and_verify() {
        let p = PlatformKey::generate();
        let t = TenantId::new();
        let rec = new_key(&p, t).unwrap();
        let keys = TenantKeys::build(&p, t, std::slice::from_ref(&rec)).unwrap();
        let (kid, ek) = keys.active.as_ref().unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(kid.clone());
        let tok = jsonwebtoken::encode(
            &h,
            &serde_json::json!({"sub": "x", "exp": unix_now() + 60}),
            ek,
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.required_spec_claims.clear();
        v.validate_aud = false;
        let dk = keys.verifier(kid).unwrap();
        jsonwebtoken::decode::<serde_json::Value>(&tok, dk, &v).unwrap();
        assert!(keys.verifier("other").is_none());
        // The same sealed key in another tenant's store does not open.
        assert!(TenantKeys::build(&p, TenantId::new(), &[rec]).is_err());
    }
}
