//! A window of time as params give it: `since` and `until`, each `"24h"` or
//! `"90m"` (that long ago), `"today"` or `"yesterday"` (midnight in Home
//! Assistant's time zone), `"now"`, or an ISO time (local to HA when it has
//! no offset).

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A resolved window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Its start.
    pub start: DateTime<Utc>,
    /// Its end, never in the future.
    pub end: DateTime<Utc>,
    /// Whether it ends now: what happens next changes its answer.
    pub ends_now: bool,
}

/// One end of a window, before a time zone and a clock give it a time.
#[derive(Debug, Clone, PartialEq)]
enum Point {
    /// That long before now.
    Ago(std::time::Duration),
    /// Midnight starting today.
    Today,
    /// Midnight starting yesterday.
    Yesterday,
    /// A time with an offset.
    At(DateTime<chrono::FixedOffset>),
    /// A wall-clock time in HA's zone.
    Local(NaiveDateTime),
}

/// `"24h"`, `"90m"`, `"7d"`, `"1h 30m"` as a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e})"))
}

fn parse(s: &str) -> Result<Point, String> {
    let t = s.trim();
    match t {
        "now" => return Ok(Point::Ago(std::time::Duration::ZERO)),
        "today" => return Ok(Point::Today),
        "yesterday" => return Ok(Point::Yesterday),
        _ => {}
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Point::At(at));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(Point::Local(n));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(Point::Local(d.and_time(NaiveTime::MIN)));
    }
    humantime::parse_duration(t).map(Point::Ago).map_err(|_| {
        format!("{s:?} is not a time: use a duration such as \"24h\" or \"90m\", \"today\", \"yesterday\", \"now\" or an ISO time")
    })
}

/// Midnight starting the local day `days_back` days before `now`'s, in `tz`.
fn midnight(tz: Tz, now: DateTime<Utc>, days_back: u64) -> DateTime<Utc> {
    let day = now.with_timezone(&tz).date_naive() - Days::new(days_back);
    local(tz, day.and_time(NaiveTime::MIN))
}

/// A wall-clock time in `tz`; in a DST gap, the moment the gap ends.
pub(super) fn local(tz: Tz, n: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&n) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.to_utc(),
        chrono::LocalResult::None => match n.checked_add_signed(chrono::Duration::hours(1)) {
            Some(later) => local(tz, later),
            None => n.and_utc(),
        },
    }
}

fn at(p: &Point, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    match p {
        // Further back than the calendar goes is the start of time: the
        // window is then refused as too long, not a panic on overflow.
        Point::Ago(d) => chrono::Duration::from_std(*d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        Point::Today => midnight(tz, now, 0),
        Point::Yesterday => midnight(tz, now, 1),
        Point::At(t) => t.to_utc(),
        Point::Local(n) => local(tz, *n),
    }
}

/// The window `since`..`until` (now, or midnight today after `"yesterday"`),
/// refused when it is empty or longer than `max`.
pub fn resolve(
    since: &str,
    until: Option<&str>,
    tz: Tz,
    now: DateTime<Utc>,
    max: std::time::Duration,
) -> Result<Window, String> {
    let from = parse(since).map_err(|e| format!("since: {e}"))?;
    let to = match until {
        Some(u) => parse(u).map_err(|e| format!("until: {e}"))?,
        None if from == Point::Yesterday => Point::Today,
        None => Point::Ago(std::time::Duration::ZERO),
    };
    let start = at(&from, tz, now);
    let end = at(&to, tz, now).min(now);
    if start >= end {
        return Err(format!(
            "the window since {since:?} until {} is empty: since must come before until, and before now",
            until.map_or("now".to_string(), |u| format!("{u:?}"))
        ));
    }
    let len = (end - start).to_std().unwrap_or_default();
    if len > max {
        return Err(format!(
            "the window is {}; HISTORY_MAX_WINDOW allows {}: ask for less",
            super::lean::span(len.as_secs()),
            super::lean::span(max.as_secs())
        ));
    }
    Ok(Window {
        start,
        end,
        ends_now: end == now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONTH: std::time::Duration = std::time::Duration::from_secs(31 * 86400);

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn named_days_are_midnights_in_has_zone() {
        let tz: Tz = "Europe/Amsterdam".parse().unwrap();
        let now = t("2026-12-07T18:30:00Z");
        let w = resolve("today", None, tz, now, MONTH).unwrap();
        assert_eq!(w.start, t("2026-12-06T23:00:00Z"));
        assert!(w.ends_now);
        let y = resolve("yesterday", None, tz, now, MONTH).unwrap();
        assert_eq!(
            (y.start, y.end),
            (t("2026-12-05T23:00:00Z"), t("2026-12-06T23:00:00Z"))
        );
        assert!(!y.ends_now);
        let d = resolve("90m", None, tz, now, MONTH).unwrap();
        assert_eq!(d.start, t("2026-12-07T17:00:00Z"));
        let local = resolve("2026-12-07T08:00", Some("2026-12-07 09:00"), tz, now, MONTH).unwrap();
        assert_eq!(
            (local.start, local.end),
            (t("2026-12-07T07:00:00Z"), t("2026-12-07T08:00:00Z"))
        );
    }

    #[test]
    fn empty_long_and_unreadable_windows_are_refused() {
        let now = t("2026-12-07T18:30:00Z");
        let e = resolve("40d", None, chrono_tz::UTC, now, MONTH).unwrap_err();
        assert_eq!(
            e,
            "the window is 40 d; HISTORY_MAX_WINDOW allows 31 d: ask for less"
        );
        let e = resolve("1h", Some("2h"), chrono_tz::UTC, now, MONTH).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = resolve("last tuesday", None, chrono_tz::UTC, now, MONTH).unwrap_err();
        assert!(
            e.starts_with("since: \"last tuesday\" is not a time"),
            "{e}"
        );
        let w = resolve(
            "1h",
            Some("2030-01-01T00:00:00Z"),
            chrono_tz::UTC,
            now,
            MONTH,
        )
        .unwrap();
        assert_eq!(w.end, now, "the future is clipped to now");
    }
}
