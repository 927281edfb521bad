//! Rate limits shared by several replicas: GCRA in one Lua script on Redis.
//!
//! Each limit is one key holding its theoretical arrival time (TAT, microseconds on the
//! Redis server's clock, so replicas' clocks do not matter). The script admits a request
//! when `TAT + T − τ ≤ now` (T = the emission interval, τ = T × burst), stores the new TAT
//! with an expiry of exactly the time until it has fully recovered, and answers the
//! remaining burst or the wait. The semantics match the in-process `governor` limiter: a
//! burst of `limit` requests, then one every `60 s / limit`.
//!
//! Keys: `{prefix}rl:{policy}:{key}`; memory on Redis is bounded by the keys in use, as
//! every key expires when it no longer limits anything. When Redis fails or is slow (more
//! than `limits.redis_timeout_ms`), the caller falls back to its own in-process limiter
//! for that request and counts `tenantplane_rate_limit_backend_errors_total`.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

use super::Decision;

const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tau
if allow_at > now then
  return {0, 0, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((now + tau - new_tat) / interval), 0}
"#;

/// The shared limiter.
#[derive(Clone)]
pub struct RedisGcra {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisGcra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGcra")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A shared-limiter failure (the caller falls back to its local limiter).
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The script answered something unexpected.
    #[error("unexpected answer from the rate-limit script")]
    Answer,
}

impl RedisGcra {
    /// Connects to `url` (`redis://[:password@]host:port/db`). The connection is managed:
    /// it reconnects by itself after failures.
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, SharedLimitError> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(timeout));
        let conn = tokio::time::timeout(
            timeout.max(Duration::from_secs(2)),
            client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| SharedLimitError::Timeout(timeout))??;
        let me = Self {
            conn,
            script: Script::new(GCRA),
            prefix: prefix.to_owned(),
            timeout,
        };
        // Load the script once now, so a broken server is found at start.
        me.check("startup", "probe", 1_000_000).await?;
        Ok(me)
    }

    /// Admits one request under `policy`/`key` with `limit` requests per minute.
    pub async fn check(
        &self,
        policy: &'static str,
        key: &str,
        limit: u32,
    ) -> Result<Decision, SharedLimitError> {
        let limit = limit.max(1);
        let interval_us = (60_000_000u64 / u64::from(limit)).max(1);
        let mut conn = self.conn.clone();
        let mut inv = self.script.key(format!("{}rl:{policy}:{key}", self.prefix));
        inv.arg(interval_us).arg(limit);
        let answer: redis::RedisResult<(i64, i64, i64)> =
            tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
                .await
                .map_err(|_| SharedLimitError::Timeout(self.timeout))?;
        let (allowed, remaining, wait_us) = answer?;
        match allowed {
            1 => Ok(Decision::Allowed {
                policy,
                limit,
                remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            }),
            0 => Ok(Decision::Limited {
                policy,
                limit,
                wait: Duration::from_micros(wait_us.max(0) as u64),
            }),
            _ => Err(SharedLimitError::Answer),
        }
    }
}
