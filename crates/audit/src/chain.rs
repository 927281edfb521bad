//! The hash chain of a tenant's audit log, and the signed checkpoints that let it be pruned.
//!
//! Entry *n* (its place in the chain, `seq`, counts from 1) is sealed with
//! `hash(n) = SHA-256(hash(n−1) ‖ encode(n, entry))`, where `encode` writes every field of
//! the entry length-prefixed in a fixed order, and `hash(0)` is the tenant's genesis,
//! `SHA-256("tenantplane-audit-v1" ‖ tenant id)` — so a log copied from another tenant does
//! not verify. Changing, removing, inserting or reordering any sealed entry breaks every
//! hash after it; the tenant's head (last `seq` and hash, kept beside the log) catches a
//! truncated tail.
//!
//! Pruning past the retention keeps the chain verifiable: a [`Checkpoint`] records the last
//! pruned `seq` and its hash, signed with the platform's Ed25519 audit key; verification
//! starts from the newest checkpoint whose signature holds.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tenantplane_core::TenantId;

use crate::Entry;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// A stored hash as a [`Hash`] (all zeros when it is not 32 bytes: it then matches no
/// computed hash, so verification reports the entry).
pub fn hash_from(v: &[u8]) -> Hash {
    <Hash>::try_from(v).unwrap_or([0; 32])
}

/// The hash before the first entry of `tenant`'s log.
pub fn genesis(tenant: TenantId) -> Hash {
    let mut h = Sha256::new();
    h.update(b"tenantplane-audit-v1");
    h.update(tenant.as_uuid().as_bytes());
    h.finalize().into()
}

/// The hash before the first entry of the platform's log (operators' actions).
pub fn platform_genesis() -> Hash {
    Sha256::digest(b"tenantplane-platform-audit-v1").into()
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn opt(h: &mut Sha256, v: Option<&str>) {
    match v {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            field(h, s.as_bytes());
        }
    }
}

/// The hash of entry `seq` after `prev`.
pub fn link(prev: &Hash, seq: i64, e: &Entry) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(e.recorded_ms.to_be_bytes());
    field(&mut h, e.category.as_str().as_bytes());
    field(&mut h, e.action.as_bytes());
    field(&mut h, e.code.as_bytes());
    h.update([e.outcome]);
    field(&mut h, e.agent.as_bytes());
    opt(&mut h, e.entity.as_deref());
    opt(&mut h, e.peer.as_deref());
    opt(&mut h, e.request_id.as_deref());
    opt(&mut h, e.detail.as_deref());
    h.finalize().into()
}

/// Lowercase hex of a hash.
pub fn hex(h: &[u8]) -> String {
    hex::encode(h)
}

/// Where verification found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Break {
    /// Entry `seq`'s stored hash is not the hash of its content after the one before: it
    /// (or one before it) was changed.
    Altered {
        /// Where.
        seq: i64,
    },
    /// Entries are missing between `after` and `next`.
    Gap {
        /// The last entry found.
        after: i64,
        /// The next one found.
        next: i64,
    },
    /// The log ends before (or after) the head kept beside it: its tail was removed (or
    /// the head was rewound).
    Truncated {
        /// The last entry found.
        last: i64,
        /// The head's entry.
        head: i64,
    },
    /// The last entry's hash is not the head's.
    HeadMismatch {
        /// The head's entry.
        head: i64,
    },
    /// A checkpoint's signature does not hold.
    BadCheckpoint {
        /// The checkpoint's entry.
        seq: i64,
    },
}

/// Walks sealed entries in `seq` order and finds the first break.
#[derive(Debug)]
pub struct ChainCheck {
    prev: Hash,
    last: i64,
    checked: u64,
    broken: Option<Break>,
}

impl ChainCheck {
    /// A walk starting after entry `from` whose hash is `hash` (0 and the genesis for a
    /// log never pruned).
    pub fn start(from: i64, hash: Hash) -> Self {
        Self {
            prev: hash,
            last: from,
            checked: 0,
            broken: None,
        }
    }

    /// Checks the next sealed entry. Returns `false` once the chain is broken.
    pub fn next(&mut self, seq: i64, e: &Entry, stored: &[u8]) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if seq != self.last + 1 {
            self.broken = Some(Break::Gap {
                after: self.last,
                next: seq,
            });
            return false;
        }
        let h = link(&self.prev, seq, e);
        if h.as_slice() != stored {
            self.broken = Some(Break::Altered { seq });
            return false;
        }
        self.prev = h;
        self.last = seq;
        self.checked += 1;
        true
    }

    /// Ends the walk against the head (`seq` and hash kept beside the log).
    pub fn finish(mut self, head_seq: i64, head_hash: &[u8]) -> Verdict {
        if self.broken.is_none() {
            if self.last != head_seq {
                self.broken = Some(Break::Truncated {
                    last: self.last,
                    head: head_seq,
                });
            } else if self.prev.as_slice() != head_hash {
                self.broken = Some(Break::HeadMismatch { head: head_seq });
            }
        }
        Verdict {
            checked: self.checked,
            last: self.last,
            broken: self.broken,
        }
    }
}

/// What a walk found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Entries whose hash was checked.
    pub checked: u64,
    /// The last good entry.
    pub last: i64,
    /// The first break, if any.
    pub broken: Option<Break>,
}

/// A signed statement that the log held entries up to `seq`, the last with `hash`, before
/// the entries up to it were pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last pruned entry.
    pub seq: i64,
    /// Its hash.
    pub hash: Hash,
    /// When the checkpoint was made (ms).
    pub at_ms: i64,
    /// Which key signed it ([`CheckpointKey::key_id`]).
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::message`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The signed bytes: tenant, `seq`, hash and time.
    pub fn message(tenant: TenantId, seq: i64, hash: &Hash, at_ms: i64) -> Vec<u8> {
        let mut m = Vec::with_capacity(96);
        m.extend_from_slice(b"tenantplane-audit-checkpoint-v1");
        m.extend_from_slice(tenant.as_uuid().as_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(hash);
        m.extend_from_slice(&at_ms.to_be_bytes());
        m
    }
}

/// The platform's checkpoint signing key (derived from the platform key).
#[derive(Clone)]
pub struct CheckpointKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// The key of 32 secret bytes.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex(self.signing.verifying_key().as_bytes())
    }

    /// A short name of the public key (the first 8 bytes of its SHA-256, hex).
    pub fn key_id(&self) -> String {
        let d: Hash = Sha256::digest(self.signing.verifying_key().as_bytes()).into();
        hex(&d[..8])
    }

    /// A checkpoint of `tenant`'s log at `seq` with `hash`.
    pub fn sign(&self, tenant: TenantId, seq: i64, hash: Hash, at_ms: i64) -> Checkpoint {
        let sig = self
            .signing
            .sign(&Checkpoint::message(tenant, seq, &hash, at_ms));
        Checkpoint {
            seq,
            hash,
            at_ms,
            key_id: self.key_id(),
            signature: sig.to_bytes().to_vec(),
        }
    }

    /// Whether `c` was signed by this key for `tenant`.
    pub fn verify(&self, tenant: TenantId, c: &Checkpoint) -> bool {
        let Ok(sig) = Signature::from_slice(&c.signature) else {
            return false;
        };
        let vk: VerifyingKey = self.signing.verifying_key();
        vk.verify(&Checkpoint::message(tenant, c.seq, &c.hash, c.at_ms), &sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Category;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                Entry::now(Category::Clinical, "read", "R", "user/u".into())
                    .entity(format!("Patient/{i}"))
            })
            .collect()
    }

    fn seal(t: TenantId, es: &[Entry]) -> Vec<Hash> {
        let mut prev = genesis(t);
        es.iter()
            .enumerate()
            .map(|(i, e)| {
                prev = link(&prev, i as i64 + 1, e);
                prev
            })
            .collect()
    }

    fn walk(t: TenantId, es: &[(i64, Entry, Hash)], head: (i64, Hash)) -> Verdict {
        let mut c = ChainCheck::start(0, genesis(t));
        for (s, e, h) in es {
            if !c.next(*s, e, h) {
                break;
            }
        }
        c.finish(head.0, &head.1)
    }

    #[test]
    fn an_intact_chain_verifies_and_every_tamper_is_found_where_it_is() {
        let t = TenantId::new();
        let es = entries(5);
        let hs = seal(t, &es);
        let rows: Vec<(i64, Entry, Hash)> = es
            .iter()
            .cloned()
            .zip(hs.iter().copied())
            .enumerate()
            .map(|(i, (e, h))| (i as i64 + 1, e, h))
            .collect();
        let head = (5, hs[4]);
        let ok = walk(t, &rows, head);
        assert_eq!((ok.checked, ok.broken), (5, None));

        // A changed field.
        let mut bad = rows.clone();
        bad[2].1.agent = "user/someone-else".into();
        assert_eq!(walk(t, &bad, head).broken, Some(Break::Altered { seq: 3 }));
        // A removed row.
        let mut gap = rows.clone();
        gap.remove(1);
        assert_eq!(
            walk(t, &gap, head).broken,
            Some(Break::Gap { after: 1, next: 3 })
        );
        // A removed tail.
        assert_eq!(
            walk(t, &rows[..3], head).broken,
            Some(Break::Truncated { last: 3, head: 5 })
        );
        // Another tenant's log.
        assert_eq!(
            walk(TenantId::new(), &rows, head).broken,
            Some(Break::Altered { seq: 1 })
        );
        // A rewritten chain (every hash recomputed) still differs from the head.
        let mut forged = es.clone();
        forged[4].outcome = 4;
        let fh = seal(t, &forged);
        let frows: Vec<(i64, Entry, Hash)> = forged
            .into_iter()
            .zip(fh)
            .enumerate()
            .map(|(i, (e, h))| (i as i64 + 1, e, h))
            .collect();
        assert_eq!(
            walk(t, &frows, head).broken,
            Some(Break::HeadMismatch { head: 5 })
        );
    }

    #[test]
    fn checkpoints_verify_only_for_their_tenant_and_content() {
        let k = CheckpointKey::from_seed([7; 32]);
        let t = TenantId::new();
        let c = k.sign(t, 10, [1; 32], 1_000);
        assert!(k.verify(t, &c));
        assert!(!k.verify(TenantId::new(), &c));
        let mut moved = c.clone();
        moved.seq = 11;
        assert!(!k.verify(t, &moved));
        assert!(!CheckpointKey::from_seed([8; 32]).verify(t, &c));
        assert_eq!(k.key_id().len(), 16);
        assert_eq!(k.public_hex().len(), 64);
    }
}
