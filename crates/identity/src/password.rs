//! Argon2id password hashing on the blocking pool.
//!
//! Hashing is CPU- and memory-bound by design, so it never runs on the async workers: each
//! hash or verification runs in `spawn_blocking`, at most `max_parallel` at once (a login
//! flood queues here instead of starving the blocking pool SQLite also uses). Verifying a
//! login for an unknown account checks a dummy hash with the same parameters, so both
//! answers take the same time.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
};
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
    argon: Argon2<'static>,
    permits: Semaphore,
    dummy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

fn argon(p: Argon2Params) -> Result<Argon2<'static>> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| IdentityError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with(a: &Argon2<'_>, pw: &[u8]) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    a.hash_password(pw, &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Internal(format!("argon2: {e}")))
}

impl Hasher {
    /// A hasher with `params`, running at most `max_parallel` hashes at once.
    pub fn new(params: Argon2Params, max_parallel: usize) -> Result<Self> {
        let a = argon(params)?;
        let dummy = hash_with(&a, b"tenantplane dummy password for unknown accounts")?;
        Ok(Self {
            inner: Arc::new(Inner {
                argon: a,
                permits: Semaphore::new(max_parallel.max(1)),
                dummy,
            }),
        })
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
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| IdentityError::Internal(format!("hashing task: {e}")))
    }

    /// A PHC-format Argon2id hash of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.blocking(move |i| hash_with(&i.argon, password.as_bytes()))
            .await?
    }

    /// Whether `password` matches `hash`; with `None` (unknown account) a dummy hash is
    /// checked so the answer takes as long, and is `false`. Hashes made with other
    /// parameters verify with their own (read from the PHC string).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        self.blocking(move |i| {
            let known = hash.is_some();
            let h = hash.unwrap_or_else(|| i.dummy.clone());
            let ok = match PasswordHash::new(&h) {
                Ok(parsed) => i
                    .argon
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                // An account without a password (single sign-on only): the same work as
                // a wrong password, so the answer does not tell the two apart.
                Err(_) => {
                    if let Ok(d) = PasswordHash::new(&i.dummy) {
                        let _ = i.argon.verify_password(password.as_bytes(), &d);
                    }
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

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(
            Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap();
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
}
