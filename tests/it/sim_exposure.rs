//! What Home Assistant exposes to Assist, mirrored over the live link from a
//! simulated HA that applies HA's defaults: read at connect, and a change
//! made in HA arrives with the registry event HA fires.

use std::time::{Duration, Instant};

use crate::helpers::{wait_for, Harness, Kind};

#[tokio::test]
async fn exposure_follows_has_defaults_and_its_changes() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    wait_for("the exposure list", || {
        h.engine.states().exposed_ids().is_some()
    })
    .await;
    let states = h.engine.states();
    // HA's defaults: lights and climate yes, a temperature sensor yes, a
    // battery sensor and the sun no.
    assert!(states.exposed("light.bed_light"));
    assert!(states.exposed("climate.hvac"));
    assert!(states.exposed("sensor.outside_temperature"));
    assert!(!states.exposed("sun.sun"));
    assert!(!states.exposed("light.nowhere"));

    let started = Instant::now();
    h.sim.expose("light.bed_light", false);
    h.sim.expose("sun.sun", true);
    wait_for("the change to arrive", || {
        !states.exposed("light.bed_light") && states.exposed("sun.sun")
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "with the registry event, not the 10 s poll: {:?}",
        started.elapsed()
    );
    h.finish().await;
}
