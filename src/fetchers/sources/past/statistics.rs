//! `statistics`: HA's long-term statistics (energy, and any sensor with a
//! `state_class`). One aggregate comes from `recorder/statistic_during_period`
//! with the very period HA's own energy dashboard asks for, so the number is
//! HA's to the last digit; buckets come from `recorder/statistics_during_period`.

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Days, Months, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::super::{Context, Typed};
use super::{ask, iso, max_window, parse_duration, wire};
use crate::fetchers::FetchError;
use crate::state::Read;

/// Buckets listed unless `limit` says otherwise: a day of hours.
pub const DEFAULT_LIMIT: usize = 24;

/// The most buckets one call asks HA for (a month of five-minute buckets is
/// 8,928): what is read stays small even where `limit` lists few.
pub const MAX_BUCKETS: i64 = 10_000;

/// Which aggregate.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// How much a total grew (energy used).
    Change,
    /// The time-weighted mean.
    Mean,
    /// The least value.
    Min,
    /// The largest value.
    Max,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::Change => "change",
            Stat::Mean => "mean",
            Stat::Min => "min",
            Stat::Max => "max",
        }
    }
}

/// Bucket sizes HA keeps statistics in.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
pub enum Bucket {
    #[serde(rename = "5minute")]
    FiveMinute,
    #[serde(rename = "hour")]
    Hour,
    #[serde(rename = "day")]
    Day,
    #[serde(rename = "week")]
    Week,
    #[serde(rename = "month")]
    Month,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::FiveMinute => "5minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }

    /// Its length, a month counted long.
    fn seconds(self) -> i64 {
        match self {
            Bucket::FiveMinute => 300,
            Bucket::Hour => 3600,
            Bucket::Day => 86400,
            Bucket::Week => 7 * 86400,
            Bucket::Month => 31 * 86400,
        }
    }
}

/// Params of the `statistics` source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The statistic: an entity id (`sensor.energy`) or an external one
    /// (`domain:name`); required.
    pub statistic_id: Option<String>,
    /// `change`, `mean`, `min` or `max`; `change` for totals, else `mean`.
    pub stat: Option<Stat>,
    /// `today` (the default), `yesterday`, `this_week`, `last_week`,
    /// `this_month`, `last_month`, or a rolling duration such as `"24h"`.
    pub period: Option<String>,
    /// Instead of one aggregate, buckets of this size: `5minute`, `hour`,
    /// `day`, `week` or `month`.
    pub buckets: Option<Bucket>,
    /// The most buckets listed, newest first.
    pub limit: Option<usize>,
}

/// A period as HA's `statistic_during_period` takes it.
#[derive(Debug, Clone, PartialEq)]
enum Period {
    /// A calendar unit and an offset from the current one.
    Calendar(&'static str, i32),
    /// The last this many seconds.
    Rolling(u64),
}

/// The period params ask for: buckets without one list the last `limit`.
fn period_of(p: &Params) -> Result<Period, String> {
    match (&p.period, p.buckets) {
        (None, Some(b)) => {
            let secs = b.seconds() * p.limit.unwrap_or(DEFAULT_LIMIT) as i64;
            period(&format!("{secs}s"))
        }
        (per, _) => period(per.as_deref().unwrap_or("today")),
    }
}

fn period(s: &str) -> Result<Period, String> {
    Ok(match s {
        "today" => Period::Calendar("day", 0),
        "yesterday" => Period::Calendar("day", -1),
        "this_week" => Period::Calendar("week", 0),
        "last_week" => Period::Calendar("week", -1),
        "this_month" => Period::Calendar("month", 0),
        "last_month" => Period::Calendar("month", -1),
        other => {
            let d = parse_duration(other).map_err(|_| {
                format!("period {other:?}: use today, yesterday, this_week, last_week, this_month, last_month or a duration such as \"24h\"")
            })?;
            if d > max_window() {
                return Err(format!(
                    "period {other:?} is longer than HISTORY_MAX_WINDOW ({})",
                    super::lean::span(max_window().as_secs())
                ));
            }
            Period::Rolling(d.as_secs().max(1))
        }
    })
}

/// The statistic's metadata HA keeps: its unit and what it has.
#[derive(Deserialize)]
struct Meta {
    /// The unit values are stored (and, without `units`, returned) in.
    statistics_unit_of_measurement: Option<String>,
    /// Whether it is a total (`change` works).
    #[serde(default)]
    has_sum: bool,
    /// Its name, when HA has one.
    name: Option<String>,
}

/// The source.
pub struct Statistics;

#[async_trait]
impl Typed for Statistics {
    const NAME: &'static str = "statistics";
    const REQUIRED: &'static [&'static str] = &["statistic_id"];
    /// HA compiles statistics every five minutes, unseen by the mirror.
    const FOLLOWS_STATES: bool = false;
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if let Some(id) = &p.statistic_id {
            let ok = crate::state::valid_entity_id(id)
                || id
                    .split_once(':')
                    .is_some_and(|(d, n)| !d.is_empty() && !n.is_empty());
            if !ok {
                return Err(format!(
                    "statistic_id {id:?} is neither an entity id nor domain:name"
                ));
            }
        }
        let per = period_of(p)?;
        if let Some(b) = p.buckets {
            let rows = window_seconds(&per) / b.seconds();
            if rows > MAX_BUCKETS {
                return Err(format!(
                    "{rows} {} buckets is too many (at most {MAX_BUCKETS}): use larger buckets",
                    b.name()
                ));
            }
        }
        Ok(())
    }

    async fn run(cx: &Context, p: Params) -> Result<(Value, Vec<Read>), FetchError> {
        // A caller's params, not only the row's, stay within the caps.
        Self::check(&p).map_err(FetchError::BadParams)?;
        let id = p
            .statistic_id
            .clone()
            .ok_or_else(|| FetchError::BadParams("missing required param statistic_id".into()))?;
        let per = period_of(&p).map_err(FetchError::BadParams)?;
        // A scope sees an entity's statistic only if it sees the entity, and
        // another integration's (`domain:name`) only if it sees everything.
        let seen = match crate::state::valid_entity_id(&id) {
            true => cx.states.sees(&id),
            false => cx.states.sees_all(),
        };
        if !seen {
            return Err(unknown(&id));
        }
        let meta_call = ask(
            cx,
            json!({"type": "recorder/get_statistics_metadata", "statistic_ids": [id]}),
        );
        let tz_call = super::time_zone(cx);
        let (meta, tz) = tokio::try_join!(meta_call, tz_call)?;
        let meta: Vec<Meta> = serde_json::from_str(meta.get())
            .map_err(|e| FetchError::Failed(format!("statistics metadata: {e}")))?;
        let Some(meta) = meta.into_iter().next() else {
            return Err(unknown(&id));
        };
        let stat = p.stat.unwrap_or(if meta.has_sum {
            Stat::Change
        } else {
            Stat::Mean
        });
        let mut out = Map::new();
        out.insert("statistic_id".into(), id.clone().into());
        // HA names external statistics; an entity's is its friendly name.
        let name = meta
            .name
            .clone()
            .or_else(|| cx.states.cached(&id).map(|s| s.name().to_string()));
        if let Some(n) = name {
            out.insert("name".into(), n.into());
        }
        out.insert("stat".into(), stat.name().into());
        out.insert(
            "period".into(),
            p.period.clone().unwrap_or("today".into()).into(),
        );
        match p.buckets {
            None => {
                let mut body = json!({
                    "type": "recorder/statistic_during_period",
                    "statistic_id": id,
                    "types": [stat.name()],
                });
                match per {
                    Period::Calendar(unit, offset) => {
                        body["calendar"] = json!({"period": unit, "offset": offset})
                    }
                    Period::Rolling(secs) => {
                        body["rolling_window"] = json!({"duration": {"seconds": secs}})
                    }
                }
                let raw = ask(cx, body).await?;
                let v: Map<String, Value> = serde_json::from_str(raw.get()).map_err(|e| {
                    FetchError::Failed(format!("statistic from Home Assistant: {e}"))
                })?;
                out.insert(
                    "value".into(),
                    v.get(stat.name()).cloned().unwrap_or(Value::Null),
                );
            }
            Some(b) => {
                let limit = super::limit(p.limit, DEFAULT_LIMIT)?;
                let now = Utc::now();
                let (start, end) = span(&per, tz, now);
                let raw = ask(
                    cx,
                    json!({
                        "type": "recorder/statistics_during_period",
                        "start_time": wire(start),
                        "end_time": wire(end),
                        "statistic_ids": [id],
                        "period": b.name(),
                        "types": [stat.name()],
                    }),
                )
                .await?;
                let mut rows: std::collections::HashMap<String, Vec<Map<String, Value>>> =
                    serde_json::from_str(raw.get()).map_err(|e| {
                        FetchError::Failed(format!("statistics from Home Assistant: {e}"))
                    })?;
                let rows = rows.remove(&id).unwrap_or_default();
                let more = rows.len().saturating_sub(limit);
                let list: Vec<Value> = rows
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|r| {
                        let start = r.get("start").and_then(Value::as_f64).unwrap_or_default();
                        // Milliseconds since 2023.3; seconds before.
                        let secs = if start > 1e11 { start / 1000.0 } else { start };
                        json!({
                            "start": iso(super::from_secs(secs), tz),
                            "value": r.get(stat.name()).cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect();
                out.insert("buckets".into(), Value::Array(list));
                if more > 0 {
                    out.insert("more".into(), more.into());
                }
            }
        }
        if let Some(u) = meta.statistics_unit_of_measurement {
            out.insert("unit".into(), u.into());
        }
        // Statistics are compiled every five minutes, not on each state
        // change: the row's TTL alone ages them.
        Ok((Value::Object(out), Vec::new()))
    }
}

/// The error for a statistic HA does not keep, or the caller may not see:
/// the same words, so a scope learns nothing of what is outside it.
fn unknown(id: &str) -> FetchError {
    FetchError::BadParams(format!(
        "statistic_id: Home Assistant keeps no statistic {id} (an entity needs a state_class to have one)"
    ))
}

/// Seconds a period covers at most, for the check.
fn window_seconds(per: &Period) -> i64 {
    match per {
        Period::Calendar("day", _) => 86400,
        Period::Calendar("week", _) => 7 * 86400,
        Period::Calendar(_, _) => 31 * 86400,
        Period::Rolling(s) => *s as i64,
    }
}

/// The span a bucket listing asks for: the calendar period in `tz`, or the
/// rolling one.
fn span(per: &Period, tz: chrono_tz::Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.with_timezone(&tz).date_naive();
    let at = |d: chrono::NaiveDate| super::window::local(tz, d.and_time(chrono::NaiveTime::MIN));
    match per {
        Period::Rolling(secs) => (now - chrono::Duration::seconds(*secs as i64), now),
        Period::Calendar("day", off) => {
            let d = today
                .checked_sub_days(Days::new(off.unsigned_abs() as u64))
                .unwrap_or(today);
            (at(d), at(d + Days::new(1)).min(now))
        }
        Period::Calendar("week", off) => {
            let monday = today - Days::new(today.weekday().num_days_from_monday() as u64);
            let d = monday - Days::new(7 * off.unsigned_abs() as u64);
            (at(d), at(d + Days::new(7)).min(now))
        }
        Period::Calendar(_, off) => {
            let first = today.with_day(1).unwrap_or(today);
            let d = first - Months::new(off.unsigned_abs());
            (at(d), at(d + Months::new(1)).min(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_as_has_calendar_and_rolling_windows() {
        assert_eq!(period("last_week").unwrap(), Period::Calendar("week", -1));
        assert_eq!(period("24h").unwrap(), Period::Rolling(86400));
        assert!(period("fortnight").unwrap_err().contains("this_week"));
        assert!(period("40d").unwrap_err().contains("HISTORY_MAX_WINDOW"));
    }

    #[test]
    fn bucket_spans_are_local_calendar_periods() {
        let tz: chrono_tz::Tz = "Europe/Amsterdam".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-09T10:00:00Z")
            .unwrap()
            .to_utc();
        let (s, e) = span(&Period::Calendar("week", -1), tz, now);
        assert_eq!(s.to_rfc3339(), "2026-11-29T23:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-12-06T23:00:00+00:00");
        let (s, _) = span(&Period::Calendar("month", 0), tz, now);
        assert_eq!(s.to_rfc3339(), "2026-11-30T23:00:00+00:00");
    }
}
