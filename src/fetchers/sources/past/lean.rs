//! The lean text of the sources of the past, one line per entity or event,
//! as `lean` prints every fetcher: "Kitchen Lights: on 3 h 12 min, off 20 h
//! 48 min, 6 changes, last 18:02".

use std::fmt::Write;

use chrono::DateTime;
use serde_json::{Map, Value};

/// The line of a `history` entity or a `logbook` event, when `m` is one.
pub fn line(m: &Map<String, Value>) -> Option<String> {
    if let Some(Value::String(l)) = m.get("line") {
        return Some(l.clone());
    }
    if let (Some(id), Some(v)) = (
        m.get("statistic_id").and_then(Value::as_str),
        m.get("value"),
    ) {
        let name = m.get("name").and_then(Value::as_str).unwrap_or(id);
        let word = |k: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('_', " ")
        };
        let unit = m
            .get("unit")
            .and_then(Value::as_str)
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        return Some(format!(
            "{name}, {}: {} {v}{unit}",
            word("period"),
            word("stat")
        ));
    }
    let name = m.get("name").and_then(Value::as_str)?;
    let mut parts: Vec<String> = Vec::new();
    match m.get("changes")? {
        Value::Array(list) => {
            for c in list {
                let at = c
                    .get("at")
                    .and_then(Value::as_str)
                    .map(stamp)
                    .unwrap_or_default();
                let state = c.get("state").and_then(Value::as_str).unwrap_or_default();
                parts.push(format!("{state} {at}"));
            }
            if let Some(more) = m.get("more").and_then(Value::as_u64) {
                parts.push(format!("{more} more"));
            }
            if list.is_empty() && parts.is_empty() {
                parts.push("no changes".into());
            }
        }
        Value::Number(n) => {
            let unit = m
                .get("unit")
                .and_then(Value::as_str)
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            if let Some(mean) = m.get("mean") {
                parts.push(format!("mean {mean}{unit}"));
                for k in ["min", "max", "last"] {
                    if let Some(v) = m.get(k) {
                        parts.push(format!("{k} {v}"));
                    }
                }
            }
            if let Some(Value::Object(d)) = m.get("durations") {
                let mut d: Vec<(&String, u64)> = d
                    .iter()
                    .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                    .collect();
                d.sort_by_key(|(_, secs)| std::cmp::Reverse(*secs));
                for (state, secs) in d {
                    parts.push(format!("{state} {}", span(secs)));
                }
            }
            parts.push(match n.as_u64() {
                Some(1) => "1 change".into(),
                _ => format!("{n} changes"),
            });
            // A number's last value says more than when it last moved.
            let at = m.get("last_changed").and_then(Value::as_str);
            if let (Some(at), None) = (at, m.get("mean")) {
                parts.push(format!("last {}", stamp(at)));
            }
        }
        _ => return None,
    }
    Some(format!("{name}: {}", parts.join(", ")))
}

/// Seconds as "3 h 12 min", "45 min", "2 d 3 h", "30 s".
pub fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60);
    let mut out = String::new();
    if d > 0 {
        let _ = write!(out, "{d} d");
        if h > 0 {
            let _ = write!(out, " {h} h");
        }
    } else if h > 0 {
        let _ = write!(out, "{h} h");
        if m > 0 {
            let _ = write!(out, " {m} min");
        }
    } else if m > 0 {
        let _ = write!(out, "{m} min");
    } else {
        let _ = write!(out, "{secs} s");
    }
    out
}

/// An ISO time as "18:02" when it is today where it was stamped, else
/// "Dec 6 18:02".
fn stamp(iso: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(iso) else {
        return iso.to_string();
    };
    let today = chrono::Utc::now().with_timezone(t.offset()).date_naive();
    match t.date_naive() == today {
        true => t.format("%H:%M").to_string(),
        false => t.format("%b %-d %H:%M").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_is_one_line() {
        let now = chrono::Utc::now().fixed_offset();
        let last = now.to_rfc3339();
        let m = json!({"entity_id": "light.kitchen", "name": "Kitchen Lights", "changes": 6,
            "durations": {"off": 74880, "on": 11520}, "last_changed": last});
        let want = format!(
            "Kitchen Lights: off 20 h 48 min, on 3 h 12 min, 6 changes, last {}",
            now.format("%H:%M")
        );
        assert_eq!(line(m.as_object().unwrap()).unwrap(), want);
        let m = json!({"entity_id": "sensor.t", "name": "T", "changes": 1, "mean": 12.5,
            "min": 10.0, "max": 20.0, "last": 20.0, "unit": "°C"});
        assert_eq!(
            line(m.as_object().unwrap()).unwrap(),
            "T: mean 12.5 °C, min 10.0, max 20.0, last 20.0, 1 change"
        );
        let m = json!({"statistic_id": "sensor.energy", "name": "Energy", "stat": "change",
            "period": "this_week", "value": 12.25, "unit": "kWh"});
        assert_eq!(
            line(m.as_object().unwrap()).unwrap(),
            "Energy, this week: change 12.25 kWh"
        );
        assert_eq!(span(59), "59 s");
        assert_eq!(span(90061), "1 d 1 h");
    }
}
