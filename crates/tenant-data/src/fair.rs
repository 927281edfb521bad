//! Fair sharing of a bounded resource between tenants: a database server's connection budget
//! or the SQLite blocking pool.
//!
//! - **A cap per tenant**: one tenant holds at most `per_tenant × weight` of the `capacity`
//!   slots (and never all of them when there are more than one), so a tenant flooding the
//!   server leaves room for the others;
//! - **fair queueing** among tenants waiting: a freed slot goes to the waiting tenant holding
//!   the fewest slots for its weight (the plan's weight), ties to the one waiting longest;
//!   within one tenant, first come first served. A tenant that wants more than its share
//!   waits behind the others — its neighbours do not wait behind it;
//! - **bounded waits**: past `wait`, [`DataError::Busy`] (→ 503 + Retry-After).
//!
//! Cancellation-safe: a waiter dropped before or after being granted never leaks a slot.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::oneshot;

use crate::{DataError, Result};

/// Whom a slot is for: a tenant (its id), or the platform's own work.
pub type ShareKey = u128;

/// The platform's own work (closing idle databases): never capped below one slot.
pub const PLATFORM: ShareKey = 0;

/// Each plan's weight (from the plans' quotas; 1 for a plan not known yet).
#[derive(Debug, Default)]
pub struct PlanWeights(std::sync::RwLock<HashMap<String, u32>>);

impl PlanWeights {
    /// Replaces every plan's weight.
    pub fn replace(&self, weights: impl IntoIterator<Item = (String, u32)>) {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        *g = weights.into_iter().collect();
    }

    /// A tenant's weight.
    pub fn of(&self, t: &tenantplane_core::Tenant) -> u32 {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(t.plan.as_str())
            .copied()
            .unwrap_or(1)
            .max(1)
    }
}

/// A tenant's key.
pub fn key_of(t: &tenantplane_core::Tenant) -> ShareKey {
    t.id.as_uuid().as_u128()
}

#[derive(Debug, Default)]
struct Tenant {
    in_use: usize,
    weight: u32,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    seq: u64,
    tenants: HashMap<ShareKey, Tenant>,
}

/// A snapshot of the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShareUse {
    /// Slots held.
    pub in_use: usize,
    /// Requests waiting for one.
    pub waiting: usize,
    /// Tenants holding or waiting for a slot.
    pub tenants: usize,
    /// Requests refused after waiting (`Busy`), since start.
    pub refused: u64,
}

/// The gate.
#[derive(Debug)]
pub struct FairShare {
    capacity: usize,
    per_tenant: usize,
    /// Whether a tenant's cap grows with its weight (not for SQLite: one connection per
    /// tenant, so a second slot would only wait on the first).
    weighted_cap: bool,
    wait: Duration,
    state: Mutex<State>,
    refused: std::sync::atomic::AtomicU64,
}

/// A slot; freed (and handed to the next waiter in fair order) on drop.
#[derive(Debug)]
pub struct SharePermit {
    gate: Arc<FairShare>,
    key: ShareKey,
}

impl Drop for SharePermit {
    fn drop(&mut self) {
        self.gate.release(self.key);
    }
}

/// A queued request; if dropped after being granted but before taking the slot, gives it
/// back; if dropped while queued, leaves the queue.
struct Waiter<'a> {
    gate: &'a Arc<FairShare>,
    key: ShareKey,
    seq: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let mut s = self.gate.lock();
        // Under the lock no grant can race: either ours is in the channel or we are queued.
        if rx.try_recv().is_ok() {
            drop(s);
            self.gate.release(self.key);
            return;
        }
        if let Some(t) = s.tenants.get_mut(&self.key) {
            t.waiting.retain(|(seq, _)| *seq != self.seq);
        }
        forget_if_idle(&mut s, self.key);
    }
}

fn forget_if_idle(s: &mut State, key: ShareKey) {
    if s.tenants
        .get(&key)
        .is_some_and(|t| t.in_use == 0 && t.waiting.is_empty())
    {
        s.tenants.remove(&key);
    }
}

impl FairShare {
    /// A gate of `capacity` slots, `per_tenant` of them per unit of weight for one tenant,
    /// waits bounded by `wait`.
    pub fn new(capacity: usize, per_tenant: usize, wait: Duration) -> Arc<Self> {
        Self::build(capacity, per_tenant, true, wait)
    }

    /// A gate whose per-tenant cap is `per_tenant` whatever the weight (weights still order
    /// the queue).
    pub fn unweighted_cap(capacity: usize, per_tenant: usize, wait: Duration) -> Arc<Self> {
        Self::build(capacity, per_tenant, false, wait)
    }

    fn build(capacity: usize, per_tenant: usize, weighted_cap: bool, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            per_tenant: per_tenant.max(1),
            weighted_cap,
            wait,
            state: Mutex::new(State::default()),
            refused: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Most slots one tenant of `weight` may hold.
    pub fn cap(&self, key: ShareKey, weight: u32) -> usize {
        let most = if self.capacity > 1 && key != PLATFORM {
            self.capacity - 1
        } else {
            self.capacity
        };
        let weight = if self.weighted_cap { weight.max(1) } else { 1 };
        self.per_tenant
            .saturating_mul(weight as usize)
            .clamp(1, most)
    }

    /// Current use.
    pub fn usage(&self) -> ShareUse {
        let s = self.lock();
        ShareUse {
            in_use: s.in_use,
            waiting: s.tenants.values().map(|t| t.waiting.len()).sum(),
            tenants: s.tenants.len(),
            refused: self.refused.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// A slot for `key` (weight `weight`), waiting in fair order at most the configured time.
    pub async fn acquire(self: &Arc<Self>, key: ShareKey, weight: u32) -> Result<SharePermit> {
        let (seq, rx) = {
            let mut s = self.lock();
            let cap = self.cap(key, weight);
            let free = s.in_use < self.capacity;
            let t = s.tenants.entry(key).or_default();
            t.weight = weight.max(1);
            if free && t.in_use < cap && t.waiting.is_empty() {
                t.in_use += 1;
                s.in_use += 1;
                return Ok(SharePermit {
                    gate: self.clone(),
                    key,
                });
            }
            s.seq += 1;
            let seq = s.seq;
            let (tx, rx) = oneshot::channel();
            if let Some(t) = s.tenants.get_mut(&key) {
                t.waiting.push_back((seq, tx));
            }
            (seq, rx)
        };
        let mut waiter = Waiter {
            gate: self,
            key,
            seq,
            rx: Some(rx),
        };
        let granted = match waiter.rx.as_mut() {
            Some(rx) => tokio::time::timeout(self.wait, rx).await,
            None => return Err(DataError::Busy),
        };
        match granted {
            Ok(Ok(())) => {
                waiter.rx = None; // the slot is ours now
                Ok(SharePermit {
                    gate: self.clone(),
                    key,
                })
            }
            // Timed out (or the sender vanished): the waiter's drop leaves the queue or gives
            // back a slot granted at the last moment.
            _ => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(DataError::Busy)
            }
        }
    }

    fn release(&self, key: ShareKey) {
        let mut s = self.lock();
        s.in_use = s.in_use.saturating_sub(1);
        if let Some(t) = s.tenants.get_mut(&key) {
            t.in_use = t.in_use.saturating_sub(1);
        }
        self.dispatch(&mut s);
        forget_if_idle(&mut s, key);
    }

    /// Hands free slots to waiters: the tenant with the fewest slots per weight first (ties:
    /// the longest waiting), skipping tenants at their cap.
    fn dispatch(&self, s: &mut State) {
        while s.in_use < self.capacity {
            let pick = s
                .tenants
                .iter()
                .filter(|(k, t)| !t.waiting.is_empty() && t.in_use < self.cap(**k, t.weight))
                .min_by(|(_, a), (_, b)| {
                    // in_use / weight compared as in_use_a × weight_b vs in_use_b × weight_a.
                    let la = a.in_use as u64 * b.weight as u64;
                    let lb = b.in_use as u64 * a.weight as u64;
                    la.cmp(&lb).then_with(|| {
                        let ha = a.waiting.front().map_or(u64::MAX, |w| w.0);
                        let hb = b.waiting.front().map_or(u64::MAX, |w| w.0);
                        ha.cmp(&hb)
                    })
                })
                .map(|(k, _)| *k);
            let Some(key) = pick else {
                return;
            };
            let Some(t) = s.tenants.get_mut(&key) else {
                return;
            };
            let Some((_, tx)) = t.waiting.pop_front() else {
                continue;
            };
            if tx.send(()).is_ok() {
                t.in_use += 1;
                s.in_use += 1;
            }
            // A closed channel is a waiter gone: try the next one.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ShareKey = 1;
    const B: ShareKey = 2;
    const C: ShareKey = 3;

    fn gate(capacity: usize, per_tenant: usize) -> Arc<FairShare> {
        FairShare::new(capacity, per_tenant, Duration::from_secs(5))
    }

    /// Queues a request and returns it once it has registered as a waiter.
    async fn queued(
        g: &Arc<FairShare>,
        key: ShareKey,
        weight: u32,
        order: &Arc<Mutex<Vec<ShareKey>>>,
    ) -> tokio::task::JoinHandle<SharePermit> {
        let before = g.usage().waiting;
        let (g2, order) = (g.clone(), order.clone());
        let h = tokio::spawn(async move {
            let p = g2.acquire(key, weight).await.unwrap();
            order.lock().unwrap().push(key);
            p
        });
        while g.usage().waiting == before {
            tokio::task::yield_now().await;
        }
        h
    }

    #[tokio::test]
    async fn a_tenant_never_takes_every_slot() {
        let g = gate(4, 10);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(g.acquire(A, 1).await.unwrap());
        }
        assert_eq!(g.cap(A, 1), 3);
        // A's fourth waits; B gets the last slot at once.
        let order = Arc::new(Mutex::new(Vec::new()));
        let a4 = queued(&g, A, 1, &order).await;
        let b = g.acquire(B, 1).await.unwrap();
        assert_eq!(g.usage().in_use, 4);
        drop(b);
        // B's slot is free, but A is at its cap: it stays queued.
        tokio::task::yield_now().await;
        assert!(order.lock().unwrap().is_empty());
        drop(held.pop());
        let p = a4.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![A]);
        drop(p);
        drop(held);
        assert_eq!(g.usage(), ShareUse::default());
    }

    #[tokio::test]
    async fn a_neighbour_waiting_goes_before_the_flooding_tenant() {
        let g = gate(4, 10);
        let a1 = g.acquire(A, 1).await.unwrap();
        let a2 = g.acquire(A, 1).await.unwrap();
        let c1 = g.acquire(C, 1).await.unwrap();
        let c2 = g.acquire(C, 1).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // A floods: three more queued first; then B arrives once.
        let mut waits = Vec::new();
        for _ in 0..3 {
            waits.push(queued(&g, A, 1, &order).await);
        }
        waits.push(queued(&g, B, 1, &order).await);
        // C frees a slot: B (holding none) gets it although A's waiters came first.
        drop(c1);
        let mut permits = vec![waits.pop().unwrap().await.unwrap()];
        assert_eq!(*order.lock().unwrap(), vec![B]);
        // C frees another: A is next (C is not waiting).
        drop(c2);
        permits.push(waits.remove(0).await.unwrap());
        assert_eq!(*order.lock().unwrap(), vec![B, A]);
        drop((a1, a2, permits));
        for w in waits {
            drop(w.await.unwrap());
        }
        assert_eq!(g.usage(), ShareUse::default());
    }

    #[tokio::test]
    async fn freed_slots_follow_the_plans_weights() {
        let g = gate(4, 4);
        let mut held = vec![
            g.acquire(A, 1).await.unwrap(),
            g.acquire(A, 1).await.unwrap(),
            g.acquire(B, 3).await.unwrap(),
            g.acquire(B, 3).await.unwrap(),
        ];
        let order = Arc::new(Mutex::new(Vec::new()));
        let a = queued(&g, A, 1, &order).await;
        let b = queued(&g, B, 3, &order).await;
        // Both hold 2; per weight B (2/3) is further below its share than A (2/1).
        drop(held.remove(0));
        let first = b.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![B]);
        drop(held.remove(0));
        let second = a.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![B, A]);
        drop((first, second, held));
        assert_eq!(g.usage(), ShareUse::default());
    }

    #[tokio::test]
    async fn waits_are_bounded_and_abandoned_waits_leak_nothing() {
        let g = FairShare::new(1, 1, Duration::from_millis(50));
        let p = g.acquire(A, 1).await.unwrap();
        assert!(matches!(g.acquire(B, 1).await, Err(DataError::Busy)));
        // A waiter cancelled while queued leaves the queue.
        let g2 = g.clone();
        let h = tokio::spawn(async move { g2.acquire(B, 1).await.map(drop) });
        while g.usage().waiting == 0 {
            tokio::task::yield_now().await;
        }
        h.abort();
        let _ = h.await;
        assert_eq!(g.usage().waiting, 0);
        drop(p);
        // The one wait that ran out is counted as a refusal (`Busy`).
        assert_eq!(
            g.usage(),
            ShareUse {
                refused: 1,
                ..Default::default()
            }
        );
        // Everything is free again.
        drop(g.acquire(C, 1).await.unwrap());
    }
}
