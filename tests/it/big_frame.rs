//! A 60 MiB frame (real homes send get_states results of 4-23 MB): taken whole
//! when valid, skipped when truncated, and the session carries on. In its own
//! test binary so its memory does not blur the burst test's RSS figure.

use std::sync::atomic::Ordering;

use crate::helpers::{Harness, Kind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_mib_frame_is_taken_and_a_truncated_one_skipped() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    // A valid event whose state carries a 60 MiB attribute (under the 64 MiB default).
    let big = "x".repeat(60 * 1024 * 1024);
    let mut attrs = serde_json::Map::new();
    attrs.insert("blob".into(), serde_json::Value::String(big));
    h.sim.set_with("sensor.huge", "big", Some(&attrs));
    h.wait_state("sensor.huge", "big").await;
    assert!(h.cached("sensor.huge").unwrap().raw.len() > 60 * 1024 * 1024);
    // The same size, cut short: skipped, and the session carries on.
    let event = h.sim.state("sensor.huge").unwrap();
    h.sim.send_raw(&format!(
        "{{\"type\":\"event\",\"event\":{}",
        &event[..event.len() / 2]
    ));
    h.sim.set("light.bed_light", "off");
    h.wait_state("light.bed_light", "off").await;
    assert_eq!(
        h.sim.counters().connections.load(Ordering::SeqCst),
        1,
        "no reconnect was needed"
    );
    h.finish().await;
}
