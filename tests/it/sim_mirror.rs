//! The mirror against a simulated Home Assistant: snapshot, events, coalesced
//! frames, removal, resync, the snapshot gap, ordering, malformed frames, and
//! the recorded sessions replayed. Each runs on the memory and the Redis store.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ha_fetchers::sim::{House, Sim};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::helpers;
use crate::helpers::{both, wait_for, Harness, Kind, TestStore, TOKEN};

async fn snapshot_plus_events(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    // The listing is HA's bytes, in the same order as the sim's (sorted by id).
    let (status, body) = h.get("/api/v1/states").await;
    assert_eq!(status, 200);
    assert_eq!(body, h.sim.states_json());

    h.sim.set("light.bed_light", "off");
    let attrs = serde_json::json!({"unit_of_measurement": "°C", "trend": "up"});
    h.sim
        .set_with("sensor.outside_temperature", "16.1", attrs.as_object());
    h.wait_state("light.bed_light", "off").await;
    h.wait_state("sensor.outside_temperature", "16.1").await;
    let (status, one) = h.get("/api/v1/states/sensor.outside_temperature").await;
    assert_eq!(status, 200);
    assert_eq!(Some(one), h.sim.state("sensor.outside_temperature"));
    // Steady state needs no REST.
    assert_eq!(h.sim.rest_calls(), 0);

    let (_, ws) = h.get_json("/api/health/websocket").await;
    assert_eq!(ws["connected"], true);
    assert_eq!(ws["fresh"], true);
    assert_eq!(ws["ha_version"], "2025.4.4");
    h.assert_redis_matches_sim().await;
    if let Some(r) = h.redis() {
        let meta = r.redis_meta().await.unwrap();
        assert_eq!(meta["connected"], "1");
        assert_eq!(meta["ha_version"], "2025.4.4");
        assert_eq!(meta["entity_count"], h.sim.ids().len().to_string());
        assert!(!meta["last_resync_at"].is_empty());
    }
    h.finish().await;
}
both!(
    snapshot_plus_events,
    snapshot_plus_events_memory,
    snapshot_plus_events_redis
);

async fn coalesced_arrays(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    h.sim.set_many(&[
        ("light.bed_light", "off"),
        ("light.kitchen_lights", "off"),
        ("switch.ac", "on"),
        ("light.bed_light", "on"),
    ]);
    h.wait_state("switch.ac", "on").await;
    assert_eq!(
        h.cached_state("light.kitchen_lights").as_deref(),
        Some("off")
    );
    // The last change in the array wins.
    assert_eq!(h.cached_state("light.bed_light").as_deref(), Some("on"));
    assert_eq!(
        h.cached("light.bed_light").map(|s| s.raw.to_string()),
        h.sim.state("light.bed_light")
    );
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(
    coalesced_arrays,
    coalesced_arrays_memory,
    coalesced_arrays_redis
);

async fn removal_and_addition(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    assert!(h.sim.remove("light.bed_light"));
    h.sim.set("sensor.new_probe", "1");
    h.wait_state("sensor.new_probe", "1").await;
    assert!(!h.known("light.bed_light"));
    let (_, lights) = h.get_json("/api/v1/states?domain=light").await;
    assert!(lights
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["entity_id"] != "light.bed_light"));
    // HA no longer has it either: a 404 to our caller.
    let (status, _) = h.get("/api/v1/states/light.bed_light").await;
    assert_eq!(status, 404);
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(removal_and_addition, removal_memory, removal_redis);

async fn reconnect_resync_drops_vanished(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    // While we are away: one entity deleted, one changed, one added, no events.
    let mut away = House::from_json(&h.sim.states_json()).unwrap();
    away.remove("switch.ac");
    away.set("light.bed_light", "off", None);
    away.set("sensor.added_while_away", "5", None);
    h.sim.replace_house(away);
    h.sim.drop_connections();
    wait_for("the resync", || {
        !h.known("switch.ac")
            && h.cached_state("light.bed_light").as_deref() == Some("off")
            && h.known("sensor.added_while_away")
    })
    .await;
    h.writer.flush().await;
    assert_eq!(h.sim.counters().get_states.load(Ordering::SeqCst), 2);
    wait_for("connected again", || h.engine.states().meta().connected).await;
    assert!(h.engine.states().meta().reconnects >= 1);
    let (_, body) = h.get("/api/v1/states").await;
    assert_eq!(body, h.sim.states_json());
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(reconnect_resync_drops_vanished, resync_memory, resync_redis);

async fn event_during_snapshot(kind: Kind) {
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    sim.hold_snapshot(true);
    let settings = helpers::settings(&sim);
    let h = Harness::start_with(sim, settings, TestStore::new(kind).await).await;
    wait_for("get_states", || {
        h.sim.counters().get_states.load(Ordering::SeqCst) == 1
    })
    .await;
    // The snapshot was taken; these happen before it reaches us.
    h.sim.set("light.bed_light", "off");
    h.sim.remove("switch.decorative_lights");
    h.sim.set("sensor.born_during_snapshot", "1");
    h.writer.flush().await;
    assert_eq!(
        h.engine.states().summary().entity_count,
        0,
        "events are buffered"
    );
    h.sim.hold_snapshot(false);
    wait_for("snapshot plus buffered events", || {
        h.cached_state("sensor.born_during_snapshot").as_deref() == Some("1")
            && h.cached_state("light.bed_light").as_deref() == Some("off")
            && !h.known("switch.decorative_lights")
    })
    .await;
    let (_, body) = h.get("/api/v1/states").await;
    assert_eq!(body, h.sim.states_json());
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(
    event_during_snapshot,
    snapshot_gap_memory,
    snapshot_gap_redis
);

async fn out_of_order_older_event(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    h.sim.set("light.bed_light", "off");
    h.wait_state("light.bed_light", "off").await;
    assert!(h
        .sim
        .send_older("light.bed_light", "on", Duration::from_secs(5)));
    // A later change elsewhere proves the older event was read.
    h.sim.set("switch.ac", "on");
    h.wait_state("switch.ac", "on").await;
    assert_eq!(h.cached_state("light.bed_light").as_deref(), Some("off"));
    assert!(h.writer.stats.stale.load(Ordering::Relaxed) >= 1);
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(
    out_of_order_older_event,
    older_event_memory,
    older_event_redis
);

async fn a_state_from_the_future_is_refused(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    h.sim.set("light.bed_light", "off");
    h.wait_state("light.bed_light", "off").await;
    assert!(h
        .sim
        .send_future("light.bed_light", "on", Duration::from_secs(3600)));
    h.sim.set("switch.ac", "on");
    h.wait_state("switch.ac", "on").await;
    assert_eq!(
        h.cached_state("light.bed_light").as_deref(),
        Some("off"),
        "an hour ahead is refused"
    );
    // Nothing is pinned: the next real change applies.
    h.sim.set("light.bed_light", "on");
    h.wait_state("light.bed_light", "on").await;
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(
    a_state_from_the_future_is_refused,
    future_event_memory,
    future_event_redis
);

async fn a_snapshot_is_the_truth_against_a_newer_cached_state(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    // A state stamped a day ahead reached the cache (an older build, a bad
    // answer): under "newest wins" it would hide every change from now on.
    let mut v: serde_json::Value =
        serde_json::from_str(&h.sim.state("switch.ac").unwrap()).unwrap();
    let ahead = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    v["state"] = "pinned".into();
    v["last_updated"] = ahead.clone().into();
    v["last_changed"] = ahead.into();
    let pinned = ha_fetchers::state::EntityState::from_raw(&v.to_string()).unwrap();
    h.engine
        .states()
        .store()
        .upsert(vec![pinned])
        .await
        .unwrap();
    assert_eq!(h.cached_state("switch.ac").as_deref(), Some("pinned"));
    h.sim.drop_connections();
    h.wait_state("switch.ac", "off").await;
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(
    a_snapshot_is_the_truth_against_a_newer_cached_state,
    snapshot_truth_memory,
    snapshot_truth_redis
);

async fn malformed_frames(kind: Kind) {
    let h = Harness::start(kind).await;
    h.synced().await;
    for bad in [
        "{not json",
        r#"{"type":"event","event":{"event_type":"state_ch"#,
        "42",
        "",
        "[1,2,3]",
        r#"{"type":"event"}"#,
        r#"{"type":"mystery","id":99}"#,
        r#"{"type":"event","event":{"event_type":"state_changed","data":{}}}"#,
        r#"{"type":"event","event":{"event_type":"state_changed","data":{"entity_id":"light.bed_light","new_state":{"entity_id":"light.other","state":"on"}}}}"#,
        r#"{"type":"event","event":{"event_type":"state_changed","data":{"entity_id":"light.bed_light","new_state":{"entity_id":"light.bed_light","state":"off","last_updated":"yesterday"}}}}"#,
        r#"[{"nope":1},{"type":"event","event":{"event_type":"state_changed","data":{"entity_id":"light.bed_light","new_state":{"entity_id":"light.bed_light","state":"off","last_updated":"yesterday"}}}}]"#,
    ] {
        h.sim.send_raw(bad);
    }
    h.sim.set("light.bed_light", "off");
    h.wait_state("light.bed_light", "off").await;
    assert_eq!(h.sim.counters().connections.load(Ordering::SeqCst), 1);
    assert!(h.engine.states().meta().connected);
    h.assert_redis_matches_sim().await;
    h.finish().await;
}
both!(malformed_frames, malformed_memory, malformed_redis);

/// One line of a recorded session.
#[derive(Deserialize)]
struct Recorded {
    /// `in` (from HA) or `out` (from the client).
    dir: String,
    /// The frame as recorded.
    msg: Box<RawValue>,
}

/// Replays what HA sent in a recorded session after the first snapshot and
/// checks each recorded change landed, for both recorded HA versions.
async fn replay(version: &str) {
    let sim = Sim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        helpers::fixtures::house(version),
        TOKEN,
    )
    .unwrap();
    let settings = helpers::settings(&sim);
    let h = Harness::start_with(sim, settings, TestStore::new(Kind::Memory).await).await;
    h.synced().await;

    let mut expect: Vec<(String, Option<String>)> = Vec::new();
    let log = helpers::fixtures::fixture(version, "ws-session.jsonl");
    let frames: Vec<Recorded> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let after_snapshot = frames
        .iter()
        .position(|f| f.dir == "in" && f.msg.get().contains("\"result\": [{"))
        .expect("a recorded get_states result")
        + 1;
    for f in &frames[after_snapshot..] {
        let text = f.msg.get();
        if f.dir != "in" || text.contains("\"auth_") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let msgs = match v {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        };
        for m in msgs {
            if m["event"]["event_type"] == "state_changed" {
                let id = m["event"]["data"]["entity_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let st = m["event"]["data"]["new_state"]["state"]
                    .as_str()
                    .map(str::to_string);
                expect.retain(|(i, _)| *i != id);
                expect.push((id, st));
            }
        }
        h.sim.send_raw(text);
    }
    assert!(expect.len() >= 3, "the recording has state changes");
    wait_for("the recorded changes", || {
        expect
            .iter()
            .all(|(id, st)| h.cached_state(id) == *st && (st.is_some() || !h.known(id)))
    })
    .await;
    assert_eq!(h.sim.counters().connections.load(Ordering::SeqCst), 1);
    h.finish().await;
}

#[tokio::test]
async fn replay_recorded_session_2025_4_4() {
    replay("2025.4.4").await
}

#[tokio::test]
async fn replay_recorded_session_2024_3_3() {
    replay("2024.3.3").await
}

async fn a_reconcile_repairs_what_no_event_said(kind: Kind) {
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let mut s = helpers::settings(&sim);
    s.reconcile_interval = Duration::from_millis(300);
    let h = Harness::start_with(sim, s, TestStore::new(kind).await).await;
    h.synced().await;
    let before = h.cached_state("switch.ac").unwrap();
    let missed = if before == "on" { "off" } else { "on" };
    h.sim.set_silently("switch.ac", missed);
    h.wait_state("switch.ac", missed).await;
    h.assert_redis_matches_sim().await;
    let (_, health) = h.get_json("/api/health/websocket").await;
    let r = &health["reconcile"];
    assert!(r["runs"].as_u64().unwrap() >= 1, "{health}");
    assert!(r["last_at"].is_number(), "{health}");
    assert!(r["repairs"]["state"].as_u64().unwrap() >= 1, "{health}");
    h.finish().await;
}
both!(
    a_reconcile_repairs_what_no_event_said,
    reconcile_memory,
    reconcile_redis
);

async fn an_event_during_a_reconcile_is_not_undone(kind: Kind) {
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let mut s = helpers::settings(&sim);
    s.reconcile_interval = Duration::from_millis(200);
    let h = Harness::start_with(sim, s, TestStore::new(kind).await).await;
    h.synced().await;
    let before = h.cached_state("light.bed_light").unwrap();
    let after = if before == "on" { "off" } else { "on" };
    // The next reconcile's snapshot is taken when it is asked for, and held.
    h.sim.hold_snapshot(true);
    let asked = h.sim.counters().get_states.load(Ordering::SeqCst);
    wait_for("a reconcile to be asked for", || {
        h.sim.counters().get_states.load(Ordering::SeqCst) > asked
    })
    .await;
    // One is asked for at a time: any before it has been answered; let it land.
    h.writer.flush().await;
    let runs = || h.engine.states().reconciled().map_or(0, |r| r.runs);
    let done = runs();
    h.sim.set("light.bed_light", after);
    h.writer.flush().await;
    assert_eq!(h.cached_state("light.bed_light"), Some(before), "held back");
    h.sim.hold_snapshot(false);
    wait_for("the held reconcile applied", || runs() > done).await;
    h.writer.flush().await;
    assert_eq!(
        h.cached_state("light.bed_light").as_deref(),
        Some(after),
        "the event came after the reconcile's snapshot, so it stands"
    );
    h.finish().await;
}
both!(
    an_event_during_a_reconcile_is_not_undone,
    reconcile_event_memory,
    reconcile_event_redis
);
