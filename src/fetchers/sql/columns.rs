//! A result row as JSON: one key per column, MySQL types mapped to what a
//! prompt (and a JSON reader) expects.
//!
//! | MySQL | JSON |
//! |---|---|
//! | NULL | `null` |
//! | TINYINT(1) / BOOLEAN | `true` / `false` |
//! | integers, YEAR, BIT | number |
//! | FLOAT, DOUBLE | number |
//! | DECIMAL | number when its digits survive the trip, else the exact text |
//! | DATE, TIME | `"2026-11-30"`, `"07:30:00"` |
//! | DATETIME, TIMESTAMP | `"2026-11-30T07:30:00"` (no zone: the session keeps the server's, as a `mysql` client does) |
//! | JSON (MySQL), and columns named in `json_columns` | the JSON itself |
//! | BINARY, VARBINARY, BLOB, GEOMETRY | text when the bytes are UTF-8 (a `_bin` collation looks binary to a client), else base64 |
//! | everything else (CHAR, TEXT, ENUM, SET) | text |

use base64::Engine as _;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Number, Value};
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::MySqlRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// `row` as an object keyed by column name (a later duplicate name wins, as
/// in MySQL's own JSON functions). `json` names text columns that hold JSON
/// (MariaDB's JSON type reaches clients as LONGTEXT).
pub fn row_json(row: &MySqlRow, json: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let v = cell(row, i, json.iter().any(|j| j == col.name()))
            .map_err(|e| format!("column {}: {e}", col.name()))?;
        out.insert(col.name().to_string(), v);
    }
    Ok(out)
}

fn cell(row: &MySqlRow, i: usize, is_json: bool) -> Result<Value, sqlx::Error> {
    if row.try_get_raw(i)?.is_null() {
        return Ok(Value::Null);
    }
    let ty = row.columns()[i].type_info().name();
    Ok(match ty {
        "NULL" => Value::Null,
        "BOOLEAN" => Value::Bool(row.try_get_unchecked::<i8, _>(i)? != 0),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
            row.try_get_unchecked::<i64, _>(i)?.into()
        }
        "YEAR" | "BIT" => row.try_get_unchecked::<u64, _>(i)?.into(),
        t if t.ends_with(" UNSIGNED") => row.try_get_unchecked::<u64, _>(i)?.into(),
        "FLOAT" => float(f64::from(row.try_get_unchecked::<f32, _>(i)?)),
        "DOUBLE" => float(row.try_get_unchecked::<f64, _>(i)?),
        "DECIMAL" => decimal(row.try_get_unchecked::<&str, _>(i)?),
        "DATE" => row.try_get_unchecked::<NaiveDate, _>(i)?.to_string().into(),
        "DATETIME" | "TIMESTAMP" => row
            .try_get_unchecked::<NaiveDateTime, _>(i)?
            .format("%Y-%m-%dT%H:%M:%S%.f")
            .to_string()
            .into(),
        "TIME" => row.try_get_unchecked::<MySqlTime, _>(i)?.to_string().into(),
        "JSON" => row.try_get_unchecked::<sqlx::types::Json<Value>, _>(i)?.0,
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            // The client sees a `_bin` collation's text (MariaDB's JSON
            // among them) as binary too: UTF-8 bytes are read as text.
            let bytes = row.try_get_unchecked::<&[u8], _>(i)?;
            match std::str::from_utf8(bytes) {
                Ok(s) => text(s, is_json),
                Err(_) => base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            }
        }
        _ => text(row.try_get_unchecked::<&str, _>(i)?, is_json),
    })
}

/// Text, parsed when its column is one of `json_columns` (kept as text if it
/// does not parse).
fn text(s: &str, is_json: bool) -> Value {
    match is_json {
        true => serde_json::from_str(s).unwrap_or_else(|_| s.into()),
        false => s.into(),
    }
}

/// A float as a JSON number; NaN and infinities (which JSON lacks) as null.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// DECIMAL text as a number when printing that number gives back the same
/// value, else as the exact text (more digits than a double holds).
fn decimal(s: &str) -> Value {
    let Ok(f) = s.parse::<f64>() else {
        return s.into();
    };
    let same = |a: &str, b: &str| trim_zeros(a) == trim_zeros(b);
    if f.fract() == 0.0 && f.abs() < 9e15 && same(&format!("{}", f as i64), s) {
        return Value::from(f as i64);
    }
    match Number::from_f64(f) {
        Some(n) if same(&n.to_string(), s) => Value::Number(n),
        _ => s.into(),
    }
}

/// `12.50` and `12.5`, `7.00` and `7` are the same number.
fn trim_zeros(s: &str) -> &str {
    match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.'),
        false => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_stay_exact() {
        assert_eq!(decimal("12.50"), serde_json::json!(12.5));
        assert_eq!(decimal("7.00"), serde_json::json!(7));
        assert_eq!(decimal("-0.10"), serde_json::json!(-0.1));
        assert_eq!(
            decimal("12345678901234567890.12"),
            Value::String("12345678901234567890.12".into())
        );
    }
}
