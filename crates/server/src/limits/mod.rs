//! Rate limits (GCRA, `governor`) and login protection.
//!
//! - per client address: `limits.per_ip_per_minute` over every route but health and
//!   metrics; the state of at most `limits.max_tracked_ips` addresses is kept (stale
//!   entries are dropped every few seconds; past the cap the oldest generation is dropped);
//! - per tenant: the plan's `requests_per_minute`, one keyed limiter per distinct rate;
//! - logins: `limits.login_per_ip_per_minute` per address, and per account (tenant +
//!   e-mail, whether or not the account exists) an exponential lockout after
//!   `limits.login_failures_before_lockout` consecutive failures.
//!
//! With `limits.redis_url`, the three request limits are shared by every replica through
//! Redis ([`redis`]); the in-process limiters are the fallback when Redis
//! fails. Lockouts stay per replica.
//!
//! - per tenant, expensive requests at once: the plan's `max_concurrent_heavy` ([`heavy`]).
//!
//! Over a limit → 429 problem `rate-limited` with `Retry-After`, `RateLimit-Policy` and
//! `RateLimit` (draft-ietf-httpapi-ratelimit-headers); answered responses carry `RateLimit`
//! too.

pub mod heavy;
pub mod redis;

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Mutex, RwLock},
    time::{Duration, Instant},
};

use axum::http::{HeaderName, HeaderValue};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use tenantplane_core::TenantId;

use crate::{config::LimitsConfig, problem::ApiError};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The outcome of a check: allowed with the remaining quota, or refused.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Allowed; `remaining` requests left in the window.
    Allowed {
        /// Policy name.
        policy: &'static str,
        /// Requests per window.
        limit: u32,
        /// Left now.
        remaining: u32,
    },
    /// Refused; retry after `wait`.
    Limited {
        /// Policy name.
        policy: &'static str,
        /// Requests per window.
        limit: u32,
        /// Wait.
        wait: Duration,
    },
}

impl Decision {
    /// `(RateLimit-Policy, RateLimit)` header values.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let (policy, limit, r, t) = match self {
            Self::Allowed {
                policy,
                limit,
                remaining,
            } => (*policy, *limit, *remaining, 0),
            Self::Limited {
                policy,
                limit,
                wait,
            } => (*policy, *limit, 0, wait.as_secs().max(1)),
        };
        let mut out = Vec::new();
        if let Ok(v) = HeaderValue::from_str(&format!("\"{policy}\";q={limit};w=60")) {
            out.push((RATELIMIT_POLICY.clone(), v));
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{policy}\";r={r};t={t}")) {
            out.push((RATELIMIT.clone(), v));
        }
        out
    }

    /// The 429 problem for a refusal.
    pub fn problem(&self, detail: &str) -> Option<ApiError> {
        match self {
            Self::Allowed { .. } => None,
            Self::Limited { wait, .. } => {
                let mut e = ApiError::rate_limited(detail, wait.as_secs_f64().ceil() as u64);
                e.headers = self.headers();
                Some(e)
            }
        }
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    l: &Keyed<K>,
    k: &K,
    policy: &'static str,
    limit: u32,
) -> Decision {
    match l.check_key(k) {
        Ok(s) => Decision::Allowed {
            policy,
            limit,
            remaining: s.remaining_burst_capacity(),
        },
        Err(n) => Decision::Limited {
            policy,
            limit,
            wait: n.wait_time_from(DefaultClock::default().now()),
        },
    }
}

struct Lockout {
    failures: u32,
    until: Option<Instant>,
    last: Instant,
}

/// Every limiter of the process.
pub struct Limits {
    cfg: LimitsConfig,
    ip: RwLock<Keyed<IpAddr>>,
    login_ip: Keyed<IpAddr>,
    tenants: RwLock<HashMap<u32, std::sync::Arc<Keyed<TenantId>>>>,
    lockouts: Mutex<HashMap<(TenantId, String), Lockout>>,
    shared: std::sync::OnceLock<redis::RedisGcra>,
    heavy: std::sync::Arc<heavy::HeavyGate>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

const MAX_LOCKOUTS: usize = 100_000;

impl Limits {
    /// Limiters for `cfg`.
    pub fn new(cfg: LimitsConfig) -> Self {
        let ip = RateLimiter::keyed(per_minute(cfg.per_ip_per_minute))
            .with_middleware::<StateInformationMiddleware>();
        let login_ip = RateLimiter::keyed(per_minute(cfg.login_per_ip_per_minute))
            .with_middleware::<StateInformationMiddleware>();
        Self {
            ip: RwLock::new(ip),
            login_ip,
            tenants: RwLock::new(HashMap::new()),
            lockouts: Mutex::new(HashMap::new()),
            shared: std::sync::OnceLock::new(),
            heavy: std::sync::Arc::new(heavy::HeavyGate::new(
                Duration::from_millis(cfg.heavy_wait_ms),
                cfg.heavy_per_tenant_max,
            )),
            cfg,
        }
    }

    /// The per-tenant limit on concurrent expensive requests.
    pub fn heavy(&self) -> &std::sync::Arc<heavy::HeavyGate> {
        &self.heavy
    }

    /// Shares the request limits (per IP, per tenant, logins per IP) with other replicas
    /// through Redis from now on. The in-process limiters stay as the fallback.
    pub fn share(&self, redis: redis::RedisGcra) {
        let _ = self.shared.set(redis);
    }

    /// Whether limits are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    async fn shared_or(
        &self,
        policy: &'static str,
        key: &str,
        limit: u32,
        local: impl FnOnce() -> Decision,
    ) -> Decision {
        let Some(r) = self.shared.get() else {
            return local();
        };
        match r.check(policy, key, limit).await {
            Ok(d) => d,
            Err(e) => {
                metrics::counter!("tenantplane_rate_limit_backend_errors_total").increment(1);
                tracing::warn!(error = %e, policy, "shared rate limit unavailable; limiting locally");
                local()
            }
        }
    }

    /// Admits one request from `ip` (shared when configured); `None` when per-IP limits
    /// are off.
    pub async fn admit_ip(&self, ip: IpAddr) -> Option<Decision> {
        if self.cfg.per_ip_per_minute == 0 {
            return None;
        }
        let limit = self.cfg.per_ip_per_minute;
        Some(
            self.shared_or("ip", &ip.to_string(), limit, || {
                let g = self.ip.read().unwrap_or_else(|p| p.into_inner());
                check(&g, &ip, "ip", limit)
            })
            .await,
        )
    }

    /// Admits one request to `tenant` on a plan allowing `rpm` per minute (shared when
    /// configured).
    pub async fn admit_tenant(&self, tenant: TenantId, rpm: u64) -> Option<Decision> {
        if !self.cfg.per_tenant {
            return None;
        }
        if self.shared.get().is_none() {
            return self.check_tenant(tenant, rpm);
        }
        let r = rpm.clamp(1, u32::MAX as u64) as u32;
        let key = format!("{tenant}:{r}");
        let d = self
            .shared_or("tenant", &key, r, || {
                self.check_tenant(tenant, rpm).unwrap_or(Decision::Allowed {
                    policy: "tenant",
                    limit: r,
                    remaining: r,
                })
            })
            .await;
        Some(d)
    }

    /// Admits a sign-in attempt (password login or SSO flow) from `ip`, or answers 429 with
    /// `detail`: the one per-address sign-in limit of every sign-in route.
    pub async fn admit_sign_in(&self, ip: IpAddr, detail: &str) -> Result<(), ApiError> {
        match self.admit_login_ip(ip).await.problem(detail) {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }

    /// Refuses (429 with `detail` and the wait) while `account` of `tenant` is locked out
    /// after failed attempts.
    pub fn refuse_if_locked(
        &self,
        tenant: TenantId,
        account: &str,
        detail: &str,
    ) -> Result<(), ApiError> {
        match self.locked(tenant, account) {
            Some(wait) => Err(ApiError::rate_limited(
                detail,
                wait.as_secs_f64().ceil() as u64,
            )),
            None => Ok(()),
        }
    }

    /// Admits a login attempt from `ip` (shared when configured).
    pub async fn admit_login_ip(&self, ip: IpAddr) -> Decision {
        let limit = self.cfg.login_per_ip_per_minute;
        self.shared_or("login", &ip.to_string(), limit, || self.check_login_ip(ip))
            .await
    }

    /// The settings.
    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    /// Checks one request from `ip`; `None` when per-IP limits are off.
    pub fn check_ip(&self, ip: IpAddr) -> Option<Decision> {
        if self.cfg.per_ip_per_minute == 0 {
            return None;
        }
        let g = self.ip.read().unwrap_or_else(|p| p.into_inner());
        Some(check(&g, &ip, "ip", self.cfg.per_ip_per_minute))
    }

    /// Checks one request to `tenant` on a plan allowing `rpm` requests per minute.
    pub fn check_tenant(&self, tenant: TenantId, rpm: u64) -> Option<Decision> {
        if !self.cfg.per_tenant {
            return None;
        }
        let rpm = rpm.clamp(1, u32::MAX as u64) as u32;
        let l = {
            let g = self.tenants.read().unwrap_or_else(|p| p.into_inner());
            g.get(&rpm).cloned()
        };
        let l = match l {
            Some(l) => l,
            None => {
                let mut g = self.tenants.write().unwrap_or_else(|p| p.into_inner());
                g.entry(rpm)
                    .or_insert_with(|| {
                        std::sync::Arc::new(
                            RateLimiter::keyed(per_minute(rpm))
                                .with_middleware::<StateInformationMiddleware>(),
                        )
                    })
                    .clone()
            }
        };
        Some(check(&l, &tenant, "tenant", rpm))
    }

    /// Checks a login attempt from `ip`.
    pub fn check_login_ip(&self, ip: IpAddr) -> Decision {
        check(
            &self.login_ip,
            &ip,
            "login",
            self.cfg.login_per_ip_per_minute,
        )
    }

    /// If the account is locked out, how long for.
    pub fn locked(&self, tenant: TenantId, account: &str) -> Option<Duration> {
        let g = self.lockouts.lock().unwrap_or_else(|p| p.into_inner());
        let l = g.get(&(tenant, account.to_owned()))?;
        let until = l.until?;
        until.checked_duration_since(Instant::now())
    }

    /// Records a failed login; returns the lockout it started, if any.
    pub fn login_failed(&self, tenant: TenantId, account: &str) -> Option<Duration> {
        let mut g = self.lockouts.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_LOCKOUTS {
            let hour = Duration::from_secs(3600);
            g.retain(|_, l| l.last.elapsed() < hour);
            if g.len() >= MAX_LOCKOUTS {
                g.clear();
            }
        }
        let now = Instant::now();
        let l = g.entry((tenant, account.to_owned())).or_insert(Lockout {
            failures: 0,
            until: None,
            last: now,
        });
        // Failures older than the longest lockout are forgiven.
        if l.last.elapsed() > Duration::from_secs(self.cfg.login_lockout_max_secs.max(60)) {
            l.failures = 0;
        }
        l.failures += 1;
        l.last = now;
        let threshold = self.cfg.login_failures_before_lockout.max(1);
        if l.failures >= threshold {
            let exp = (l.failures - threshold).min(20);
            let secs = (1u64 << exp).min(self.cfg.login_lockout_max_secs.max(1));
            let d = Duration::from_secs(secs);
            l.until = Some(now + d);
            return Some(d);
        }
        None
    }

    /// Clears an account's failures after a successful login.
    pub fn login_succeeded(&self, tenant: TenantId, account: &str) {
        self.lockouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant, account.to_owned()));
    }

    /// Drops limiter state that has fully recovered; past `max_tracked_ips` addresses,
    /// starts the per-IP limiter afresh (memory stays bounded under address floods).
    pub fn housekeeping(&self) {
        {
            let g = self.ip.read().unwrap_or_else(|p| p.into_inner());
            g.retain_recent();
            g.shrink_to_fit();
        }
        let over =
            self.ip.read().unwrap_or_else(|p| p.into_inner()).len() > self.cfg.max_tracked_ips;
        if over {
            metrics::counter!("tenantplane_rate_limit_resets_total").increment(1);
            tracing::warn!(
                max = self.cfg.max_tracked_ips,
                "too many client addresses tracked; per-IP limiter reset"
            );
            *self.ip.write().unwrap_or_else(|p| p.into_inner()) =
                RateLimiter::keyed(per_minute(self.cfg.per_ip_per_minute))
                    .with_middleware::<StateInformationMiddleware>();
        }
        self.login_ip.retain_recent();
        self.login_ip.shrink_to_fit();
        for l in self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            l.retain_recent();
        }
    }

    /// Addresses tracked by the per-IP limiter.
    pub fn tracked_ips(&self) -> usize {
        self.ip.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            per_ip_per_minute: 3,
            login_failures_before_lockout: 3,
            login_lockout_max_secs: 8,
            ..Default::default()
        }
    }

    #[test]
    fn per_ip_limit_refuses_past_the_burst() {
        let l = Limits::new(cfg());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for i in 0..3 {
            assert!(
                matches!(l.check_ip(ip), Some(Decision::Allowed { remaining, .. }) if remaining == 2 - i)
            );
        }
        let d = l.check_ip(ip).unwrap();
        assert!(matches!(d, Decision::Limited { .. }));
        let p = d.problem("x").unwrap();
        assert_eq!(p.status.as_u16(), 429);
        assert!(p.retry_after.unwrap() >= 1);
        let h = d.headers();
        assert_eq!(h[0].1, "\"ip\";q=3;w=60");
        // Another address is unaffected.
        assert!(matches!(
            l.check_ip("10.1.2.4".parse().unwrap()),
            Some(Decision::Allowed { .. })
        ));
    }

    #[test]
    fn lockout_doubles_and_caps() {
        let l = Limits::new(cfg());
        let t = TenantId::new();
        assert_eq!(l.login_failed(t, "a@x.org"), None);
        assert_eq!(l.login_failed(t, "a@x.org"), None);
        assert_eq!(l.login_failed(t, "a@x.org"), Some(Duration::from_secs(1)));
        assert_eq!(l.login_failed(t, "a@x.org"), Some(Duration::from_secs(2)));
        assert_eq!(l.login_failed(t, "a@x.org"), Some(Duration::from_secs(4)));
        assert_eq!(l.login_failed(t, "a@x.org"), Some(Duration::from_secs(8)));
        assert_eq!(l.login_failed(t, "a@x.org"), Some(Duration::from_secs(8)));
        assert!(l.locked(t, "a@x.org").is_some());
        assert!(l.locked(TenantId::new(), "a@x.org").is_none(), "per tenant");
        l.login_succeeded(t, "a@x.org");
        assert!(l.locked(t, "a@x.org").is_none());
    }

    #[test]
    fn memory_is_bounded_under_many_addresses() {
        let l = Limits::new(LimitsConfig {
            max_tracked_ips: 1000,
            ..Default::default()
        });
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check_ip(ip);
        }
        assert_eq!(l.tracked_ips(), 5000);
        l.housekeeping();
        assert!(l.tracked_ips() <= 1000);
    }
}
