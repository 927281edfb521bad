//! One server's application connections, under one budget.
//!
//! A `pg-database` server may hold thousands of tenant databases, and a PostgreSQL
//! connection is bound to one database. A pool per tenant database would multiply
//! connections by tenants, so this pool keys idle connections by database and keeps one
//! global count:
//!
//! - at most `budget` application connections are open on the server at once, whatever
//!   the number of databases (idle ones included);
//! - at most `per_database` of them for one tenant database (one busy tenant cannot take
//!   the whole budget); the shared database of `pg-schema`/`pg-shared` may use the budget;
//! - when the budget is used up and a database has no idle connection, the least recently
//!   used idle connection of another database is closed to make room;
//! - otherwise callers wait up to `wait`, then get [`DataError::Busy`] (→ 503 + Retry-After);
//! - idle connections older than `idle_timeout` are closed by a reaper task.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_postgres::{Client, NoTls};

use crate::{DataError, Result};

/// Pool limits.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Most open connections on the server.
    pub budget: usize,
    /// Most open connections to one tenant database (`pg-database`).
    pub per_database: usize,
    /// Longest wait for a connection.
    pub wait: Duration,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
}

struct Idle {
    client: Conn,
    since: Instant,
}

/// A client and the task driving its socket (awaited when the connection is closed for
/// another database, so the server has seen it go before a new one opens).
struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    async fn close(self) {
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

#[derive(Default)]
struct State {
    open: usize,
    per_db: HashMap<String, usize>,
    idle: HashMap<String, Vec<Idle>>,
    idle_count: usize,
}

/// A snapshot of the pool's use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolUse {
    /// Connections open (idle and in use).
    pub open: usize,
    /// Of those, idle.
    pub idle: usize,
    /// Databases with at least one open connection.
    pub databases: usize,
    /// The budget.
    pub budget: usize,
}

/// The pool.
pub struct BudgetPool {
    base: tokio_postgres::Config,
    shared_db: String,
    limits: PoolLimits,
    state: Mutex<State>,
    notify: Notify,
}

impl std::fmt::Debug for BudgetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetPool")
            .field("limits", &self.limits)
            .field("use", &self.usage())
            .finish_non_exhaustive()
    }
}

/// A connection checked out of the pool; returns itself on drop.
pub struct PooledClient {
    client: Option<Conn>,
    db: String,
    pool: Arc<BudgetPool>,
}

impl std::ops::Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Always Some until drop.
        match self.client.as_ref() {
            Some(c) => &c.client,
            None => unreachable_client(),
        }
    }
}

impl std::ops::DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        match self.client.as_mut() {
            Some(c) => &mut c.client,
            None => unreachable_client(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_client() -> ! {
    // The client is taken only in Drop; no code can observe it missing.
    panic!("pooled client used after release")
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.release(&self.db, client);
        }
    }
}

/// Reserves a slot for a connection being opened; gives it back if opening fails.
struct Slot<'a> {
    pool: &'a BudgetPool,
    db: &'a str,
    armed: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.forget(self.db);
        }
    }
}

enum Step {
    Reuse(Conn),
    Open(Option<Conn>),
    Wait,
}

impl BudgetPool {
    /// A pool connecting with `base` (user and password of the application role) to
    /// databases by name; `shared_db` is exempt from the per-database limit.
    pub fn new(base: tokio_postgres::Config, shared_db: String, limits: PoolLimits) -> Arc<Self> {
        let pool = Arc::new(Self {
            base,
            shared_db,
            limits,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        });
        let weak = Arc::downgrade(&pool);
        let period = (pool.limits.idle_timeout / 2).max(Duration::from_millis(50));
        tokio::spawn(reaper(weak, period));
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current use.
    pub fn usage(&self) -> PoolUse {
        let s = self.lock();
        PoolUse {
            open: s.open,
            idle: s.idle_count,
            databases: s.per_db.len(),
            budget: self.limits.budget,
        }
    }

    fn limit_for(&self, db: &str) -> usize {
        if db == self.shared_db {
            self.limits.budget
        } else {
            self.limits.per_database.max(1)
        }
    }

    /// Decides under the lock: reuse an idle connection, take a slot (possibly closing
    /// another database's idle connection), or wait.
    fn step(&self, db: &str) -> Step {
        let mut s = self.lock();
        while let Some(idle) = s.idle.get_mut(db).and_then(Vec::pop) {
            s.idle_count -= 1;
            if s.idle.get(db).is_some_and(Vec::is_empty) {
                s.idle.remove(db);
            }
            if idle.client.client.is_closed() {
                drop_count(&mut s, db);
                continue;
            }
            return Step::Reuse(idle.client);
        }
        self.take_slot(&mut s, db)
    }

    /// Takes a slot for `db` if the limits allow (closing the oldest idle connection of
    /// another database when only the budget is in the way), else `Wait`.
    fn take_slot(&self, s: &mut State, db: &str) -> Step {
        let mine = s.per_db.get(db).copied().unwrap_or(0);
        if mine >= self.limit_for(db) {
            return Step::Wait;
        }
        if s.open < self.limits.budget {
            s.open += 1;
            *s.per_db.entry(db.to_owned()).or_default() += 1;
            return Step::Open(None);
        }
        // Budget full: evict the least recently used idle connection of another database.
        let victim = s
            .idle
            .iter()
            .filter(|(k, _)| k.as_str() != db)
            .filter_map(|(k, v)| v.first().map(|i| (k.clone(), i.since)))
            .min_by_key(|(_, since)| *since)
            .map(|(k, _)| k);
        let Some(vdb) = victim else {
            return Step::Wait;
        };
        let client = match s.idle.get_mut(&vdb) {
            Some(list) if !list.is_empty() => list.remove(0).client,
            _ => return Step::Wait,
        };
        if s.idle.get(&vdb).is_some_and(Vec::is_empty) {
            s.idle.remove(&vdb);
        }
        s.idle_count -= 1;
        drop_count(s, &vdb);
        s.open += 1;
        *s.per_db.entry(db.to_owned()).or_default() += 1;
        Step::Open(Some(client))
    }

    /// Releases a slot whose connection never opened or has died.
    fn forget(&self, db: &str) {
        let mut s = self.lock();
        drop_count(&mut s, db);
        drop(s);
        self.notify.notify_waiters();
    }

    fn release(&self, db: &str, client: Conn) {
        if client.client.is_closed() {
            self.forget(db);
            return;
        }
        let mut s = self.lock();
        s.idle.entry(db.to_owned()).or_default().push(Idle {
            client,
            since: Instant::now(),
        });
        s.idle_count += 1;
        drop(s);
        self.notify.notify_waiters();
    }

    /// A connection to `db`, waiting at most the configured time.
    pub async fn get(self: &Arc<Self>, db: &str) -> Result<PooledClient> {
        let deadline = tokio::time::Instant::now() + self.limits.wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.step(db) {
                Step::Reuse(client) => {
                    return Ok(PooledClient {
                        client: Some(client),
                        db: db.to_owned(),
                        pool: self.clone(),
                    });
                }
                Step::Open(victim) => {
                    if let Some(v) = victim {
                        v.close().await;
                    }
                    let mut slot = Slot {
                        pool: self,
                        db,
                        armed: true,
                    };
                    let client = self.connect(db).await?;
                    slot.armed = false;
                    return Ok(PooledClient {
                        client: Some(client),
                        db: db.to_owned(),
                        pool: self.clone(),
                    });
                }
                Step::Wait => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(DataError::Busy);
                    }
                }
            }
        }
    }

    async fn connect(&self, db: &str) -> Result<Conn> {
        let mut cfg = self.base.clone();
        cfg.dbname(db);
        cfg.connect_timeout(Duration::from_secs(10));
        let (client, conn) = cfg
            .connect(NoTls)
            .await
            .map_err(|e| DataError::Unavailable(e.to_string()))?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "tenant database connection closed");
            }
        });
        Ok(Conn { client, task })
    }

    /// Closes every idle connection to `db` (before the database is dropped).
    pub fn close_idle(&self, db: &str) {
        let mut s = self.lock();
        if let Some(list) = s.idle.remove(db) {
            s.idle_count -= list.len();
            for _ in &list {
                drop_count(&mut s, db);
            }
        }
        drop(s);
        self.notify.notify_waiters();
    }

    fn reap(&self) {
        let timeout = self.limits.idle_timeout;
        let mut closed = Vec::new();
        let mut s = self.lock();
        let dbs: Vec<String> = s.idle.keys().cloned().collect();
        for db in dbs {
            let Some(list) = s.idle.get_mut(&db) else {
                continue;
            };
            let before = list.len();
            let mut keep = Vec::with_capacity(before);
            for i in list.drain(..) {
                if i.since.elapsed() >= timeout {
                    closed.push(i.client);
                } else {
                    keep.push(i);
                }
            }
            let gone = before - keep.len();
            if keep.is_empty() {
                s.idle.remove(&db);
            } else {
                s.idle.insert(db.clone(), keep);
            }
            s.idle_count -= gone;
            for _ in 0..gone {
                drop_count(&mut s, &db);
            }
        }
        drop(s);
        if !closed.is_empty() {
            drop(closed);
            self.notify.notify_waiters();
        }
    }
}

fn drop_count(s: &mut State, db: &str) {
    s.open = s.open.saturating_sub(1);
    if let Some(n) = s.per_db.get_mut(db) {
        *n -= 1;
        if *n == 0 {
            s.per_db.remove(db);
        }
    }
}

async fn reaper(pool: Weak<BudgetPool>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        match pool.upgrade() {
            Some(p) => p.reap(),
            None => return,
        }
    }
}
