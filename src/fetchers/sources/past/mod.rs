//! What the three sources of the past share: a window in Home Assistant's
//! time zone, an entity selection resolved against the mirror, calls over
//! the live link with errors that say which integration to enable, and the
//! slicing that keeps each answer read from HA small.

pub mod history;
pub mod lean;
pub mod logbook;
pub mod statistics;
mod window;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{state_err, Context};
use crate::fetchers::FetchError;
use crate::ha::CallError;
use crate::state::{EntityState, Glob, Query, Read};

pub use window::{parse_duration, Window};

/// The longest window a call may ask for, unless `HISTORY_MAX_WINDOW` says
/// otherwise: a month of history is what a prompt can use.
pub const DEFAULT_MAX_WINDOW: Duration = Duration::from_secs(31 * 86400);

/// The most entities one call asks HA about: more is a question about the
/// whole house, which `summary` answers from the mirror.
pub const MAX_ENTITIES: usize = 100;

/// The most lines (changes, logbook entries) a call may ask to list.
pub const MAX_LIMIT: usize = 1000;

/// `limit` as asked, or `default`, refused past [`MAX_LIMIT`].
pub fn limit(asked: Option<usize>, default: usize) -> Result<usize, FetchError> {
    match asked {
        Some(n) if n > MAX_LIMIT => Err(FetchError::BadParams(format!(
            "limit {n} is more than {MAX_LIMIT}"
        ))),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// What one answer from HA should weigh: each slice of a window is sized
/// from the last one's bytes per second to come near this.
pub const SLICE_BYTES: usize = 4 * 1024 * 1024;

/// The first slice's length: short, to learn how busy the entities are
/// before asking for more.
pub const FIRST_SLICE: Duration = Duration::from_secs(3600);

/// How much longer a slice may be than the one before. Not a hard bound on
/// an answer: HA's history has no row limit, so a slice whose rows are more
/// than this many times denser than the one before's weighs more than
/// planned, and one past `HA_MAX_FRAME_BYTES` drops the link (which then
/// reconnects and resyncs). Reading newest first keeps that rare: the rate
/// is learned where the rows are, and older slices only grow sparser toward
/// the recorder's purge horizon.
pub const SLICE_GROWTH: u32 = 8;

/// The longest window, in seconds: process-wide, as the setting is, so a
/// row's params are checked against it when the row loads.
static MAX_WINDOW_SECS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_WINDOW.as_secs());

/// Sets the longest window (`HISTORY_MAX_WINDOW`).
pub fn set_max_window(d: Duration) {
    MAX_WINDOW_SECS.store(d.as_secs().max(60), Ordering::Relaxed);
}

/// The longest window now.
pub fn max_window() -> Duration {
    Duration::from_secs(MAX_WINDOW_SECS.load(Ordering::Relaxed))
}

/// One entity id or several.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Ids {
    One(String),
    Many(Vec<String>),
}

impl Ids {
    fn list(&self) -> Vec<&str> {
        match self {
            Ids::One(s) => vec![s.as_str()],
            Ids::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Which entities: those `entity_id` names, else those `domain`, `pattern`
/// and `area` together select, as the `entities` source does.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
pub struct Select {
    /// One entity id or a list; when given, the other three are not used.
    pub entity_id: Option<Ids>,
    /// Every entity of this domain (`light`).
    pub domain: Option<String>,
    /// A glob over entity id and friendly name.
    pub pattern: Option<String>,
    /// Entities in this area (id or name).
    pub area: Option<String>,
}

impl Select {
    /// Whether anything narrows the selection.
    pub fn is_empty(&self) -> bool {
        self.entity_id.is_none()
            && self.domain.is_none()
            && self.pattern.is_none()
            && self.area.is_none()
    }

    /// What is wrong with it, for a row's check.
    pub fn check(&self) -> Result<(), String> {
        for id in self.entity_id.iter().flat_map(Ids::list) {
            if !crate::state::valid_entity_id(id) {
                return Err(format!("entity_id {id:?} is not a valid entity id"));
            }
        }
        if let Some(p) = &self.pattern {
            Glob::new(p).map_err(|e| format!("pattern: {e}"))?;
        }
        Ok(())
    }

    /// The entities it names, from the mirror, with what was read; at most
    /// [`MAX_ENTITIES`].
    pub async fn resolve(&self, cx: &Context) -> Result<(Vec<EntityState>, Vec<Read>), FetchError> {
        let states = &cx.states;
        let mut found = Vec::new();
        let mut reads = Vec::new();
        if let Some(ids) = &self.entity_id {
            let mut domains = BTreeSet::new();
            // A repeated id is one entity: listed once, asked once.
            let named: BTreeSet<&str> = ids.list().into_iter().collect();
            for id in named {
                domains.insert(crate::state::domain_of(id).to_string());
                match states.get(id).await {
                    Ok(s) => found.push(s),
                    Err(crate::state::StateError::NotFound(_)) => {
                        return Err(FetchError::BadParams(format!(
                            "entity_id: no entity {id} in Home Assistant"
                        )))
                    }
                    Err(e) => return Err(state_err(e)),
                }
            }
            reads.extend(domains.iter().map(|d| Read::of(states, Some(d))));
        }
        // Named entities are the selection: a caller naming one on a row
        // that lists a domain means that entity, not none of them.
        let filtered = self.entity_id.is_none()
            && (self.domain.is_some() || self.pattern.is_some() || self.area.is_some());
        if filtered {
            let pattern = match &self.pattern {
                Some(p) => {
                    Some(Glob::new(p).map_err(|e| FetchError::BadParams(format!("pattern: {e}")))?)
                }
                None => None,
            };
            reads.push(Read::of(states, self.domain.as_deref()));
            let q = Query {
                domain: self.domain.clone(),
                state: None,
                pattern,
            };
            let mut more = states.list(&q).await.map_err(state_err)?;
            if let Some(area) = &self.area {
                let inside = states.area_entities(area).ok_or_else(|| {
                    FetchError::BadParams(format!(
                        "area: no area {area:?} in Home Assistant's area registry"
                    ))
                })?;
                more.retain(|s| inside.contains(&*s.entity_id));
            }
            found = more;
        }
        if found.len() > MAX_ENTITIES {
            return Err(FetchError::BadParams(format!(
                "the selection matches {} entities; at most {MAX_ENTITIES} are asked about at once: narrow it with entity_id, domain, pattern or area",
                found.len()
            )));
        }
        Ok((found, reads))
    }
}

/// Which integration answers a command, for the error when HA lacks it.
fn integration(command: &str) -> &'static str {
    match command.split('/').next() {
        Some("history") => "history",
        Some("logbook") => "logbook",
        _ => "recorder",
    }
}

/// Calls HA over the live link; its refusals become errors that say what to do.
pub async fn ask(
    cx: &Context,
    body: Value,
) -> Result<Box<serde_json::value::RawValue>, FetchError> {
    cx.ha.call(body).await.map_err(|e| match e {
        CallError::Refused { command, code, .. } if code == "unknown_command" => {
            let name = integration(&command);
            FetchError::Failed(format!(
                "Home Assistant does not know {command}: enable the `{name}:` integration (and `recorder:`) in its configuration.yaml, or `default_config:`"
            ))
        }
        CallError::Refused {
            command,
            code,
            message,
        } if code == "invalid_format" => FetchError::BadParams(format!("{command}: {message}")),
        other => FetchError::Failed(other.to_string()),
    })
}

/// HA's time zone, or why it cannot be known.
pub async fn time_zone(cx: &Context) -> Result<chrono_tz::Tz, FetchError> {
    cx.ha
        .time_zone()
        .await
        .map_err(|e| FetchError::Failed(e.to_string()))
}

/// A row's `since`/`until` checked as they will be read: the forms, and the
/// length of a window that does not depend on the zone.
pub fn check_window(since: Option<&str>, until: Option<&str>) -> Result<(), String> {
    match since {
        Some(since) => {
            window::resolve(since, until, chrono_tz::UTC, Utc::now(), max_window()).map(drop)
        }
        None => Ok(()),
    }
}

/// The window `since`..`until` in HA's zone, and that zone.
pub async fn window_of(
    cx: &Context,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Window, chrono_tz::Tz), FetchError> {
    let since =
        since.ok_or_else(|| FetchError::BadParams("missing required param since".into()))?;
    let tz = time_zone(cx).await?;
    let w = window::resolve(since, until, tz, Utc::now(), max_window())
        .map_err(FetchError::BadParams)?;
    Ok((w, tz))
}

/// `t` as an ISO time in `tz`, to the second: what results carry.
pub fn iso(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// `t` as HA's history takes it.
pub fn wire(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Seconds since the epoch (as HA's compressed rows give them) as a time.
pub fn from_secs(ts: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((ts * 1e6) as i64).unwrap_or_default()
}

/// `HH:MM` in `tz` for a time today there, else `Mon 18:02` within a week,
/// else `Dec 6 18:02`: the shortest stamp a reader needs.
pub fn clock(t: DateTime<Utc>, tz: chrono_tz::Tz, now: DateTime<Utc>) -> String {
    let (local, today) = (t.with_timezone(&tz), now.with_timezone(&tz));
    if local.date_naive() == today.date_naive() {
        local.format("%H:%M").to_string()
    } else if now - t < chrono::Duration::days(6) {
        local.format("%a %H:%M").to_string()
    } else {
        local.format("%b %-d %H:%M").to_string()
    }
}

/// The slices a window is read in, newest first, each sized from how many
/// bytes per second the one after it weighed. Newest first because rows are
/// densest where they are recent (older ones thin out toward the recorder's
/// purge horizon), so the first slice learns the rate that matters.
pub struct Slices {
    /// Where the next slice ends.
    next: DateTime<Utc>,
    /// Where the window starts.
    start: DateTime<Utc>,
    /// The next slice's length.
    len: chrono::Duration,
}

impl Slices {
    pub fn new(w: &Window) -> Self {
        Self {
            next: w.end,
            start: w.start,
            len: chrono::Duration::from_std(FIRST_SLICE).unwrap_or_default(),
        }
    }

    /// The next (older) slice as `(start, end)`, or `None` once the window
    /// is covered.
    pub fn next_slice(&mut self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if self.next <= self.start {
            return None;
        }
        let end = self.next;
        let start = (end - self.len).max(self.start);
        self.next = start;
        Some((start, end))
    }

    /// The slice just read, `(start, end)`, weighed `bytes`: size the next.
    pub fn learn(&mut self, slice: (DateTime<Utc>, DateTime<Utc>), bytes: usize) {
        let secs = (slice.1 - slice.0).num_milliseconds().max(1) as f64 / 1000.0;
        let grown = self.len * SLICE_GROWTH as i32;
        let fit = chrono::Duration::milliseconds(
            (secs * SLICE_BYTES as f64 / bytes.max(1) as f64 * 1000.0).min(1e15) as i64,
        );
        self.len = fit.clamp(chrono::Duration::minutes(1), grown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_grow_on_quiet_windows_and_shrink_on_busy_ones() {
        let now = Utc::now();
        let w = Window {
            start: now - chrono::Duration::days(2),
            end: now,
            ends_now: true,
        };
        let mut s = Slices::new(&w);
        let first = s.next_slice().unwrap();
        assert_eq!(first.1 - first.0, chrono::Duration::hours(1));
        s.learn(first, 10);
        let second = s.next_slice().unwrap();
        assert_eq!(
            second.1 - second.0,
            chrono::Duration::hours(8),
            "growth is capped"
        );
        s.learn(second, SLICE_BYTES * 8);
        let third = s.next_slice().unwrap();
        assert_eq!(
            third.1 - third.0,
            chrono::Duration::hours(1),
            "busy: 8 h weighed 8 slices"
        );
        s.learn(third, 10);
        let mut n = 3;
        while let Some(next) = s.next_slice() {
            s.learn(next, 10);
            n += 1;
        }
        assert!(n < 10, "the rest is covered: {n}");
    }
}
