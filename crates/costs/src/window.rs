//! Report windows and steps, in the forms OpenCost's users type: `today`, `yesterday`,
//! `week`, `lastweek`, `month`, `lastmonth`, a duration back from now (`30m`, `24h`, `7d`),
//! or two instants (`2026-12-01T00:00:00Z,2026-12-02T00:00:00Z`, or Unix seconds).
//!
//! Windows are in UTC and on whole minutes (the ledger's finest unit): a start is rounded
//! down, an end up. Weeks start on Monday. A window is at most [`MAX_WINDOW_DAYS`] long and
//! is cut into at most [`MAX_STEPS`] steps.

use time::{Duration, OffsetDateTime, Time, format_description::well_known::Rfc3339};

/// Longest window.
pub const MAX_WINDOW_DAYS: i64 = 400;
/// Most steps in one report.
pub const MAX_STEPS: i64 = 2_000;

/// What is wrong with a window or step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not one of the forms.
    #[error(
        "unknown window '{0}': use today, yesterday, week, lastweek, month, lastmonth, a duration such as 24h or 7d, or 'start,end' in RFC 3339 or Unix seconds"
    )]
    Unknown(String),
    /// End not after start, longer than allowed, or out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// Not a step.
    #[error("unknown step '{0}': use 1h, 1d, 1w, a duration such as 6h, or window")]
    Step(String),
}

/// A half-open interval `[start, end)` of UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant.
    pub start: OffsetDateTime,
    /// First instant after.
    pub end: OffsetDateTime,
}

impl Window {
    /// Its length in seconds.
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).whole_seconds()
    }

    /// The part before `limit` (the future is never charged), possibly empty.
    pub fn until(&self, limit: OffsetDateTime) -> Window {
        Window {
            start: self.start,
            end: self.end.min(limit).max(self.start),
        }
    }
}

fn floor_minute(t: OffsetDateTime) -> OffsetDateTime {
    t - Duration::seconds(t.unix_timestamp().rem_euclid(60))
        - Duration::nanoseconds(t.nanosecond().into())
}

fn ceil_minute(t: OffsetDateTime) -> OffsetDateTime {
    let f = floor_minute(t);
    if f == t { t } else { f + Duration::minutes(1) }
}

fn midnight(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::MIDNIGHT)
}

/// A duration such as `30m`, `24h`, `7d`, `2w`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s.get(..s.len() - 1)?.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::seconds)
}

fn instant(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(n).ok();
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.to_offset(time::UtcOffset::UTC))
}

/// Parses a window, relative to `now`.
pub fn parse_window(s: &str, now: OffsetDateTime) -> Result<Window, WindowError> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let today = midnight(now);
    let monday = today - Duration::days(now.weekday().number_days_from_monday().into());
    let month = today
        .replace_day(1)
        .map_err(|e| WindowError::OutOfRange(e.to_string()))?;
    let prev_month = (month - Duration::days(1))
        .replace_day(1)
        .map_err(|e| WindowError::OutOfRange(e.to_string()))?;
    let (start, end) = match s.trim() {
        "today" => (today, today + Duration::days(1)),
        "yesterday" => (today - Duration::days(1), today),
        "week" => (monday, monday + Duration::days(7)),
        "lastweek" => (monday - Duration::days(7), monday),
        "month" => {
            let next = (month + Duration::days(32))
                .replace_day(1)
                .map_err(|e| WindowError::OutOfRange(e.to_string()))?;
            (month, next)
        }
        "lastmonth" => (prev_month, month),
        other => match other.split_once(',') {
            Some((a, b)) => match (instant(a), instant(b)) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(WindowError::Unknown(s.chars().take(80).collect())),
            },
            None => match parse_duration(other) {
                Some(d) => (now - d, now),
                None => return Err(WindowError::Unknown(s.chars().take(80).collect())),
            },
        },
    };
    let w = Window {
        start: floor_minute(start),
        end: ceil_minute(end),
    };
    if w.end <= w.start {
        return Err(WindowError::OutOfRange(
            "the window's end must be after its start".into(),
        ));
    }
    if w.end - w.start > Duration::days(MAX_WINDOW_DAYS) {
        return Err(WindowError::OutOfRange(format!(
            "a window is at most {MAX_WINDOW_DAYS} days"
        )));
    }
    if w.start.year() < 2000 || w.end > now + Duration::days(MAX_WINDOW_DAYS) {
        return Err(WindowError::OutOfRange(
            "the window lies too far in the past or the future".into(),
        ));
    }
    Ok(w)
}

/// Parses a step (`window`, `1h`, `1d`, `1w`, `6h`, …) of `window` into seconds.
pub fn parse_step(s: Option<&str>, window: &Window) -> Result<i64, WindowError> {
    let secs = match s.map(str::trim) {
        None | Some("") | Some("window") => window.seconds(),
        Some("hour") => 3_600,
        Some("day") => 86_400,
        Some("week") => 7 * 86_400,
        Some(other) => parse_duration(other)
            .map(|d| d.whole_seconds())
            .ok_or_else(|| WindowError::Step(other.chars().take(40).collect()))?,
    };
    if secs % 60 != 0 {
        return Err(WindowError::Step("a step is whole minutes".into()));
    }
    let steps = (window.seconds() + secs - 1) / secs;
    if steps > MAX_STEPS {
        return Err(WindowError::OutOfRange(format!(
            "{steps} steps; a report has at most {MAX_STEPS} (use a longer step)"
        )));
    }
    Ok(secs)
}

/// The steps of `window`, each `step` seconds (the last one cut at the window's end).
pub fn steps(window: &Window, step: i64) -> Vec<Window> {
    let mut out = Vec::new();
    let mut s = window.start;
    while s < window.end {
        let e = (s + Duration::seconds(step.max(60))).min(window.end);
        out.push(Window { start: s, end: e });
        s = e;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 14:37:12 UTC);

    fn w(s: &str) -> (String, String) {
        let w = parse_window(s, NOW).unwrap();
        (
            w.start.format(&Rfc3339).unwrap(),
            w.end.format(&Rfc3339).unwrap(),
        )
    }

    #[test]
    fn named_windows() {
        assert_eq!(
            w("today"),
            ("2026-12-06T00:00:00Z".into(), "2026-12-07T00:00:00Z".into())
        );
        assert_eq!(w("yesterday").0, "2026-12-05T00:00:00Z");
        // 2026-12-06 is a Sunday: the week started on Monday the 30th.
        assert_eq!(
            w("week"),
            ("2026-11-30T00:00:00Z".into(), "2026-12-07T00:00:00Z".into())
        );
        assert_eq!(w("lastweek").0, "2026-11-23T00:00:00Z");
        assert_eq!(
            w("month"),
            ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into())
        );
        assert_eq!(
            w("lastmonth"),
            ("2026-11-01T00:00:00Z".into(), "2026-12-01T00:00:00Z".into())
        );
        assert_eq!(
            w("24h"),
            ("2026-12-05T14:37:00Z".into(), "2026-12-06T14:38:00Z".into())
        );
        assert_eq!(
            w("2026-12-01T00:00:00Z,2026-12-02T00:00:00-03:00"),
            ("2026-12-01T00:00:00Z".into(), "2026-12-02T03:00:00Z".into())
        );
        assert_eq!(w("1796083200,1796086800").1, "2026-12-01T01:00:00Z");
    }

    #[test]
    fn bad_windows() {
        for bad in [
            "",
            "fortnight",
            "0h",
            "-5d",
            "2026-12-02T00:00:00Z,2026-12-01T00:00:00Z",
            "2020-01-01T00:00:00Z,2026-01-01T00:00:00Z",
            "1,2",
            "x,y",
            "9999999999999999999d",
        ] {
            assert!(parse_window(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_cut_the_window() {
        let win = parse_window("today", NOW).unwrap();
        assert_eq!(parse_step(None, &win).unwrap(), 86_400);
        assert_eq!(parse_step(Some("1h"), &win).unwrap(), 3_600);
        assert_eq!(steps(&win, 3_600).len(), 24);
        let odd = parse_window("2026-12-01T00:00:00Z,2026-12-01T05:30:00Z", NOW).unwrap();
        let s = steps(&odd, 7_200);
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].seconds(), 5_400);
        assert!(parse_step(Some("1s"), &win).is_err());
        assert!(parse_step(Some("fast"), &win).is_err());
        let year = parse_window("2026-01-01T00:00:00Z,2026-12-01T00:00:00Z", NOW).unwrap();
        assert!(parse_step(Some("1h"), &year).is_err(), "too many steps");
        assert!(parse_step(Some("1d"), &year).is_ok());
    }
}
