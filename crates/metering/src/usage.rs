//! What each request used, per tenant and minute, until the next flush into the catalog's
//! usage ledger.
//!
//! The edge hands every answered tenant request to [`UsageMeter::record`]: its route class,
//! status, body bytes in and out, wall time and CPU time. They are added into the tenant's
//! current minute in memory; a flush takes every minute gathered so far and adds it to the
//! ledger (`tenantplane_catalog::usage`), where replicas' rows add up. A crash loses what
//! was gathered since the last flush (one `flush_interval_secs`); a clean shutdown flushes.
//! When a flush fails its rows are kept for the next one, moved to their hour so that a long
//! catalog outage holds one row per tenant, hour and meter instead of one per minute.

use std::{collections::HashMap, sync::Mutex};

use tenantplane_catalog::usage::{HOUR, MINUTE, UsageRow};
use tenantplane_core::TenantId;

/// What kind of work a request was: the unit of request pricing and of the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteClass {
    /// Reading one FHIR resource or version, or the capability statement.
    FhirRead,
    /// FHIR searches and history.
    FhirSearch,
    /// Creating, updating or deleting one FHIR resource.
    FhirWrite,
    /// A FHIR batch or transaction Bundle.
    Bundle,
    /// Sign-in, token refresh, single sign-on, the JWKS.
    Auth,
    /// The tenant's own administration: users, roles, profile, departments.
    TenantAdmin,
    /// Anything else.
    Other,
}

impl RouteClass {
    /// Every class, in report order.
    pub const ALL: [RouteClass; 7] = [
        RouteClass::FhirRead,
        RouteClass::FhirSearch,
        RouteClass::FhirWrite,
        RouteClass::Bundle,
        RouteClass::Auth,
        RouteClass::TenantAdmin,
        RouteClass::Other,
    ];

    /// Its name in the ledger, the price sheet and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::FhirRead => "fhir-read",
            RouteClass::FhirSearch => "fhir-search",
            RouteClass::FhirWrite => "fhir-write",
            RouteClass::Bundle => "bundle",
            RouteClass::Auth => "auth",
            RouteClass::TenantAdmin => "tenant-admin",
            RouteClass::Other => "other",
        }
    }

    /// The class of a request to `path` (the tenant's path, any `/t/{slug}` prefix
    /// removed) with `method`.
    pub fn classify(method: &str, path: &str) -> Self {
        let segs: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match segs.as_slice() {
            ["fhir"] => match method {
                "POST" => RouteClass::Bundle,
                _ => RouteClass::FhirSearch, // system history
            },
            ["fhir", "metadata"] => RouteClass::FhirRead,
            ["fhir", "_history"] | ["fhir", "_search"] => RouteClass::FhirSearch,
            ["fhir", _] => match method {
                "POST" => RouteClass::FhirWrite,
                _ => RouteClass::FhirSearch,
            },
            ["fhir", _, "_search"] | ["fhir", _, "_history"] => RouteClass::FhirSearch,
            ["fhir", _, _] => match method {
                "GET" | "HEAD" => RouteClass::FhirRead,
                _ => RouteClass::FhirWrite,
            },
            ["fhir", _, _, "_history"] => RouteClass::FhirSearch,
            ["fhir", _, _, "_history", _] => RouteClass::FhirRead,
            ["fhir", ..] => RouteClass::Other,
            ["auth", ..] | [".well-known", ..] => RouteClass::Auth,
            ["api", "tenant", ..] => RouteClass::TenantAdmin,
            _ => RouteClass::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one answered request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Its route class.
    pub class: RouteClass,
    /// The status answered.
    pub status: u16,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// From admission to the response head, in nanoseconds.
    pub wall_nanos: u64,
    /// CPU time spent on it (its polls and the blocking work done for it).
    pub cpu_nanos: u64,
}

/// Upper bounds (milliseconds) of the latency buckets the ledger keeps per tenant and
/// minute (`latency_le:{bound}`, not cumulative; the last is `inf`): percentiles of any
/// window, all replicas together, from the ledger.
pub const LATENCY_BOUNDS_MS: [u64; 7] = [5, 25, 100, 250, 1_000, 2_500, 10_000];

/// The ledger meter of latency bucket `i` (`latency_le:5` … `latency_le:inf`).
pub fn latency_meter(i: usize) -> String {
    match LATENCY_BOUNDS_MS.get(i) {
        Some(b) => format!("latency_le:{b}"),
        None => "latency_le:inf".to_owned(),
    }
}

#[derive(Debug, Default, Clone)]
struct Minute {
    latency: [u64; LATENCY_BOUNDS_MS.len() + 1],
    probe_ok: u64,
    probe_fail: u64,
    requests: [u64; RouteClass::ALL.len()],
    status_4xx: u64,
    status_5xx: u64,
    bytes_in: u64,
    bytes_out: u64,
    wall_nanos: u64,
    cpu_nanos: u64,
}

impl Minute {
    fn add(&mut self, s: &Served) {
        let r = &mut self.requests[s.class.index()];
        *r = r.saturating_add(1);
        match s.status {
            400..=499 => self.status_4xx = self.status_4xx.saturating_add(1),
            500..=599 => self.status_5xx = self.status_5xx.saturating_add(1),
            _ => {}
        }
        self.bytes_in = self.bytes_in.saturating_add(s.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(s.bytes_out);
        self.wall_nanos = self.wall_nanos.saturating_add(s.wall_nanos);
        self.cpu_nanos = self.cpu_nanos.saturating_add(s.cpu_nanos);
        let ms = s.wall_nanos / 1_000_000;
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms < *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[i] = self.latency[i].saturating_add(1);
    }

    fn rows(&self, tenant: TenantId, bucket: i64, out: &mut Vec<UsageRow>) {
        let mut push = |meter: String, value: u64| {
            if value > 0 {
                out.push(UsageRow {
                    tenant,
                    bucket,
                    span: MINUTE,
                    meter,
                    value: i64::try_from(value).unwrap_or(i64::MAX),
                });
            }
        };
        for c in RouteClass::ALL {
            push(format!("requests:{}", c.as_str()), self.requests[c.index()]);
        }
        push("status:4xx".into(), self.status_4xx);
        push("status:5xx".into(), self.status_5xx);
        push("bytes_in".into(), self.bytes_in);
        push("bytes_out".into(), self.bytes_out);
        push("wall_nanos".into(), self.wall_nanos);
        push("cpu_nanos".into(), self.cpu_nanos);
        for (i, n) in self.latency.iter().enumerate() {
            push(latency_meter(i), *n);
        }
        push("probe:ok".into(), self.probe_ok);
        push("probe:fail".into(), self.probe_fail);
    }
}

/// The per-replica accumulator of request usage.
#[derive(Debug, Default)]
pub struct UsageMeter {
    minutes: Mutex<HashMap<(TenantId, i64), Minute>>,
    /// Rows of failed flushes, by hour.
    held: Mutex<HashMap<(TenantId, i64, String), i64>>,
}

/// Start of the minute of `unix_seconds`.
pub fn minute_of(unix_seconds: i64) -> i64 {
    unix_seconds - unix_seconds.rem_euclid(MINUTE)
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl UsageMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request of `tenant` answered now.
    pub fn record(&self, tenant: TenantId, served: &Served) {
        self.record_at(tenant, now_seconds(), served);
    }

    /// Adds a request of `tenant` answered at `unix_seconds`.
    pub fn record_at(&self, tenant: TenantId, unix_seconds: i64, served: &Served) {
        let key = (tenant, minute_of(unix_seconds));
        let mut g = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        g.entry(key).or_default().add(served);
    }

    /// Records one uptime probe of `tenant` (not a request: not charged).
    pub fn record_probe(&self, tenant: TenantId, ok: bool) {
        let key = (tenant, minute_of(now_seconds()));
        let mut g = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        let m = g.entry(key).or_default();
        if ok {
            m.probe_ok += 1;
        } else {
            m.probe_fail += 1;
        }
    }

    /// CPU nanoseconds gathered for `tenant` and not yet flushed.
    pub fn pending_cpu(&self, tenant: TenantId) -> u64 {
        let g = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let minutes: u64 = g
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|(_, m)| m.cpu_nanos)
            .sum();
        let hours: i64 = held
            .iter()
            .filter(|((t, _, m), _)| *t == tenant && m == "cpu_nanos")
            .map(|(_, v)| *v)
            .sum();
        minutes.saturating_add(hours.max(0) as u64)
    }

    /// Takes everything gathered so far as ledger rows.
    pub fn take(&self) -> Vec<UsageRow> {
        let minutes = std::mem::take(&mut *self.minutes.lock().unwrap_or_else(|p| p.into_inner()));
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::with_capacity(minutes.len() * 4 + held.len());
        for ((t, bucket), m) in &minutes {
            m.rows(*t, *bucket, &mut out);
        }
        out.extend(
            held.into_iter()
                .map(|((tenant, bucket, meter), value)| UsageRow {
                    tenant,
                    bucket,
                    span: HOUR,
                    meter,
                    value,
                }),
        );
        out
    }

    /// Keeps rows a flush could not write, for the next one (moved to their hour).
    pub fn give_back(&self, rows: Vec<UsageRow>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for r in rows {
            let hour = r.bucket - r.bucket.rem_euclid(HOUR);
            let v = held.entry((r.tenant, hour, r.meter)).or_default();
            *v = v.saturating_add(r.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_routes() {
        let c = RouteClass::classify;
        assert_eq!(c("GET", "/fhir/Patient/abc"), RouteClass::FhirRead);
        assert_eq!(
            c("GET", "/fhir/Patient/abc/_history/2"),
            RouteClass::FhirRead
        );
        assert_eq!(c("GET", "/fhir/metadata"), RouteClass::FhirRead);
        assert_eq!(c("GET", "/fhir/Patient"), RouteClass::FhirSearch);
        assert_eq!(c("POST", "/fhir/Patient/_search"), RouteClass::FhirSearch);
        assert_eq!(
            c("GET", "/fhir/Patient/abc/_history"),
            RouteClass::FhirSearch
        );
        assert_eq!(c("GET", "/fhir/_history"), RouteClass::FhirSearch);
        assert_eq!(c("POST", "/fhir/Patient"), RouteClass::FhirWrite);
        assert_eq!(c("PUT", "/fhir/Patient/abc"), RouteClass::FhirWrite);
        assert_eq!(c("DELETE", "/fhir/Patient/abc"), RouteClass::FhirWrite);
        assert_eq!(c("POST", "/fhir"), RouteClass::Bundle);
        assert_eq!(c("POST", "/fhir/"), RouteClass::Bundle);
        assert_eq!(c("POST", "/auth/login"), RouteClass::Auth);
        assert_eq!(c("GET", "/.well-known/jwks.json"), RouteClass::Auth);
        assert_eq!(c("POST", "/api/tenant/users"), RouteClass::TenantAdmin);
        assert_eq!(c("GET", "/"), RouteClass::Other);
        assert_eq!(c("GET", "/fhir/a/b/c/d/e/f"), RouteClass::Other);
    }

    fn served(class: RouteClass, status: u16) -> Served {
        Served {
            class,
            status,
            bytes_in: 10,
            bytes_out: 100,
            wall_nanos: 1_000,
            cpu_nanos: 500,
        }
    }

    fn value(rows: &[UsageRow], t: TenantId, bucket: i64, meter: &str) -> i64 {
        rows.iter()
            .filter(|r| r.tenant == t && r.bucket == bucket && r.meter == meter)
            .map(|r| r.value)
            .sum()
    }

    #[test]
    fn minutes_add_up_per_tenant() {
        let m = UsageMeter::new();
        let (a, b) = (TenantId::new(), TenantId::new());
        m.record_at(a, 120, &served(RouteClass::FhirRead, 200));
        m.record_at(a, 179, &served(RouteClass::FhirRead, 404));
        m.record_at(a, 180, &served(RouteClass::Bundle, 500));
        m.record_at(b, 130, &served(RouteClass::Auth, 401));
        assert_eq!(m.pending_cpu(a), 1_500);
        let rows = m.take();
        assert_eq!(value(&rows, a, 120, "requests:fhir-read"), 2);
        assert_eq!(value(&rows, a, 120, "status:4xx"), 1);
        assert_eq!(value(&rows, a, 120, "bytes_out"), 200);
        assert_eq!(value(&rows, a, 180, "status:5xx"), 1);
        assert_eq!(value(&rows, a, 180, "requests:bundle"), 1);
        assert_eq!(value(&rows, b, 120, "requests:auth"), 1);
        assert_eq!(value(&rows, b, 120, "cpu_nanos"), 500);
        assert!(rows.iter().all(|r| r.value > 0 && r.span == MINUTE));
        assert!(m.take().is_empty(), "taken once");
        assert_eq!(m.pending_cpu(a), 0);
    }

    #[test]
    fn rows_given_back_wait_in_their_hour() {
        let m = UsageMeter::new();
        let a = TenantId::new();
        m.record_at(a, 3_600 + 60, &served(RouteClass::FhirRead, 200));
        m.record_at(a, 3_600 + 120, &served(RouteClass::FhirRead, 200));
        let rows = m.take();
        m.give_back(rows);
        m.record_at(a, 3_600 + 180, &served(RouteClass::FhirRead, 200));
        assert_eq!(m.pending_cpu(a), 1_500);
        let rows = m.take();
        let hour: Vec<_> = rows.iter().filter(|r| r.span == HOUR).collect();
        assert!(hour.iter().all(|r| r.bucket == 3_600));
        assert_eq!(value(&rows, a, 3_600, "requests:fhir-read"), 2);
        assert_eq!(value(&rows, a, 3_600 + 180, "requests:fhir-read"), 1);
    }
}
