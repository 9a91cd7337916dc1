//! The sources of the past against a real Home Assistant whose configuration
//! (scripts/ha/configuration.yaml) loads `recorder:` (SQLite, committing
//! each second), `history:` and `logbook:`: scripted changes at known times
//! give the right counts and durations within a second, imported statistics
//! give HA's own numbers to the last digit, and the logbook names what changed.
//! Runs on both HA versions (scripts/test.sh runs `real_ha` twice).

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use ha_fetchers::engine::Engine;
use ha_fetchers::fetchers::FetchRequest;
use ha_fetchers::Application;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::real::{real_ha, Ha};

/// Our app on the real HA, the in-memory store, the shipped fetchers.
async fn start(ha: &Ha) -> (Engine, CancellationToken) {
    let app = Application::build(ha.settings()).await.unwrap();
    let engine = app.engine().clone();
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    for _ in 0..200 {
        if engine.states().summary().connected && engine.states().cached("sun.sun").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (engine, stop)
}

async fn fetch(engine: &Engine, req: FetchRequest) -> Value {
    let out = engine.run(req).await;
    Value::clone(&out.result.unwrap_or_else(|e| panic!("{}: {e}", out.name)))
}

#[tokio::test]
async fn history_and_logbook_follow_scripted_changes() {
    let Some(ha) = real_ha() else { return };
    let (engine, stop) = start(&ha).await;
    let id = format!("binary_sensor.ha_fetchers_history_{}", std::process::id());
    let post = |state: &'static str| {
        let (ha, id) = (&ha, &id);
        async move {
            ha.post_state(
                id,
                json!({"state": state, "attributes": {"friendly_name": "History Probe"}}),
            )
            .await;
            Instant::now()
        }
    };
    let t0 = post("off").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = post("on").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t2 = post("off").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t3 = post("on").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The recorder commits each second: ask until it has all three changes
    // (a new limit each time, so the cache does not answer).
    let mut last = Value::Null;
    for limit in 1..40 {
        let req = FetchRequest::new("ha_history_today")
            .param("entity_id", id.as_str())
            .param("since", "5m")
            .param("limit", limit);
        let asked = Instant::now();
        last = fetch(&engine, req).await;
        let e = &last["entities"][0];
        if e["changes"] == 3 {
            let d = &e["durations"];
            let secs = |s: &str| d[s].as_u64().unwrap() as f64;
            let on = (t2 - t1).as_secs_f64() + (asked - t3).as_secs_f64();
            let off = (t1 - t0).as_secs_f64() + (t3 - t2).as_secs_f64();
            assert!((secs("on") - on).abs() <= 1.0, "on {on:.2} s: {e}");
            assert!((secs("off") - off).abs() <= 1.0, "off {off:.2} s: {e}");
            assert_eq!(e["name"], "History Probe");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(last["entities"][0]["changes"], 3, "{last}");

    let req = FetchRequest::new("ha_history_today")
        .param("entity_id", id.as_str())
        .param("since", "5m")
        .param("mode", "changes");
    let v = fetch(&engine, req).await;
    let states: Vec<&str> = v["entities"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["on", "off", "on"], "newest first: {v}");

    let req = FetchRequest::new("ha_logbook_recent").param("entity_id", id.as_str());
    let v = fetch(&engine, req).await;
    let lines: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_str().unwrap())
        .collect();
    assert!(lines.len() >= 3, "{v}");
    assert!(lines[0].ends_with("History Probe turned on"), "{lines:?}");
    assert!(lines[1].ends_with("History Probe turned off"), "{lines:?}");
    stop.cancel();
}

#[tokio::test]
async fn imported_statistics_equal_has_own_numbers() {
    let Some(ha) = real_ha() else { return };
    let (engine, stop) = start(&ha).await;
    let pid = std::process::id();
    let energy = format!("ha_fetchers:energy_{pid}");
    let temp = format!("ha_fetchers:temperature_{pid}");
    // Hourly rows over the last 62 days, with figures that do not round evenly.
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    let (mut sums, mut means) = (Vec::new(), Vec::new());
    let mut sum = 0.0;
    for i in (1..=62 * 24).rev() {
        let start = (hour - chrono::Duration::hours(i)).to_rfc3339();
        sum += 0.25 + (i % 7) as f64 * 0.13;
        sums.push(json!({"start": start, "state": sum, "sum": sum}));
        let mean = 10.0 + (i % 24) as f64 * 0.37;
        means.push(json!({"start": start, "mean": mean, "min": mean - 1.21, "max": mean + 2.53}));
    }
    let meta = |id: &str, has_sum: bool, unit: &str| {
        json!({"has_mean": !has_sum, "has_sum": has_sum, "name": null, "source": "ha_fetchers",
               "statistic_id": id, "unit_of_measurement": unit})
    };
    let imported = ha
        .ws(vec![
            json!({"type": "recorder/import_statistics", "metadata": meta(&energy, true, "kWh"), "stats": sums}),
            json!({"type": "recorder/import_statistics", "metadata": meta(&temp, false, "°C"), "stats": means}),
        ])
        .await;
    for r in &imported {
        assert_eq!(r["success"], true, "{r}");
    }
    let theirs = |id: &str, stat: &str, period: &str| {
        let mut body = json!({"type": "recorder/statistic_during_period", "statistic_id": id, "types": [stat]});
        match period {
            "24h" => body["rolling_window"] = json!({"duration": {"seconds": 86400}}),
            "7d" => body["rolling_window"] = json!({"duration": {"seconds": 604800}}),
            p => {
                let (unit, offset) = match p {
                    "today" => ("day", 0),
                    "yesterday" => ("day", -1),
                    "this_week" => ("week", 0),
                    "last_week" => ("week", -1),
                    "this_month" => ("month", 0),
                    _ => ("month", -1),
                };
                body["calendar"] = json!({"period": unit, "offset": offset});
            }
        }
        body
    };
    // The import is queued on the recorder's thread: wait until HA has it.
    for _ in 0..100 {
        let r = ha
            .ws(vec![
                theirs(&energy, "change", "yesterday"),
                theirs(&temp, "mean", "yesterday"),
            ])
            .await;
        if r[0]["result"]["change"].is_number() && r[1]["result"]["mean"].is_number() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let periods = [
        "today",
        "yesterday",
        "this_week",
        "last_week",
        "this_month",
        "last_month",
        "24h",
        "7d",
    ];
    let mut compared = 0;
    for (id, stats, unit) in [
        (&energy, &["change"][..], "kWh"),
        (&temp, &["mean", "min", "max"][..], "°C"),
    ] {
        for stat in stats {
            for period in periods {
                let req = FetchRequest::new("ha_energy_today")
                    .param("statistic_id", id.as_str())
                    .param("stat", *stat)
                    .param("period", period);
                let ours = fetch(&engine, req).await;
                let r = ha.ws(vec![theirs(id, stat, period)]).await;
                let want = &r[0]["result"][*stat];
                assert_eq!(
                    ours["value"].to_string(),
                    want.to_string(),
                    "{id} {stat} {period}: ours {ours}, HA's {r:?}"
                );
                assert_eq!(ours["unit"], unit);
                compared += want.is_number() as usize;
            }
        }
    }
    // Yesterday, last week, last month, 24 h and 7 d hold data at any hour;
    // today, this week and this month hold none in their first hour (HA's
    // zone), where both answers are null.
    assert!(
        compared >= 20,
        "the periods that always hold data: {compared} numbers compared"
    );

    // Buckets: the newest first, HA's hourly rows. Yesterday's, which hold
    // 24 rows at any hour (today's held none from 00:00 to 01:00 in HA's zone:
    // the newest imported row is the last full hour).
    let req = FetchRequest::new("ha_energy_today")
        .param("statistic_id", energy.as_str())
        .param("period", "yesterday")
        .param("buckets", "hour")
        .param("limit", 3);
    let v = fetch(&engine, req).await;
    assert_eq!(v["buckets"].as_array().unwrap().len(), 3, "{v}");
    assert!(
        v["buckets"][0]["start"].as_str().unwrap() > v["buckets"][1]["start"].as_str().unwrap()
    );
    stop.cancel();
}
