//! The simulated house's recorder: every state change it made, and answers
//! to the history, logbook and statistics commands in Home Assistant's
//! shapes, so `demo` and the tests reach the sources of the past without a
//! real HA. Statistics are computed from the changes, not compiled hourly.

use std::collections::VecDeque;

use chrono::{DateTime, Datelike, Days, NaiveTime, Utc};
use serde_json::{json, Map, Value};

/// Changes kept; the oldest go first, as HA's purge would.
pub const MAX_CHANGES: usize = 100_000;

/// One recorded change.
#[derive(Debug, Clone)]
struct Change {
    /// Which entity.
    id: String,
    /// Its state before; `None` when it was new.
    old: Option<String>,
    /// Its state after.
    new: String,
    /// When, in microseconds since the epoch.
    at: i64,
}

/// The changes, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// At most [`MAX_CHANGES`].
    changes: VecDeque<Change>,
    /// When the house was built (micros): it has no past before that, as a
    /// fresh HA's recorder has none.
    born: i64,
}

/// Reads a state's `state` and the attribute `key` from its JSON text.
fn field(raw: &str, key: &str) -> Option<String> {
    let v: Value = serde_json::from_str(raw).ok()?;
    let x = match key {
        "state" => v.get("state"),
        k => v.get("attributes").and_then(|a| a.get(k)),
    }?;
    x.as_str().map(str::to_string)
}

impl Recorder {
    /// A recorder whose history starts now.
    pub fn starting_now() -> Self {
        Self {
            changes: VecDeque::new(),
            born: Utc::now().timestamp_micros(),
        }
    }

    /// Records a change of `id` from `old` to `new` (JSON texts) at `at`;
    /// an update that keeps the state is not a change.
    pub fn record(&mut self, id: &str, old: Option<&str>, new: &str, at: i64) {
        let old = old.and_then(|o| field(o, "state"));
        let Some(new) = field(new, "state") else {
            return;
        };
        if old.as_deref() == Some(new.as_str()) {
            return;
        }
        if self.changes.len() == MAX_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back(Change {
            id: id.to_string(),
            old,
            new,
            at,
        });
    }

    /// `id`'s state at `t`, given its state now.
    fn state_at(&self, id: &str, t: i64, now: Option<&str>) -> Option<String> {
        let mine = self.changes.iter().filter(|c| c.id == id);
        let mut before = None;
        for c in mine {
            if c.at <= t {
                before = Some(c.new.clone());
            } else {
                return before.or_else(|| c.old.clone());
            }
        }
        before.or_else(|| now.map(str::to_string))
    }

    fn between<'a>(
        &'a self,
        id: Option<&'a str>,
        start: i64,
        end: i64,
    ) -> impl Iterator<Item = &'a Change> {
        self.changes
            .iter()
            .filter(move |c| c.at > start && c.at <= end && id.is_none_or(|id| c.id == id))
    }
}

fn micros(v: &Value, key: &str) -> Option<i64> {
    let s = v.get(key)?.as_str()?;
    crate::state::parse_ts(s)
}

fn secs(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// Answers a recorder-backed command, or `None` when `cmd` is not one.
/// `state` gives an entity's JSON text now.
pub fn answer(
    rec: &Recorder,
    cmd: &Value,
    state: &dyn Fn(&str) -> Option<String>,
) -> Option<Value> {
    let now = Utc::now().timestamp_micros();
    let kind = cmd.get("type")?.as_str()?;
    let start = micros(cmd, "start_time").unwrap_or(now);
    let end = micros(cmd, "end_time").unwrap_or(now).min(now);
    let ids: Vec<String> = cmd
        .get("entity_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some(match kind {
        "history/history_during_period" => {
            let mut out = Map::new();
            for id in &ids {
                let now_raw = state(id);
                let now_state = now_raw.as_deref().and_then(|r| field(r, "state"));
                let mut rows = Vec::new();
                let from = start.max(rec.born);
                if let Some(s) = rec.state_at(id, from, now_state.as_deref()) {
                    rows.push(json!({"s": s, "lu": secs(from)}));
                }
                rows.extend(
                    rec.between(Some(id), start, end)
                        .map(|c| json!({"s": c.new, "lu": secs(c.at)})),
                );
                if !rows.is_empty() {
                    out.insert(id.clone(), Value::Array(rows));
                }
            }
            Value::Object(out)
        }
        "logbook/get_events" => {
            // HA's own start is an entry of no entity, in a house-wide answer.
            let started = (ids.is_empty() && (start..end).contains(&rec.born)).then(|| {
                json!({"when": secs(rec.born), "name": "Home Assistant", "message": "started",
                       "domain": "homeassistant"})
            });
            let list: Vec<Value> = started
                .into_iter()
                .chain(
                    rec.between(None, start, end)
                        .filter(|c| ids.is_empty() || ids.contains(&c.id))
                        .map(|c| {
                            let name = state(&c.id).and_then(|r| field(&r, "friendly_name"));
                            json!({"when": secs(c.at), "entity_id": c.id, "state": c.new, "name": name})
                        }),
                )
                .collect();
            Value::Array(list)
        }
        "recorder/get_statistics_metadata" => {
            let wanted = cmd
                .get("statistic_ids")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let list: Vec<Value> = wanted
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|id| {
                    let raw = state(id)?;
                    let class = field(&raw, "state_class")?;
                    Some(json!({
                        "statistic_id": id,
                        "source": "recorder",
                        "name": null,
                        "has_mean": class == "measurement",
                        "has_sum": class != "measurement",
                        "statistics_unit_of_measurement": field(&raw, "unit_of_measurement"),
                        "unit_class": null,
                    }))
                })
                .collect();
            Value::Array(list)
        }
        "recorder/statistic_during_period" => {
            let id = cmd
                .get("statistic_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (s, e) = period(cmd, now);
            Value::Object(stats(rec, id, s, e, state))
        }
        "recorder/statistics_during_period" => {
            let id = cmd
                .get("statistic_ids")
                .and_then(|v| v.get(0))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let step = match cmd.get("period").and_then(Value::as_str) {
                Some("5minute") => 300,
                Some("hour") => 3600,
                Some("day") => 86400,
                Some("week") => 7 * 86400,
                _ => 31 * 86400,
            } * 1_000_000;
            let mut rows = Vec::new();
            let mut t = start - start.rem_euclid(step);
            while t < end && rows.len() < 10_000 {
                let mut row = stats(rec, id, t, t + step, state);
                row.insert("start".into(), json!(t / 1000));
                row.insert("end".into(), json!((t + step) / 1000));
                rows.push(Value::Object(row));
                t += step;
            }
            json!({ id: rows })
        }
        _ => return None,
    })
}

/// The span a `statistic_during_period` command names, in UTC.
fn period(cmd: &Value, now: i64) -> (i64, i64) {
    if let Some(secs) = cmd
        .pointer("/rolling_window/duration/seconds")
        .and_then(Value::as_i64)
    {
        return (now - secs * 1_000_000, now);
    }
    let unit = cmd
        .pointer("/calendar/period")
        .and_then(Value::as_str)
        .unwrap_or("day");
    let off = cmd
        .pointer("/calendar/offset")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let today = DateTime::from_timestamp_micros(now)
        .unwrap_or_default()
        .date_naive();
    let first = match unit {
        "week" => today - Days::new(today.weekday().num_days_from_monday() as u64),
        "month" => today.with_day(1).unwrap_or(today),
        _ => today,
    };
    let len = |d: chrono::NaiveDate| match unit {
        "week" => d + Days::new(7),
        "month" => d + chrono::Months::new(1),
        _ => d + Days::new(1),
    };
    let mut s = first;
    for _ in 0..off.unsigned_abs() {
        s = match unit {
            "week" => s - Days::new(7),
            "month" => s - chrono::Months::new(1),
            _ => s - Days::new(1),
        };
    }
    let at = |d: chrono::NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp_micros();
    (at(s), at(len(s)).min(now))
}

/// change, mean (by changes, not time), min and max of `id` over a span.
fn stats(
    rec: &Recorder,
    id: &str,
    start: i64,
    end: i64,
    state: &dyn Fn(&str) -> Option<String>,
) -> Map<String, Value> {
    let now = state(id).and_then(|r| field(&r, "state"));
    let num = |s: Option<String>| s.and_then(|s| s.parse::<f64>().ok());
    let first = num(rec.state_at(id, start, now.as_deref()));
    let last = num(rec.state_at(id, end, now.as_deref()));
    let mut values: Vec<f64> = first.into_iter().collect();
    values.extend(
        rec.between(Some(id), start, end)
            .filter_map(|c| c.new.parse::<f64>().ok()),
    );
    let mut out = Map::new();
    if let (Some(a), Some(b)) = (first, last) {
        out.insert("change".into(), json!(b - a));
    }
    if !values.is_empty() {
        let n = values.len() as f64;
        out.insert("mean".into(), json!(values.iter().sum::<f64>() / n));
        out.insert(
            "min".into(),
            json!(values.iter().cloned().fold(f64::INFINITY, f64::min)),
        );
        out.insert(
            "max".into(),
            json!(values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
        );
    }
    out
}
