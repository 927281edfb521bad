//! The registry of per-tenant SQLite databases.
//!
//! - One file per tenant, `{dir}/{tenant id}.db`, WAL mode.
//! - At most `max_open` databases open at once (least recently used closed first, after a
//!   `wal_checkpoint(TRUNCATE)`); the default cap is derived from the process's file-descriptor
//!   limit (each open database in WAL mode holds about three descriptors).
//! - All SQLite work runs on tokio's blocking pool in `max_blocking` slots, so the number of
//!   threads doing SQLite work is bounded by configuration (O(cores)), never by the number of
//!   tenants. The slots are shared fairly ([`crate::fair`]): one tenant holds one at a time
//!   (it has one connection) and a freed slot goes to the waiting tenant in fair order, so a
//!   tenant flooding the server queues behind its neighbours, not they behind it. A caller
//!   that cannot get a slot within `busy_wait` gets [`DataError::Busy`].
//! - A database is served only at the schema version the binary needs.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{
    DataError, Result,
    fair::{FairShare, PLATFORM, PlanWeights, ShareKey, key_of},
    migrate::{MigrationReport, MigrationSet, migrate_sqlite},
    workers::Workers,
};
use rusqlite::{Connection, OpenFlags};
use tenantplane_core::{Tenant, TenantId};

/// Registry settings.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Directory of the tenant files.
    pub dir: PathBuf,
    /// Most databases open at once.
    pub max_open: usize,
    /// Most SQLite jobs running at once (threads of the blocking pool doing SQLite work).
    pub max_blocking: usize,
    /// How long a caller waits for a permit before [`DataError::Busy`].
    pub busy_wait: Duration,
    /// `synchronous=FULL` (true) or `NORMAL` (false, survives process crashes but not power
    /// loss).
    pub synchronous_full: bool,
    /// A database unused for this long is closed by [`SqliteRegistry::close_idle`]: an idle
    /// tenant costs a catalog entry, not an open connection with its page cache.
    pub idle_close: Duration,
    /// Page cache per open database, in KiB (`PRAGMA cache_size=-N`; SQLite's default is
    /// 2,000 KiB).
    pub cache_kib: u32,
    /// SQLite's memory in the whole process, in KiB (`PRAGMA soft_heap_limit`): past it,
    /// SQLite frees cached pages of any open database before allocating more, so memory
    /// stays bounded however many tenants are open at once (0: no limit).
    pub memory_kib: u64,
}

/// Default cap of open tenant databases. Each open database holds its schema, lookaside,
/// statements and page cache (≈ 0.3 MiB once used; the page cache is bounded further by
/// the process-wide soft heap limit). 256 bounds it near 70 MiB; more active tenants
/// reopen their file (≈ 0.2 ms) instead.
pub const DEFAULT_MAX_OPEN: usize = 256;

impl SqliteConfig {
    /// Defaults for `dir`: cap from the fd limit, two jobs per core.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            dir: dir.into(),
            max_open: fd_based_cap(DEFAULT_MAX_OPEN),
            max_blocking: 2 * cores,
            busy_wait: Duration::from_secs(5),
            synchronous_full: true,
            idle_close: Duration::from_secs(60),
            cache_kib: 128,
            memory_kib: 16 * 1024,
        }
    }
}

/// The open-database cap allowed by the fd limit: a third of the soft `RLIMIT_NOFILE` after
/// reserving 256 descriptors for sockets and the catalog, at most `wanted`, at least 8.
pub fn fd_based_cap(wanted: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    (soft.saturating_sub(256) / 3).clamp(8, wanted.max(8))
}

/// One tenant's database: a single connection (SQLite has one writer anyway), opened lazily.
#[derive(Debug)]
struct TenantDb {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

#[derive(Debug, Default)]
struct Lru {
    /// Entry, last-use tick, last-use instant.
    map: HashMap<TenantId, (Arc<TenantDb>, u64, std::time::Instant)>,
    tick: u64,
}

/// Counters for observability and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Databases opened.
    pub opened: AtomicU64,
    /// Databases closed by eviction.
    pub evicted: AtomicU64,
}

/// The registry.
#[derive(Debug)]
pub struct SqliteRegistry {
    cfg: SqliteConfig,
    migrations: Arc<MigrationSet>,
    lru: Mutex<Lru>,
    /// The blocking pool's slots, shared fairly: one per tenant at a time (it has one
    /// connection), freed slots to the waiting tenant in fair order (plan weights).
    share: Arc<FairShare>,
    /// The threads that run the slots' jobs: exactly one per slot.
    workers: Workers,
    weights: Arc<PlanWeights>,
    stats: Arc<Stats>,
}

fn unavailable(e: impl std::fmt::Display) -> DataError {
    DataError::Unavailable(e.to_string())
}

impl SqliteRegistry {
    /// A registry over `cfg.dir` serving databases at the version of `migrations`.
    pub fn new(cfg: SqliteConfig, migrations: Arc<MigrationSet>) -> Result<Self> {
        std::fs::create_dir_all(&cfg.dir).map_err(unavailable)?;
        if cfg.memory_kib > 0 {
            // Process-wide: set once, through any connection.
            let c = Connection::open_in_memory().map_err(unavailable)?;
            c.query_row(
                &format!(
                    "PRAGMA soft_heap_limit = {}",
                    cfg.memory_kib.saturating_mul(1024)
                ),
                [],
                |_| Ok(()),
            )?;
        }
        let slots = cfg.max_blocking.max(1);
        let share = FairShare::unweighted_cap(slots, 1, cfg.busy_wait);
        let workers = Workers::start(slots, "tp-sqlite")?;
        Ok(Self {
            cfg,
            migrations,
            lru: Mutex::new(Lru::default()),
            share,
            workers,
            weights: Arc::default(),
            stats: Arc::new(Stats::default()),
        })
    }

    /// The open-database cap.
    pub fn max_open(&self) -> usize {
        self.cfg.max_open
    }

    /// The file of a tenant.
    pub fn path_of(&self, id: &TenantId) -> PathBuf {
        self.cfg.dir.join(format!("{id}.db"))
    }

    /// Databases currently open.
    pub fn open_count(&self) -> usize {
        self.lru
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .values()
            .filter(|(db, _, _)| db.conn.try_lock().map(|c| c.is_some()).unwrap_or(true))
            .count()
    }

    /// The fair share of the blocking pool: jobs running, jobs queued, refusals.
    pub fn share_use(&self) -> crate::fair::ShareUse {
        self.share.usage()
    }

    /// Open/evict counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Returns the tenant's entry, marking it most recently used, and the entries evicted to
    /// stay under the cap (to be closed by the caller on the blocking pool).
    fn checkout(&self, id: TenantId) -> (Arc<TenantDb>, Vec<Arc<TenantDb>>) {
        let mut g = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        g.tick += 1;
        let tick = g.tick;
        let path = self.path_of(&id);
        let db = {
            let entry = g.map.entry(id).or_insert_with(|| {
                (
                    Arc::new(TenantDb {
                        path,
                        conn: Mutex::new(None),
                    }),
                    tick,
                    std::time::Instant::now(),
                )
            });
            entry.1 = tick;
            entry.2 = std::time::Instant::now();
            entry.0.clone()
        };
        let mut evicted = Vec::new();
        while g.map.len() > self.cfg.max_open.max(1) {
            let victim = g
                .map
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(k, _)| *k);
            match victim.and_then(|k| g.map.remove(&k)) {
                Some((db, _, _)) => evicted.push(db),
                None => break,
            }
        }
        (db, evicted)
    }

    /// Uses `weights` for the plans' shares (the tenant data's one table).
    pub(crate) fn set_weights(&mut self, weights: Arc<PlanWeights>) {
        self.weights = weights;
    }

    /// Runs `f` on the registry's threads in a slot of `key`'s share.
    async fn blocking<T, F>(&self, key: ShareKey, weight: u32, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let permit = self.share.acquire(key, weight).await?;
        self.workers
            .run(move || {
                let _permit = permit;
                f()
            })
            .await
    }

    fn open_conn(&self, path: &Path, create: bool) -> Result<Connection> {
        open_conn(path, create, self.cfg.synchronous_full, self.cfg.cache_kib)
    }

    /// Closes (checkpointed) every database unused for `idle_close`; returns how many.
    /// Run periodically by the server: memory then follows the tenants in use, not every
    /// tenant touched since start.
    pub async fn close_idle(&self) -> Result<usize> {
        let idle: Vec<Arc<TenantDb>> = {
            let mut g = self.lru.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            let old: Vec<TenantId> = g
                .map
                .iter()
                .filter(|(_, (_, _, at))| now.duration_since(*at) >= self.cfg.idle_close)
                .map(|(k, _)| *k)
                .collect();
            old.iter()
                .filter_map(|k| g.map.remove(k).map(|(db, _, _)| db))
                .collect()
        };
        if idle.is_empty() {
            return Ok(0);
        }
        let n = idle.len();
        let stats = self.stats.clone();
        self.blocking(PLATFORM, 1, move || {
            close_all(idle, &stats);
            Ok(())
        })
        .await?;
        Ok(n)
    }

    /// Creates (or adopts, if it exists and carries only our migrations) the tenant's
    /// database and brings it to the binary's schema version.
    pub async fn provision(&self, tenant: &Tenant) -> Result<MigrationReport> {
        self.migrate_with(tenant, true).await
    }

    /// Brings an existing tenant database to the binary's schema version (fleet
    /// migrations); never creates a missing file.
    pub async fn migrate(&self, tenant: &Tenant) -> Result<MigrationReport> {
        self.migrate_with(tenant, false).await
    }

    /// Opens the tenant's database (creating it if `create`), refuses one holding tables
    /// we did not create, and applies the missing migrations.
    async fn migrate_with(&self, tenant: &Tenant, create: bool) -> Result<MigrationReport> {
        let (db, evicted) = self.checkout(tenant.id);
        let set = self.migrations.clone();
        let sync_full = self.cfg.synchronous_full;
        let cache_kib = self.cfg.cache_kib;
        let stats = self.stats.clone();
        let (key, weight) = (key_of(tenant), self.weights.of(tenant));
        self.blocking(key, weight, move || {
            close_all(evicted, &stats);
            let mut guard = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(open_conn(&db.path, create, sync_full, cache_kib)?);
                stats.opened.fetch_add(1, Ordering::Relaxed);
            }
            let conn = guard
                .as_mut()
                .ok_or_else(|| DataError::Db("connection vanished".into()))?;
            let foreign: i64 = conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 AND name <> 'tp_migrations' AND NOT EXISTS (SELECT 1 FROM sqlite_master m2 \
                 WHERE m2.name = 'tp_migrations')",
                [],
                |r| r.get(0),
            )?;
            if foreign > 0 {
                return Err(DataError::Foreign(
                    "the tenant file exists and holds tables Tenantplane did not create".into(),
                ));
            }
            migrate_sqlite(conn, &set)
        })
        .await
    }

    /// Runs `f` on the tenant's database (which must be provisioned and up to date).
    pub async fn run<T, F>(&self, tenant: &Tenant, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (db, evicted) = self.checkout(tenant.id);
        let need = self.migrations.schema_version();
        let sync_full = self.cfg.synchronous_full;
        let cache_kib = self.cfg.cache_kib;
        let stats = self.stats.clone();
        let (key, weight) = (key_of(tenant), self.weights.of(tenant));
        self.blocking(key, weight, move || {
            close_all(evicted, &stats);
            let mut guard = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                let conn = open_conn(&db.path, false, sync_full, cache_kib)?;
                let have: u32 = conn
                    .query_row("SELECT count(*) FROM tp_migrations", [], |r| r.get(0))
                    .map_err(|_| {
                        DataError::Unavailable("tenant database is not provisioned".into())
                    })?;
                if have != need {
                    return Err(DataError::Outdated { have, need });
                }
                *guard = Some(conn);
                stats.opened.fetch_add(1, Ordering::Relaxed);
            }
            let conn = guard
                .as_mut()
                .ok_or_else(|| DataError::Db("connection vanished".into()))?;
            f(conn).map_err(DataError::from)
        })
        .await
    }

    /// Closes the tenant's database and deletes its files (database, WAL, shared memory).
    /// Idempotent.
    pub async fn drop_tenant(&self, id: TenantId) -> Result<()> {
        let db = self
            .lru
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .remove(&id)
            .map(|(db, _, _)| db);
        let path = self.path_of(&id);
        let stats = self.stats.clone();
        self.blocking(id.as_uuid().as_u128(), 1, move || {
            if let Some(db) = db {
                close_all(vec![db], &stats);
            }
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Ok(())
        })
        .await
    }

    /// Whether the tenant's file exists.
    pub fn exists(&self, id: &TenantId) -> bool {
        self.path_of(id).exists()
    }

    #[doc(hidden)]
    pub fn open_for_test(&self, id: &TenantId) -> Result<Connection> {
        self.open_conn(&self.path_of(id), false)
    }
}

fn open_conn(
    path: &Path,
    create: bool,
    synchronous_full: bool,
    cache_kib: u32,
) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    } else if !path.exists() {
        return Err(DataError::Unavailable(
            "tenant database is not provisioned".into(),
        ));
    }
    let conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
    // Prepared statements cost memory per connection (tens of KiB each for a search); with
    // hundreds of tenant files open, a short cache per file keeps the hot ones only.
    conn.set_prepared_statement_cache_capacity(STATEMENTS_PER_FILE);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA foreign_keys=ON; \
         PRAGMA busy_timeout=5000; PRAGMA cache_size=-{};",
        if synchronous_full { "FULL" } else { "NORMAL" },
        cache_kib.max(64)
    ))?;
    Ok(conn)
}

/// Prepared statements kept per open tenant file.
const STATEMENTS_PER_FILE: usize = 8;

/// Checkpoints and closes evicted databases (waits for any job still using one).
fn close_all(evicted: Vec<Arc<TenantDb>>, stats: &Stats) {
    for db in evicted {
        let mut guard = db.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = guard.take() {
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %e, "checkpoint on eviction failed");
            }
            drop(conn);
            stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }
}
