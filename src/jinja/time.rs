//! Time in templates, as HA prints and computes it: `now()`, `utcnow()`,
//! timestamps and "5 minutes"-style durations.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, TimeZone};
use minijinja::value::{Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use super::invalid;

/// A timestamp value: `now()` and what the time functions return.
#[derive(Debug)]
pub struct DateTimeValue(pub DateTime<FixedOffset>);

impl Object for DateTimeValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        Some(Value::from(match key.as_str()? {
            "year" => t.year() as i64,
            "month" => t.month() as i64,
            "day" => t.day() as i64,
            "hour" => t.hour() as i64,
            "minute" => t.minute() as i64,
            "second" => t.second() as i64,
            "microsecond" => (t.nanosecond() / 1000) as i64,
            _ => return None,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        use chrono::Datelike;
        match method {
            "timestamp" => Ok(Value::from(self.0.timestamp_micros() as f64 / 1e6)),
            "isoformat" => Ok(Value::from(self.0.to_rfc3339())),
            "weekday" => Ok(Value::from(self.0.weekday().num_days_from_monday())),
            "strftime" => {
                let (fmt,): (&str,) = minijinja::value::from_args(args)?;
                let items: Vec<_> = chrono::format::StrftimeItems::new(fmt).collect();
                if items.contains(&chrono::format::Item::Error) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("strftime: bad format {fmt:?}"),
                    ));
                }
                Ok(Value::from(
                    self.0.format_with_items(items.into_iter()).to_string(),
                ))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Python's str(datetime), which is what HA templates print.
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f%:z"))
    }
}

/// The local time now.
fn now_local() -> DateTime<FixedOffset> {
    Local::now().fixed_offset()
}

/// Reads a time from a `now()` value, an ISO string, or Unix seconds.
fn to_datetime(v: &Value) -> Option<DateTime<FixedOffset>> {
    if let Some(d) = v.downcast_object_ref::<DateTimeValue>() {
        return Some(d.0);
    }
    if let Some(s) = v.as_str() {
        let s = s.trim();
        return DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
            .ok();
    }
    let secs = f64::try_from(v.clone()).ok()?;
    let t = chrono::Utc.timestamp_micros((secs * 1e6) as i64).single()?;
    Some(t.fixed_offset())
}

/// HA's humanised span: `5 minutes`, `2 hours`, with `precision` units.
fn humanize(mut secs: i64, precision: usize) -> String {
    const UNITS: [(&str, i64); 6] = [
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut parts = Vec::new();
    for (name, size) in UNITS {
        if parts.len() == precision.max(1) {
            break;
        }
        let n = secs / size;
        if n > 0 || (size == 1 && parts.is_empty()) {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
            secs -= n * size;
        }
    }
    parts.join(" ")
}

/// Registers `now`, `utcnow`, `as_timestamp`, `relative_time` and `time_since`.
pub(super) fn register(env: &mut Environment<'static>) {
    env.add_function("now", || Value::from_object(DateTimeValue(now_local())));
    env.add_function("utcnow", || {
        Value::from_object(DateTimeValue(chrono::Utc::now().fixed_offset()))
    });

    let as_timestamp = |v: Value, default: Option<Value>| match to_datetime(&v) {
        Some(t) => Ok(Value::from(t.timestamp_micros() as f64 / 1e6)),
        None => default.ok_or_else(|| invalid("as_timestamp", &v)),
    };
    env.add_function("as_timestamp", as_timestamp);
    env.add_filter("as_timestamp", as_timestamp);

    // HA gives the datetime back unchanged when it is in the future.
    let relative_time = |v: Value| match to_datetime(&v) {
        Some(t) if t <= now_local() => Value::from(humanize((now_local() - t).num_seconds(), 1)),
        _ => v,
    };
    env.add_function("relative_time", relative_time);
    env.add_filter("relative_time", relative_time);

    let time_since = |v: Value, precision: Option<usize>| match to_datetime(&v) {
        Some(t) if t <= now_local() => Value::from(humanize(
            (now_local() - t).num_seconds(),
            precision.unwrap_or(1),
        )),
        _ => v,
    };
    env.add_function("time_since", time_since);
    env.add_filter("time_since", time_since);
}

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn humanize_like_ha() {
        assert_eq!(humanize(0, 1), "0 seconds");
        assert_eq!(humanize(61, 1), "1 minute");
        assert_eq!(humanize(7300, 2), "2 hours 1 minute");
        assert_eq!(humanize(86400 * 3, 1), "3 days");
    }
}
