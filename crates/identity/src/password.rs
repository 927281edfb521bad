//! Argon2id password hashing on the blocking pool.
//!
//! Hashing is CPU- and memory-bound by design, so it never runs on the async workers: each
//! hash or verification runs in `spawn_blocking`, at most `max_parallel` at once (a login
//! flood queues here instead of starving the blocking pool SQLite also uses). Verifying a
//! login for an unknown account checks a dummy hash with the same parameters, so both
//! answers take the same time.
//!
//! Memory: each hash needs `memory_kib` of working blocks (19 MiB by default). Allocating
//! them per hash left the allocator's per-thread arenas fragmented and holding megabytes
//! per login (measured: +4.4 MiB RSS per tenant whose admin was created). The blocks are
//! instead allocated once per permit and reused: at most `max_parallel × memory_kib` for
//! the life of the process, whatever the number of logins.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Block, Params, ParamsBuilder, Version,
    password_hash::{Output, ParamsString, PasswordHash, SaltString},
};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::{IdentityError, Result};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB (OWASP 2023: 19,456 = 19 MiB).
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    /// Working memory, one set of blocks per permit at most, reused hash after hash, each
    /// with the time it was last returned (freed by [`Hasher::trim`] once idle).
    blocks: Mutex<Vec<(Vec<Block>, Instant)>>,
    dummy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

const OUTPUT_LEN: usize = 32;

fn internal(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Internal(format!("argon2: {e}"))
}

impl Inner {
    /// Runs `f` with `count` zeroed-or-reused working blocks: from the pool when they fit
    /// the configured size, else (a hash stored with larger parameters) a one-off buffer.
    fn with_blocks<T>(&self, count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let pooled = self.params.block_count();
        if count > pooled {
            let mut v = vec![Block::default(); count];
            return f(&mut v);
        }
        let mut v = self
            .blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .map(|(v, _)| v)
            .unwrap_or_else(|| vec![Block::default(); pooled]);
        // Argon2 overwrites every block it uses before reading it.
        let out = f(&mut v[..count]);
        self.blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((v, Instant::now()));
        out
    }

    /// A PHC-format Argon2id hash of `pw` with a fresh salt.
    fn hash(&self, pw: &[u8]) -> Result<String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(internal)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut out = [0u8; OUTPUT_LEN];
        self.with_blocks(self.params.block_count(), |b| {
            argon.hash_password_into_with_memory(pw, salt_bytes, &mut out, b)
        })
        .map_err(internal)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(internal)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(internal)?),
        };
        Ok(phc.to_string())
    }

    /// Whether `pw` matches the PHC string `phc` (its own algorithm, version and
    /// parameters); `Err` when `phc` is not an Argon2 hash.
    fn verify(&self, pw: &[u8], phc: &str) -> std::result::Result<bool, ()> {
        let parsed = PasswordHash::new(phc).map_err(|_| ())?;
        let alg = Algorithm::try_from(parsed.algorithm).map_err(|_| ())?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|_| ())?
            .unwrap_or_default();
        let expected = parsed.hash.ok_or(())?;
        let params = Params::try_from(&parsed).map_err(|_| ())?;
        let params = ParamsBuilder::new()
            .m_cost(params.m_cost())
            .t_cost(params.t_cost())
            .p_cost(params.p_cost())
            .output_len(expected.len())
            .build()
            .map_err(|_| ())?;
        let mut salt_buf = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or(())?
            .decode_b64(&mut salt_buf)
            .map_err(|_| ())?;
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(alg, version, params.clone());
        self.with_blocks(params.block_count(), |b| {
            argon.hash_password_into_with_memory(pw, salt, &mut out, b)
        })
        .map_err(|_| ())?;
        Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    }
}

impl Hasher {
    /// A hasher with `params`, running at most `max_parallel` hashes at once.
    pub fn new(params: Argon2Params, max_parallel: usize) -> Result<Self> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| IdentityError::Internal(format!("argon2 parameters: {e}")))?;
        let mut inner = Inner {
            params,
            permits: Semaphore::new(max_parallel.max(1)),
            blocks: Mutex::new(Vec::new()),
            dummy: String::new(),
        };
        inner.dummy = inner.hash(b"tenantplane dummy password for unknown accounts")?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Frees the pooled working memory unused for `idle` (the server calls this
    /// periodically: a platform with no logins holds no Argon2 memory). Returns the bytes
    /// freed.
    pub fn trim(&self, idle: Duration) -> usize {
        let mut pool = self.inner.blocks.lock().unwrap_or_else(|p| p.into_inner());
        let before = pool.len();
        pool.retain(|(_, at)| at.elapsed() < idle);
        (before - pool.len()) * self.inner.params.block_count() * std::mem::size_of::<Block>()
    }

    /// Bytes of working memory held in the pool now.
    pub fn pooled_bytes(&self) -> usize {
        self.inner
            .blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
            * self.inner.params.block_count()
            * std::mem::size_of::<Block>()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| IdentityError::Internal("hasher closed".into()))?;
        let inner = self.inner.clone();
        // The hash's CPU time goes to the request it is done for.
        let charge = tenantplane_cpu::current();
        tokio::task::spawn_blocking(move || {
            tenantplane_cpu::on_behalf(charge.as_ref(), || f(&inner))
        })
        .await
        .map_err(|e| IdentityError::Internal(format!("hashing task: {e}")))
    }

    /// A PHC-format Argon2id hash of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.blocking(move |i| i.hash(password.as_bytes())).await?
    }

    /// Whether `password` matches `hash`; with `None` (unknown account) a dummy hash is
    /// checked so the answer takes as long, and is `false`. Hashes made with other
    /// parameters verify with their own (read from the PHC string).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        self.blocking(move |i| {
            let known = hash.is_some();
            let h = hash.unwrap_or_else(|| i.dummy.clone());
            let ok = match i.verify(password.as_bytes(), &h) {
                Ok(ok) => ok,
                // An account without a password (single sign-on only): the same work as
                // a wrong password, so the answer does not tell the two apart.
                Err(()) => {
                    let _ = i.verify(password.as_bytes(), &i.dummy);
                    false
                }
            };
            known && ok
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hasher with 1 MiB × 1 pass (quick) and `permits` parallel hashes.
    fn small(permits: usize) -> Hasher {
        Hasher::new(
            Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            permits,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = small(2);
        let a = h.hash("correct horse battery".into()).await.unwrap();
        let b = h.hash("correct horse battery".into()).await.unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(
            h.verify("correct horse battery".into(), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong".into(), Some(a)).await.unwrap());
        assert!(!h.verify("anything".into(), None).await.unwrap());
        assert!(!h.verify("x".into(), Some("garbage".into())).await.unwrap());
    }

    #[tokio::test]
    async fn verifies_hashes_made_by_the_reference_implementation() {
        use argon2::password_hash::PasswordHasher as _;
        // A hash with other (larger) parameters than the hasher's, made by the argon2
        // crate's own PHC path: verified with its own parameters (a one-off buffer).
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let phc = other
            .hash_password(b"s3cret pass", &salt)
            .unwrap()
            .to_string();
        let h = small(1);
        assert!(
            h.verify("s3cret pass".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!h.verify("s3cret pasS".into(), Some(phc)).await.unwrap());
        // And ours verify with the reference verifier.
        let ours = h.hash("another one".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        use argon2::password_hash::PasswordVerifier as _;
        assert!(
            Argon2::default()
                .verify_password(b"another one", &parsed)
                .is_ok()
        );
        // The pool holds one set of blocks per permit at most, freed once idle.
        assert_eq!(h.pooled_bytes(), 1024 * 1024);
        assert_eq!(h.trim(Duration::from_secs(3600)), 0);
        assert_eq!(h.trim(Duration::ZERO), 1024 * 1024);
        assert_eq!(h.pooled_bytes(), 0);
    }
}
