//! `history`: what entities did over a window, from HA's
//! `history/history_during_period`, summarised here: time in each state,
//! changes, and for numbers a time-weighted mean; or the changes themselves.
//!
//! Asked with `minimal_response`, `no_attributes` and
//! `significant_changes_only` (attribute-only updates are not changes), in
//! slices (see [`Slices`](super::Slices)), each folded in and dropped: the
//! memory held is one slice and one accumulator per entity.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::super::{Context, Typed};
use super::{ask, from_secs, iso, wire, Select, Slices};
use crate::fetchers::FetchError;
use crate::state::{EntityState, Read};

/// Changes listed per entity in `changes` mode unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 20;

/// What to answer.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Per entity: time in each state, changes, last change; mean, min, max
    /// and last for numbers.
    #[default]
    Summary,
    /// Per entity: the changes, newest first.
    Changes,
}

/// Params of the `history` source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Which entities.
    #[serde(flatten)]
    pub select: Select,
    /// Where the window starts: `"24h"`, `"90m"`, `"today"`, `"yesterday"` or
    /// an ISO time, in HA's time zone; required.
    pub since: Option<String>,
    /// Where it ends (the same forms); now unless given.
    pub until: Option<String>,
    /// `summary` (the default) or `changes`.
    #[serde(default)]
    pub mode: Mode,
    /// In `changes` mode, the most changes listed per entity.
    pub limit: Option<usize>,
}

/// The source.
pub struct History;

#[async_trait]
impl Typed for History {
    const NAME: &'static str = "history";
    const REQUIRED: &'static [&'static str] = &["since"];
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        check_select(&p.select)?;
        super::check_window(p.since.as_deref(), p.until.as_deref())
    }

    async fn run(cx: &Context, p: Params) -> Result<(Value, Vec<Read>), FetchError> {
        // A caller's selection, not only the row's; the window is checked
        // where it is resolved, in HA's zone.
        check_select(&p.select).map_err(FetchError::BadParams)?;
        let (entities, mut reads) = p.select.resolve(cx).await?;
        let (w, tz) = super::window_of(cx, p.since.as_deref(), p.until.as_deref()).await?;
        // A window that ends in the past is over: no state change alters it,
        // and the TTL alone ages it.
        if !w.ends_now {
            reads.clear();
        }
        let limit = super::limit(p.limit, DEFAULT_LIMIT)?;
        let mut accs: HashMap<&str, Acc> = entities
            .iter()
            .map(|s| (&*s.entity_id, Acc::new(p.mode, limit)))
            .collect();
        if !entities.is_empty() {
            let ids: Vec<&str> = entities.iter().map(|s| &*s.entity_id).collect();
            let mut slices = Slices::new(&w);
            while let Some(slice) = slices.next_slice() {
                let raw = ask(
                    cx,
                    json!({
                        "type": "history/history_during_period",
                        "start_time": wire(slice.0),
                        "end_time": wire(slice.1),
                        "entity_ids": ids,
                        "include_start_time_state": true,
                        "significant_changes_only": true,
                        "minimal_response": true,
                        "no_attributes": true,
                    }),
                )
                .await?;
                slices.learn(slice, raw.get().len());
                // Rows borrow the answer's text: no string per row.
                let rows: HashMap<&str, Vec<Row<'_>>> = serde_json::from_str(raw.get())
                    .map_err(|e| FetchError::Failed(format!("history from Home Assistant: {e}")))?;
                for (id, rows) in rows {
                    if let Some(acc) = accs.get_mut(id) {
                        acc.fold(&rows, slice);
                    }
                }
            }
        }
        let list: Vec<Value> = entities
            .iter()
            .map(|s| {
                let acc = accs
                    .get_mut(&*s.entity_id)
                    .expect("one accumulator per entity");
                if w.ends_now {
                    acc.catch_up(s, &w);
                }
                acc.finish(s, tz)
            })
            .collect();
        let mut out = Map::new();
        out.insert("since".into(), iso(w.start, tz).into());
        out.insert("until".into(), iso(w.end, tz).into());
        out.insert("entities".into(), Value::Array(list));
        Ok((Value::Object(out), reads))
    }
}

/// What a selection must be: valid, and naming something.
fn check_select(select: &super::Select) -> Result<(), String> {
    select.check()?;
    match select.is_empty() {
        true => Err("name the entities: entity_id, domain, pattern or area".into()),
        false => Ok(()),
    }
}

/// One row of HA's compressed history: a state and when it was recorded
/// (the slice's start for the state the slice opens with).
#[derive(Deserialize)]
struct Row<'a> {
    /// The state.
    #[serde(borrow)]
    s: std::borrow::Cow<'a, str>,
    /// Last updated, seconds since the epoch.
    lu: f64,
}

/// What one entity's rows add up to so far. Slices arrive newest first and
/// each opens with the state in force at its start, so each is folded on its
/// own: its durations, its transitions, nothing carried between slices.
struct Acc {
    /// What to keep.
    mode: Mode,
    /// The most changes kept in `changes` mode.
    limit: usize,
    /// The newest state and when it began, from the newest slice read.
    newest: Option<(String, DateTime<Utc>)>,
    /// State transitions seen.
    changes: u64,
    /// When the newest transition was.
    last_changed: Option<DateTime<Utc>>,
    /// Seconds in each state.
    durations: BTreeMap<String, f64>,
    /// For numeric states: the time-weighted sum and the time it covers, min, max.
    numeric: Option<Numeric>,
    /// In `changes` mode, the newest transitions, newest first.
    recent: Vec<(DateTime<Utc>, String)>,
}

/// Running figures of a numeric state.
struct Numeric {
    /// The integral of the value over time, in value × seconds.
    area: f64,
    /// The seconds that integral covers.
    seconds: f64,
    /// The least value seen.
    min: f64,
    /// The largest value seen.
    max: f64,
}

impl Numeric {
    /// Adds `secs` of `state`, when it is a number.
    fn add(slot: &mut Option<Numeric>, state: &str, secs: f64) {
        let Ok(v) = state.parse::<f64>() else {
            return;
        };
        let n = slot.get_or_insert(Numeric {
            area: 0.0,
            seconds: 0.0,
            min: v,
            max: v,
        });
        n.area += v * secs;
        n.seconds += secs;
        n.min = n.min.min(v);
        n.max = n.max.max(v);
    }
}

impl Acc {
    fn new(mode: Mode, limit: usize) -> Self {
        Self {
            mode,
            limit,
            newest: None,
            changes: 0,
            last_changed: None,
            durations: BTreeMap::new(),
            numeric: None,
            recent: Vec::new(),
        }
    }

    /// Folds in one slice's rows (in time order), clipped to the slice. The
    /// slice's first row is the state in force at its start: not a change.
    fn fold(&mut self, rows: &[Row<'_>], (start, end): (DateTime<Utc>, DateTime<Utc>)) {
        let at: Vec<DateTime<Utc>> = rows
            .iter()
            .map(|r| from_secs(r.lu).clamp(start, end))
            .collect();
        for (i, r) in rows.iter().enumerate() {
            let until = at.get(i + 1).copied().unwrap_or(end);
            let secs = (until - at[i]).num_milliseconds().max(0) as f64 / 1000.0;
            *self.durations.entry(r.s.to_string()).or_default() += secs;
            Numeric::add(&mut self.numeric, &r.s, secs);
        }
        let mut began = at.first().copied();
        let mut newest_change = None;
        for i in (1..rows.len()).rev() {
            if rows[i].s == rows[i - 1].s {
                continue;
            }
            self.changes += 1;
            newest_change.get_or_insert(at[i]);
            if self.mode == Mode::Changes && self.recent.len() < self.limit {
                self.recent.push((at[i], rows[i].s.to_string()));
            }
        }
        if let Some(t) = newest_change {
            began = Some(t);
            self.last_changed.get_or_insert(t);
        }
        if let (None, Some(last), Some(began)) = (&self.newest, rows.last(), began) {
            self.newest = Some((last.s.to_string(), began));
        }
    }

    /// For a window that ends now: the mirror's state, when it changed after
    /// the newest row HA's recorder had committed (it commits each second or
    /// so; the event reached us first). Then the answer agrees with the
    /// states the same prompt shows.
    fn catch_up(&mut self, s: &EntityState, w: &super::Window) {
        let changed_at = s
            .json()
            .get("last_changed")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc());
        let (Some(at), Some((state, since))) = (changed_at, &self.newest) else {
            return;
        };
        if *state == *s.state || at <= *since || at <= w.start || at > w.end {
            return;
        }
        // The time since `at` was credited to the old state: it is the new one's.
        let secs = (w.end - at).num_milliseconds().max(0) as f64 / 1000.0;
        if let Some(d) = self.durations.get_mut(state) {
            *d = (*d - secs).max(0.0);
        }
        if let (Some(n), Ok(v)) = (&mut self.numeric, state.parse::<f64>()) {
            n.area -= v * secs;
            n.seconds -= secs;
        }
        *self.durations.entry(s.state.to_string()).or_default() += secs;
        Numeric::add(&mut self.numeric, &s.state, secs);
        self.changes += 1;
        self.last_changed = Some(at);
        if self.mode == Mode::Changes && self.limit > 0 {
            self.recent.insert(0, (at, s.state.to_string()));
            self.recent.truncate(self.limit);
        }
        self.newest = Some((s.state.to_string(), at));
    }

    fn finish(&self, s: &EntityState, tz: chrono_tz::Tz) -> Value {
        let mut out = Map::new();
        out.insert("entity_id".into(), (&*s.entity_id).into());
        out.insert("name".into(), s.name().into());
        match self.mode {
            Mode::Summary => self.summary(&mut out, s, tz),
            Mode::Changes => {
                let list: Vec<Value> = self
                    .recent
                    .iter()
                    .map(|(at, state)| json!({"at": iso(*at, tz), "state": state}))
                    .collect();
                out.insert("changes".into(), Value::Array(list));
                let more = self.changes - self.recent.len() as u64;
                if more > 0 {
                    out.insert("more".into(), more.into());
                }
            }
        }
        Value::Object(out)
    }

    fn summary(&self, out: &mut Map<String, Value>, s: &EntityState, tz: chrono_tz::Tz) {
        out.insert("changes".into(), self.changes.into());
        // A number's every value is not a state worth a duration each.
        let numeric = self.numeric.as_ref().filter(|_| {
            self.durations.keys().all(|k| {
                k.parse::<f64>().is_ok() || matches!(k.as_str(), "unavailable" | "unknown")
            })
        });
        match numeric {
            Some(n) => {
                if n.seconds > 0.0 {
                    out.insert("mean".into(), round(n.area / n.seconds).into());
                }
                out.insert("min".into(), round(n.min).into());
                out.insert("max".into(), round(n.max).into());
                let last = self
                    .newest
                    .as_ref()
                    .and_then(|(v, _)| v.parse::<f64>().ok());
                if let Some(last) = last {
                    out.insert("last".into(), round(last).into());
                }
                let unit = s.attributes_where(&|k| k == "unit_of_measurement");
                if let Some((_, u)) = unit.into_iter().next() {
                    out.insert("unit".into(), u);
                }
            }
            None => {
                let d: Map<String, Value> = self
                    .durations
                    .iter()
                    .map(|(k, v)| (k.clone(), (v.round() as u64).into()))
                    .collect();
                out.insert("durations".into(), Value::Object(d));
            }
        }
        if let Some(at) = self.last_changed {
            out.insert("last_changed".into(), iso(at, tz).into());
        }
    }
}

/// A figure to the precision a prompt needs: four significant decimals.
fn round(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn rows(v: &[(&'static str, &str)]) -> Vec<Row<'static>> {
        v.iter()
            .map(|(s, at)| Row {
                s: (*s).into(),
                lu: t(at).timestamp_micros() as f64 / 1e6,
            })
            .collect()
    }

    #[test]
    fn durations_and_changes_fold_across_slices_newest_first() {
        let mut acc = Acc::new(Mode::Summary, 20);
        let (a, b, c) = (
            t("2026-12-07T00:00:00Z"),
            t("2026-12-07T01:00:00Z"),
            t("2026-12-07T03:00:00Z"),
        );
        // The newer slice opens with the state in force: not a change.
        let newer = rows(&[
            ("on", "2026-12-07T01:00:00Z"),
            ("off", "2026-12-07T02:00:00Z"),
        ]);
        acc.fold(&newer, (b, c));
        let older = rows(&[
            ("off", "2026-12-07T00:00:00Z"),
            ("on", "2026-12-07T00:30:00Z"),
        ]);
        acc.fold(&older, (a, b));
        assert_eq!(acc.changes, 2);
        assert_eq!(acc.durations["on"], 5400.0);
        assert_eq!(acc.durations["off"], 1800.0 + 3600.0);
        assert_eq!(acc.last_changed, Some(t("2026-12-07T02:00:00Z")));
        assert_eq!(acc.newest, Some(("off".into(), t("2026-12-07T02:00:00Z"))));
    }

    #[test]
    fn numbers_get_a_time_weighted_mean() {
        let mut acc = Acc::new(Mode::Summary, 20);
        let (a, b) = (t("2026-12-07T00:00:00Z"), t("2026-12-07T04:00:00Z"));
        acc.fold(
            &rows(&[
                ("10", "2026-12-07T00:00:00Z"),
                ("20", "2026-12-07T03:00:00Z"),
            ]),
            (a, b),
        );
        let n = acc.numeric.as_ref().unwrap();
        assert_eq!(n.area / n.seconds, 12.5);
        assert_eq!((n.min, n.max), (10.0, 20.0));
    }

    #[test]
    fn changes_mode_keeps_the_newest_and_counts_the_rest() {
        let mut acc = Acc::new(Mode::Changes, 2);
        let (a, b, c) = (
            t("2026-12-07T00:00:00Z"),
            t("2026-12-07T02:00:00Z"),
            t("2026-12-07T04:00:00Z"),
        );
        acc.fold(
            &rows(&[
                ("off", "2026-12-07T02:00:00Z"),
                ("on", "2026-12-07T03:00:00Z"),
            ]),
            (b, c),
        );
        acc.fold(
            &rows(&[
                ("off", "2026-12-07T00:00:00Z"),
                ("on", "2026-12-07T01:00:00Z"),
                ("off", "2026-12-07T01:30:00Z"),
            ]),
            (a, b),
        );
        assert_eq!(acc.changes, 3);
        let kept: Vec<&str> = acc.recent.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(kept, ["on", "off"], "newest first");
    }
}
