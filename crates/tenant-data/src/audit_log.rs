//! The tenant's audit log, in the tenant's own store (so it moves, backs up and is erased
//! with the tenant): append-only entries ([`tenantplane_audit::Entry`]) in a hash chain
//! ([`tenantplane_audit::chain`]).
//!
//! Writing is in two steps, as a transparency log sequences and then integrates its entries:
//! - **append**: an entry is inserted unsealed (`seq` and `hash` empty) — by the write it
//!   records, in the same transaction ([`insert_sqlite`], [`insert_pg`]), or by the
//!   asynchronous writer for reads and events that change nothing in the store;
//! - **seal** ([`seal`]): under the tenant's head row, unsealed entries in insertion order
//!   get the next `seq` and their chain hash, and the head moves. The asynchronous writer
//!   seals after each batch; an entry stays unsealed at most until then.
//!
//! Triggers refuse changing a sealed entry (sealing may only set `seq` and `hash` of an
//! unsealed one) and deleting one not covered by a signed checkpoint ([`prune`]); the chain
//! finds whatever bypasses them ([`verify`]).

mod pg;
mod query;
mod sqlite;

use tenantplane_audit::{
    Entry,
    chain::{Break, CheckpointKey, Hash},
};

pub use query::{AuditQuery, Stored};

use crate::{Result, data::TenantDb, migrate::Migration};

/// The audit log's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    component: "audit",
    version: 1,
    name: "audit_log",
    sqlite: sqlite::MIGRATION,
    postgres: pg::MIGRATION,
}];

tokio::task_local! {
    static PENDING: std::cell::RefCell<Vec<Entry>>;
}

/// Runs `f` with `entries` pending: the first tenant-store write inside it that takes them
/// ([`take_pending`]) commits them in its own transaction — for components whose writes
/// happen deep in a service (identity's user changes) without threading an entry through
/// every signature. A write that fails or never happens commits none of them.
pub async fn committed_with<F: std::future::Future>(entries: Vec<Entry>, f: F) -> F::Output {
    PENDING.scope(std::cell::RefCell::new(entries), f).await
}

/// The entries pending for this task's next write (once: they are taken), see
/// [`committed_with`].
pub fn take_pending() -> Vec<Entry> {
    PENDING
        .try_with(|p| std::mem::take(&mut *p.borrow_mut()))
        .unwrap_or_default()
}

/// Entries sealed per transaction at most.
pub const SEAL_BATCH: usize = 5_000;

/// Inserts `entries` unsealed, inside a SQLite transaction of the caller.
pub fn insert_sqlite(tx: &rusqlite::Transaction<'_>, entries: &[Entry]) -> rusqlite::Result<()> {
    sqlite::insert(tx, entries)
}

/// Inserts `entries` unsealed, inside a PostgreSQL transaction of the caller (one
/// statement).
pub async fn insert_pg(
    tx: &tokio_postgres::Transaction<'_>,
    entries: &[Entry],
) -> std::result::Result<(), tokio_postgres::Error> {
    pg::insert(tx, entries).await
}

/// Appends `entries` and seals everything unsealed, in one transaction.
pub async fn append(db: TenantDb<'_>, entries: Vec<Entry>) -> Result<u64> {
    let tenant = db.tenant_id();
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                sqlite::insert(&tx, &entries)?;
                let n = sqlite::seal(&tx, tenant, usize::MAX)?;
                tx.commit()?;
                Ok(n)
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    pg::insert(tx, &entries).await?;
                    pg::seal(tx, tenant, usize::MAX).await
                })
            })
            .await
        }
    }
}

/// Seals up to [`SEAL_BATCH`] unsealed entries; returns how many.
pub async fn seal(db: TenantDb<'_>) -> Result<u64> {
    let tenant = db.tenant_id();
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let n = sqlite::seal(&tx, tenant, SEAL_BATCH)?;
                tx.commit()?;
                Ok(n)
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| Box::pin(async move { pg::seal(tx, tenant, SEAL_BATCH).await }))
                .await
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Sealed entries whose hash was checked.
    pub checked: u64,
    /// The head: the last sealed entry.
    pub head_seq: i64,
    /// Its hash (hex).
    pub head_hash: String,
    /// The newest checkpoint the walk started from (0: none, the log was never pruned).
    pub checkpoint_seq: i64,
    /// Entries appended but not sealed yet.
    pub unsealed: u64,
    /// The first break; `None`: the chain holds.
    pub broken: Option<Break>,
}

/// The head and newest checkpoint of a log, as stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Anchors {
    pub head: Option<(i64, Vec<u8>)>,
    pub checkpoint: Option<tenantplane_audit::chain::Checkpoint>,
    pub unsealed: u64,
}

/// Rows fetched per page by [`verify`].
const PAGE: i64 = 10_000;

/// Walks the whole chain from the newest checkpoint (its signature checked with `key`) or
/// from the genesis, and reports the first break.
pub async fn verify(db: TenantDb<'_>, key: &CheckpointKey) -> Result<Verification> {
    let tenant = db.tenant_id();
    let anchors = match db {
        TenantDb::Sqlite(s) => s.run(sqlite::anchors).await?,
        TenantDb::Pg(p) => {
            p.transaction(|tx| Box::pin(async move { pg::anchors(tx).await }))
                .await?
        }
    };
    let (head_seq, head_hash) = anchors
        .head
        .clone()
        .unwrap_or((0, tenantplane_audit::chain::genesis(tenant).to_vec()));
    let report = |checked, cp, broken| Verification {
        checked,
        head_seq,
        head_hash: tenantplane_audit::chain::hex(&head_hash),
        checkpoint_seq: cp,
        unsealed: anchors.unsealed,
        broken,
    };
    let (from, start): (i64, Hash) = match &anchors.checkpoint {
        Some(c) if !key.verify(tenant, c) => {
            return Ok(report(0, c.seq, Some(Break::BadCheckpoint { seq: c.seq })));
        }
        Some(c) => (c.seq, c.hash),
        None => (0, tenantplane_audit::chain::genesis(tenant)),
    };
    let mut walk = tenantplane_audit::chain::ChainCheck::start(from, start);
    let mut after = from;
    loop {
        let page = match db {
            TenantDb::Sqlite(s) => s.run(move |c| sqlite::sealed_after(c, after, PAGE)).await?,
            TenantDb::Pg(p) => {
                p.transaction(move |tx| {
                    Box::pin(async move { pg::sealed_after(tx, after, PAGE).await })
                })
                .await?
            }
        };
        let n = page.len();
        let mut good = true;
        for (seq, e, h) in &page {
            after = *seq;
            if !walk.next(*seq, e, h) {
                good = false;
                break;
            }
        }
        if !good || (n as i64) < PAGE {
            break;
        }
    }
    let v = walk.finish(head_seq, &head_hash);
    Ok(report(v.checked, from, v.broken))
}

/// Entries matching `q`, newest first.
pub async fn search(db: TenantDb<'_>, q: AuditQuery) -> Result<Vec<Stored>> {
    match db {
        TenantDb::Sqlite(s) => s.run(move |c| sqlite::search(c, &q)).await,
        TenantDb::Pg(p) => {
            p.transaction(move |tx| Box::pin(async move { pg::search(tx, &q).await }))
                .await
        }
    }
}

/// Prunes the entries recorded before `before_ms` (the longest prefix of the chain that is
/// all older), after checking that prefix and signing a checkpoint of its last entry.
/// `Ok(None)`: nothing to prune. A broken chain is never pruned: the break is returned.
pub async fn prune(
    db: TenantDb<'_>,
    before_ms: i64,
    key: &CheckpointKey,
) -> Result<std::result::Result<Option<i64>, Break>> {
    let tenant = db.tenant_id();
    // The check before signing: a checkpoint must never vouch for a tampered prefix.
    let v = verify(db, key).await?;
    if let Some(b) = v.broken {
        return Ok(Err(b));
    }
    let key = key.clone();
    let at = tenantplane_audit::now_ms();
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = sqlite::prune(&tx, tenant, before_ms, &key, at)?;
                tx.commit()?;
                Ok(Ok(out))
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move { Ok(Ok(pg::prune(tx, tenant, before_ms, &key, at).await?)) })
            })
            .await
        }
    }
}
