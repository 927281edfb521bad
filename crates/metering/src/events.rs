//! Custom meter events: usage of services the platform does not run itself (AI inference,
//! tokens, GPU time), reported in batches through the API and counted exactly once.
//!
//! [`prepare`] checks a whole batch before anything is written — tenant, meter name,
//! quantity (never negative, at most six decimals, stored in micro-units of the meter's
//! unit), time (not ahead by more than five minutes, not older than the idempotency window),
//! key — and turns each event into a ledger row (`meter:{name}`, in the minute of its time,
//! or its hour once minutes of that age are rolled up) with a digest of what it says, so a
//! key reused for another event is told apart from a retry.

use sha2::{Digest, Sha256};
use tenantplane_catalog::usage::{HOUR, MINUTE, MeterEvent, UsageRow};
use tenantplane_core::{
    TenantId, ValidationErrors,
    usage_api::{Quantity, UsageEvent},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Most events in one batch.
pub const MAX_BATCH: usize = 1_000;
/// How far ahead of the server's clock an event may be.
pub const MAX_AHEAD_SECS: i64 = 300;
/// The ledger's prefix of custom meters.
pub const METER_PREFIX: &str = "meter:";

/// The ages that bound events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWindow {
    /// Events older than this many seconds are refused (their keys are forgotten then).
    pub keys_for_secs: i64,
    /// Events older than this many seconds go to their hour row.
    pub minutes_for_secs: i64,
}

/// Whether `name` is a valid meter name.
pub fn valid_meter(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

/// A quantity in micro-units, or why not.
pub fn micro_units(q: &Quantity) -> Result<i64, &'static str> {
    let text = match q {
        Quantity::Whole(n) => {
            return i64::try_from(*n)
                .ok()
                .and_then(|n| n.checked_mul(1_000_000))
                .ok_or("too large");
        }
        Quantity::Number(f) if !f.is_finite() => return Err("not a number"),
        Quantity::Number(f) => format!("{f}"),
        Quantity::Text(s) => s.trim().to_owned(),
    };
    if text.starts_with('-') {
        return Err("must not be negative");
    }
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return Err("must be a non-negative decimal number");
    }
    if frac.len() > 6 {
        return Err("at most six decimals");
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too large")?
    };
    let frac: i64 = format!("{frac:0<6}").parse().map_err(|_| "bad fraction")?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or("too large")
}

fn valid_key(k: &str) -> bool {
    (1..=128).contains(&k.len()) && k.bytes().all(|c| c.is_ascii_graphic() || c == b' ')
}

/// Checks a batch and turns it into ledger events. `resolve` names the tenant of an id or
/// slug (`None`: no such tenant, or one that can no longer be charged).
pub fn prepare(
    events: &[UsageEvent],
    resolve: impl Fn(&str) -> Option<TenantId>,
    now: OffsetDateTime,
    window: EventWindow,
) -> Result<Vec<MeterEvent>, ValidationErrors> {
    let mut errs = ValidationErrors::new();
    if events.is_empty() || events.len() > MAX_BATCH {
        errs.push(
            "/events",
            format!("send between 1 and {MAX_BATCH} events per batch"),
        );
        return Err(errs);
    }
    let now_s = now.unix_timestamp();
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let at = |f: &str| format!("/events/{i}/{f}");
        let tenant = resolve(&e.tenant);
        if tenant.is_none() {
            errs.push(at("tenant"), "no such tenant");
        }
        if !valid_meter(&e.meter) {
            errs.push(
                at("meter"),
                "a meter name is 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            );
        }
        let quantity = micro_units(&e.quantity);
        if let Err(why) = quantity {
            errs.push(at("quantity"), why);
        }
        let when = match &e.timestamp {
            None => Some(now_s),
            Some(t) => match OffsetDateTime::parse(t, &Rfc3339) {
                Ok(t) => Some(t.unix_timestamp()),
                Err(_) => {
                    errs.push(at("timestamp"), "not an RFC 3339 date-time");
                    None
                }
            },
        };
        if let Some(w) = when {
            if w > now_s + MAX_AHEAD_SECS {
                errs.push(at("timestamp"), "more than five minutes in the future");
            } else if w < now_s - window.keys_for_secs {
                errs.push(
                    at("timestamp"),
                    "older than the idempotency window (metering.event_key_days)",
                );
            }
        }
        if !valid_key(&e.idempotency_key) {
            errs.push(at("idempotency_key"), "1-128 printable ASCII characters");
        }
        if let (Some(tenant), Ok(value), Some(when)) = (tenant, quantity, when) {
            let span = if when < now_s - window.minutes_for_secs {
                HOUR
            } else {
                MINUTE
            };
            // What the event says: a retry without a timestamp is the same event even
            // though the server's clock moved.
            let mut h = Sha256::new();
            h.update(e.meter.as_bytes());
            h.update([0]);
            h.update(value.to_be_bytes());
            match &e.timestamp {
                Some(_) => h.update(when.to_be_bytes()),
                None => h.update(b"now"),
            }
            out.push(MeterEvent {
                key: e.idempotency_key.clone(),
                digest: h.finalize().into(),
                row: UsageRow {
                    tenant,
                    bucket: when - when.rem_euclid(span),
                    span,
                    meter: format!("{METER_PREFIX}{}", e.meter),
                    value,
                },
            });
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_micro_units() {
        let ok = |q: Quantity| micro_units(&q).unwrap();
        assert_eq!(ok(Quantity::Whole(3)), 3_000_000);
        assert_eq!(ok(Quantity::Number(0.1)), 100_000);
        assert_eq!(ok(Quantity::Number(2.5)), 2_500_000);
        assert_eq!(ok(Quantity::Text("12.000001".into())), 12_000_001);
        assert_eq!(ok(Quantity::Text(".5".into())), 500_000);
        assert_eq!(ok(Quantity::Text("0".into())), 0);
        for bad in [
            "-1",
            "1.0000001",
            "abc",
            "",
            ".",
            "1e3",
            "1.2.3",
            "99999999999999999999",
        ] {
            assert!(micro_units(&Quantity::Text(bad.into())).is_err(), "{bad}");
        }
        assert!(micro_units(&Quantity::Number(-0.5)).is_err());
        assert!(micro_units(&Quantity::Whole(u64::MAX)).is_err());
        assert!(micro_units(&Quantity::Number(f64::NAN)).is_err());
    }

    #[test]
    fn meter_names() {
        assert!(valid_meter("inference-tokens"));
        assert!(valid_meter("gpu.seconds_v2"));
        assert!(!valid_meter(""));
        assert!(!valid_meter("-x"));
        assert!(!valid_meter("Tokens"));
        assert!(!valid_meter(&"a".repeat(65)));
    }

    fn ev(tenant: &str, key: &str, ts: Option<&str>) -> UsageEvent {
        UsageEvent {
            tenant: tenant.into(),
            meter: "tokens".into(),
            quantity: Quantity::Whole(5),
            timestamp: ts.map(str::to_owned),
            idempotency_key: key.into(),
        }
    }

    #[test]
    fn a_batch_is_checked_whole() {
        let t = TenantId::new();
        let resolve = |s: &str| (s == "a").then_some(t);
        let now = time::macros::datetime!(2026-12-06 12:00:30 UTC);
        let w = EventWindow {
            keys_for_secs: 7 * 86_400,
            minutes_for_secs: 2 * 86_400,
        };
        let out = prepare(
            &[
                ev("a", "k1", None),
                ev("a", "k2", Some("2026-12-01T10:20:30Z")),
            ],
            resolve,
            now,
            w,
        )
        .unwrap();
        assert_eq!(out[0].row.bucket, now.unix_timestamp() - 30);
        assert_eq!(out[0].row.span, MINUTE);
        assert_eq!(out[0].row.value, 5_000_000);
        assert_eq!(out[0].row.meter, "meter:tokens");
        // Five days old: past the minute rows' age, so its hour.
        assert_eq!(out[1].row.span, HOUR);
        assert_eq!(out[1].row.bucket % HOUR, 0);
        assert_ne!(out[0].digest, out[1].digest);
        // Retried a minute later without a timestamp: the same event.
        let later = prepare(
            &[ev("a", "k1", None)],
            resolve,
            now + time::Duration::minutes(1),
            w,
        )
        .unwrap();
        assert_eq!(later[0].digest, out[0].digest);
        let err = prepare(
            &[
                ev("a", "ok", None),
                ev("b", "k", None),
                ev("a", "", Some("2026-12-06T12:10:00Z")),
                ev("a", "old", Some("2026-11-01T00:00:00Z")),
                ev("a", "bad", Some("yesterday")),
            ],
            resolve,
            now,
            w,
        )
        .unwrap_err();
        let pointers: Vec<&str> = err.0.iter().map(|f| f.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/events/1/tenant",
                "/events/2/timestamp",
                "/events/2/idempotency_key",
                "/events/3/timestamp",
                "/events/4/timestamp"
            ]
        );
        assert!(prepare(&[], resolve, now, w).is_err());
    }
}
