//! The sources of the past (`history`, `statistics`, `logbook`) over the
//! live link to a simulated Home Assistant: calls multiplexed with the
//! subscription, results cached until a state they cover changes, and the
//! errors a caller sees with the link down or an integration missing.

use std::time::Duration;

use ha_fetchers::fetchers::{FetchError, FetchRequest};
use serde_json::Value;

use crate::helpers::{Harness, Kind};

async fn run(h: &Harness, req: FetchRequest) -> (Result<Value, FetchError>, bool) {
    let out = h.engine.run(req).await;
    (out.result.map(|v| (*v).clone()), out.cached)
}

fn entity<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {v}"))
}

#[tokio::test]
async fn history_counts_changes_and_durations_and_is_cached_until_a_change() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    let id = "light.bed_light";
    for s in ["off", "on", "off"] {
        h.sim.set(id, s);
        h.wait_state(id, s).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let req = || FetchRequest::new("ha_history_today").param("since", "10s");
    let (v, _) = run(&h, req()).await;
    let v = v.unwrap();
    let bed = entity(&v, id);
    assert_eq!(bed["changes"], 3, "{bed}");
    assert_eq!(bed["name"], "Bed Light");
    let d = bed["durations"].as_object().unwrap();
    let total: u64 = d.values().map(|s| s.as_u64().unwrap()).sum();
    // The sim's recorder starts with the house, a few seconds ago.
    assert!((3..=10).contains(&total), "the house's past: {d:?}");
    // Off twice for 1.1 s each; on for the rest of the window.
    let off = d["off"].as_u64().unwrap();
    assert!((2..=3).contains(&off), "off for about 2.2 s: {d:?}");
    assert!(bed["last_changed"].as_str().unwrap().ends_with("+00:00"));

    let (_, cached) = run(&h, req()).await;
    assert!(cached, "a repeat is served from the cache");
    h.sim.set("light.kitchen_lights", "off");
    h.wait_state("light.kitchen_lights", "off").await;
    let (v, cached) = run(&h, req()).await;
    assert!(
        !cached,
        "a light changed: the window that ends now is asked again"
    );
    assert_eq!(entity(&v.unwrap(), "light.kitchen_lights")["changes"], 1);

    // Changes, newest first, capped, with the rest counted.
    let (v, _) = run(
        &h,
        req()
            .param("mode", "changes")
            .param("limit", 2)
            .param("entity_id", id),
    )
    .await;
    let v = v.unwrap();
    let bed = entity(&v, id);
    let states: Vec<&str> = bed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["off", "on"]);
    assert_eq!(bed["more"], 1);
    h.finish().await;
}

#[tokio::test]
async fn logbook_and_statistics_answer_in_lines_and_numbers() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    h.sim.set("light.bed_light", "off");
    h.sim.set("switch.ac", "on");
    h.wait_state("switch.ac", "on").await;
    let (v, _) = run(&h, FetchRequest::new("ha_logbook_recent").param("limit", 1)).await;
    let v = v.unwrap();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{v}");
    assert!(
        events[0]["line"]
            .as_str()
            .unwrap()
            .ends_with(" AC turned on"),
        "{v}"
    );
    // The other: the bed light's change, and Home Assistant's start.
    assert_eq!(v["more"], 2);
    let text = ha_fetchers::fetchers::lean::text(&v);
    assert!(
        text.contains("AC turned on") && !text.contains("entity_id"),
        "{text}"
    );

    h.sim.set("sensor.total_energy_kwh", "100.5");
    h.sim.set("sensor.total_energy_kwh", "101.0");
    h.wait_state("sensor.total_energy_kwh", "101.0").await;
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_energy_today").param("period", "1h"),
    )
    .await;
    let v = v.unwrap();
    assert_eq!(v["unit"], "kWh", "{v}");
    assert!(v["value"].is_number(), "{v}");
    h.finish().await;
}

#[tokio::test]
async fn bad_windows_unknown_entities_and_a_dead_link_are_clear_errors() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_history_today").param("since", "40d"),
    )
    .await;
    let e = v.unwrap_err().to_string();
    assert!(e.contains("HISTORY_MAX_WINDOW allows 31 d"), "{e}");
    // The same id many times over is one entity, not a way past the cap.
    let many = vec!["light.bed_light"; 500];
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_history_today")
            .param("entity_id", serde_json::json!(many))
            .param("since", "1h"),
    )
    .await;
    let v = v.unwrap();
    assert_eq!(v["entities"].as_array().unwrap().len(), 1, "{v}");
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_history_today").param("entity_id", "light.nowhere"),
    )
    .await;
    let e = v.unwrap_err().to_string();
    assert!(e.contains("no entity light.nowhere"), "{e}");
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_energy_today").param("statistic_id", "sensor.nothing"),
    )
    .await;
    let e = v.unwrap_err().to_string();
    assert!(e.contains("keeps no statistic sensor.nothing"), "{e}");

    h.sim.without_recorder(true);
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_logbook_recent").param("since", "5m"),
    )
    .await;
    let e = v.unwrap_err().to_string();
    assert!(
        e.contains("does not know logbook/get_events: enable the `logbook:` integration"),
        "{e}"
    );
    h.sim.without_recorder(false);

    h.sim.stop();
    crate::helpers::wait_for("the link to drop", || {
        !h.engine.states().summary().connected
    })
    .await;
    let (v, _) = run(
        &h,
        FetchRequest::new("ha_logbook_recent").param("since", "5m"),
    )
    .await;
    let e = v.unwrap_err().to_string();
    assert!(e.contains("link to Home Assistant is down"), "{e}");
    h.finish().await;
}

#[tokio::test]
async fn a_flood_of_calls_to_a_silent_ha_is_bounded_and_fails_fast() {
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::TOKEN)
        .await
        .unwrap();
    let mut settings = crate::helpers::settings(&sim);
    settings.ha_heartbeat_interval = Duration::from_millis(300);
    settings.ha_heartbeat_timeout = Duration::from_millis(500);
    let store = crate::helpers::TestStore::new(Kind::Memory).await;
    let h = Harness::start_with(sim, settings, store).await;
    h.synced().await;
    // HA goes silent with the link open: nothing answers, not even pongs.
    h.sim.blackhole();
    let started = std::time::Instant::now();
    // Distinct params, so neither the cache nor a shared run answers any.
    let runs = (1..=200).map(|i| run(&h, FetchRequest::new("ha_logbook_recent").param("limit", i)));
    let outs = futures::future::join_all(runs).await;
    let elapsed = started.elapsed();
    let errors: Vec<String> = outs
        .into_iter()
        .map(|(r, _)| r.unwrap_err().to_string())
        .collect();
    let busy = errors
        .iter()
        .filter(|e| e.contains("too many requests"))
        .count();
    let down = errors
        .iter()
        .filter(|e| e.contains("link to Home Assistant is down"))
        .count();
    // 64 queued and 16 in flight are all the session holds (the queue may
    // fill before the session takes any); the rest are refused at once, and
    // the held ones fail when the heartbeat drops the link.
    let held = ha_fetchers::ha::MAX_IN_FLIGHT + ha_fetchers::ha::MAX_QUEUED;
    assert!(
        (200 - held..=200 - ha_fetchers::ha::MAX_QUEUED).contains(&busy),
        "{busy} busy"
    );
    assert_eq!(busy + down, 200, "none timed out or hung: {errors:?}");
    assert!(
        elapsed < Duration::from_secs(3),
        "failed within the heartbeat, before the 3 s timeout: {elapsed:?}"
    );
    // The link comes back and calls work again.
    crate::helpers::wait_for("the link to come back", || {
        h.engine.states().summary().connected
    })
    .await;
    let (v, _) = run(&h, FetchRequest::new("ha_logbook_recent").param("limit", 1)).await;
    v.unwrap();
    h.finish().await;
}

#[tokio::test]
async fn calls_ha_never_answers_do_not_hold_the_link_shut() {
    // A row with a short timeout, beside the shipped ones.
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fetchers");
    crate::helpers::fixtures::copy_dir(&shipped, dir.path());
    std::fs::write(
        dir.path().join("quick_logbook.toml"),
        "source = \"logbook\"\ntimeout_ms = 200\nttl_seconds = 0\n[params]\nsince = \"1h\"\n",
    )
    .unwrap();
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::TOKEN)
        .await
        .unwrap();
    let mut settings = crate::helpers::settings(&sim);
    settings.fetchers_dir = dir.path().to_path_buf();
    let store = crate::helpers::TestStore::new(Kind::Memory).await;
    let h = Harness::start_with(sim, settings, store).await;
    h.synced().await;
    h.sim.stall_recorder(true);
    let n = ha_fetchers::ha::MAX_IN_FLIGHT * 2;
    let runs = (1..=n).map(|i| run(&h, FetchRequest::new("quick_logbook").param("limit", i)));
    for (r, _) in futures::future::join_all(runs).await {
        assert!(r.unwrap_err().to_string().contains("timed out"));
    }
    // HA answers again; the calls it never answered no longer count.
    h.sim.stall_recorder(false);
    let (v, _) = run(&h, FetchRequest::new("quick_logbook").param("limit", 1)).await;
    v.unwrap();
    assert!(
        h.engine.states().summary().connected,
        "no reconnect was needed"
    );
    h.finish().await;
}
