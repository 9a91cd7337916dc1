//! The link to a simulated Home Assistant: rejected auth, a dead (blackholed)
//! link found by the heartbeat.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ha_fetchers::sim::Sim;

use crate::helpers;
use crate::helpers::{both, wait_for, wait_for_async, Harness, Kind, Logs, TestStore, TOKEN};

async fn auth_invalid(kind: Kind) {
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    sim.reject_auth(true);
    let mut settings = helpers::settings(&sim);
    settings.ha_reconnect_max = Duration::from_millis(300);
    let h = Harness::start_with(sim, settings, TestStore::new(kind).await).await;
    let rejected = || h.sim.counters().auth_invalid.load(Ordering::SeqCst);
    wait_for("auth_invalid", || rejected() >= 1).await;
    let hr = &h;
    wait_for_async("last_error in health", || async move {
        let (status, ws) = hr.get_json("/api/health/websocket").await;
        status == 503
            && ws["connected"] == false
            && ws["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("auth_invalid"))
    })
    .await;
    if let Some(r) = h.redis() {
        let meta = r.redis_meta().await.unwrap();
        assert!(meta["last_error"].contains("auth_invalid"), "{meta:?}");
        assert_eq!(meta["connected"], "0");
    }
    // No hot loop: after auth_invalid the session waits the full cap (300 ms) each time.
    let before = rejected();
    tokio::time::sleep(Duration::from_millis(650)).await;
    let attempts = rejected() - before;
    assert!(attempts <= 3, "{attempts} auth attempts in 650 ms");
    assert_eq!(h.sim.counters().get_states.load(Ordering::SeqCst), 0);

    // Once HA accepts the token again, the session recovers on its own.
    h.sim.reject_auth(false);
    h.synced().await;
    let (status, ws) = h.get_json("/api/health/websocket").await;
    assert_eq!(status, 200, "{ws}");
    h.finish().await;
}
both!(auth_invalid, auth_invalid_memory, auth_invalid_redis);

#[tokio::test]
async fn heartbeat_finds_a_blackholed_link() {
    let (logs, _guard) = Logs::capture();
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let mut settings = helpers::settings(&sim);
    settings.ha_heartbeat_interval = Duration::from_millis(200);
    settings.ha_heartbeat_timeout = Duration::from_millis(200);
    let h = Harness::start_with(sim, settings, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    // Answered pings keep the link up.
    let pings = || h.sim.counters().pings.load(Ordering::SeqCst);
    let connections = || h.sim.counters().connections.load(Ordering::SeqCst);
    wait_for("three answered pings", || pings() >= 3).await;
    assert_eq!(connections(), 1);

    h.sim.blackhole();
    wait_for("a reconnect after the blackhole", || connections() >= 2).await;
    wait_for("resynced", || {
        h.sim.counters().get_states.load(Ordering::SeqCst) >= 2
            && h.engine.states().meta().connected
    })
    .await;
    // The link meta keeps why the link dropped; the log says it too.
    let why = h.engine.states().meta().last_error.unwrap_or_default();
    assert!(
        why.contains("no pong within"),
        "the heartbeat, not a socket error, ended the link: {why:?}"
    );
    assert!(logs.text().contains("no pong within"), "logged");
    assert!(h.engine.states().meta().reconnects >= 1);
    h.sim.set("light.bed_light", "off");
    h.wait_state("light.bed_light", "off").await;
    h.finish().await;
}
