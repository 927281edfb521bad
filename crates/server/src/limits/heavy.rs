//! The per-tenant limit on concurrent expensive requests (FHIR searches, history, Bundles):
//! the plan's `max_concurrent_heavy` run at once per tenant, and never more than
//! `limits.heavy_per_tenant_max` (default: half the machine's cores, at least one) — so one
//! tenant's expensive work cannot occupy every core, which is what its neighbours' latency
//! depends on once the connection budget is shared fairly. More wait their turn (first
//! come, first served) for at most `limits.heavy_wait_ms`, then get 429 `rate-limited` with
//! `Retry-After`. A tenant flooding the server with heavy work thus queues behind itself,
//! and its neighbours' requests are not stuck behind its queue.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tenantplane_core::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// Tenants tracked before idle entries are dropped.
const TRACKED: usize = 4096;

/// The gate.
#[derive(Debug)]
pub struct HeavyGate {
    wait: Duration,
    most: u32,
    slots: Mutex<HashMap<TenantId, (u32, Arc<Semaphore>)>>,
}

impl HeavyGate {
    /// A gate whose waits last at most `wait`, letting a tenant run at most `most` at once
    /// whatever its plan (0: half the cores, at least one).
    pub fn new(wait: Duration, most: u32) -> Self {
        let most = if most == 0 {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            (cores / 2).max(1) as u32
        } else {
            most
        };
        Self {
            wait,
            most,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, tenant: TenantId, limit: u32) -> Arc<Semaphore> {
        let limit = limit.clamp(1, self.most);
        let mut g = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= TRACKED && !g.contains_key(&tenant) {
            // Drop tenants with nothing running (their semaphore is whole).
            g.retain(|_, (n, s)| s.available_permits() < *n as usize);
        }
        match g.get(&tenant) {
            Some((n, s)) if *n == limit => s.clone(),
            // New, or the plan changed: a fresh semaphore (slots held on the old one
            // finish there).
            _ => {
                let s = Arc::new(Semaphore::new(limit as usize));
                g.insert(tenant, (limit, s.clone()));
                s
            }
        }
    }

    /// A slot for one expensive request of `tenant`, whose plan allows `limit` at once.
    pub async fn enter(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        let s = self.semaphore(tenant, limit);
        let limit = limit.clamp(1, self.most);
        let refused = || {
            metrics::counter!("tenantplane_heavy_refusals_total").increment(1);
            ApiError::rate_limited(
                &format!(
                    "this tenant already runs {limit} expensive requests (searches, history, \
                     Bundles) at once, the most its plan allows; retry shortly"
                ),
                1,
            )
        };
        match tokio::time::timeout(self.wait, s.acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(refused()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_runs_its_plans_share_and_waits_then_is_refused() {
        let g = HeavyGate::new(Duration::from_millis(30), 8);
        let (a, b) = (TenantId::new(), TenantId::new());
        let a1 = g.enter(a, 2).await.unwrap();
        let _a2 = g.enter(a, 2).await.unwrap();
        // A's third waits, then 429 with Retry-After.
        let e = g.enter(a, 2).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(1)));
        // B is not affected by A's queue.
        let _b = g.enter(b, 2).await.unwrap();
        // A slot freed while waiting is taken.
        let g = Arc::new(g);
        let g2 = g.clone();
        let waiting = tokio::spawn(async move { g2.enter(a, 2).await.is_ok() });
        tokio::task::yield_now().await;
        drop(a1);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_plan_change_applies_to_new_requests() {
        let g = HeavyGate::new(Duration::from_millis(10), 8);
        let a = TenantId::new();
        let _one = g.enter(a, 1).await.unwrap();
        assert!(g.enter(a, 1).await.is_err());
        // Upgraded to 3: new requests run on the new limit.
        let _two = g.enter(a, 3).await.unwrap();
        // Whatever the plan, never past the machine's share.
        let g = HeavyGate::new(Duration::from_millis(10), 1);
        let _one = g.enter(a, 8).await.unwrap();
        assert!(g.enter(a, 8).await.is_err());
    }
}
