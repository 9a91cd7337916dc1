//! `GET /api/v1/events` against the real application and a simulated Home
//! Assistant: what each event carries, filters, resumes, resyncs, reloads, a
//! stalled client, the heartbeat, and shutdown with streams open.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::helpers::api::{empty_app, request};
use crate::helpers::{settings, wait_for, Harness, Kind, TestStore};

/// How long one event may take to arrive.
const ARRIVE: Duration = Duration::from_secs(10);

/// One parsed event.
#[derive(Debug)]
struct Ev {
    id: Option<String>,
    name: String,
    data: Value,
}

/// An open stream.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(h: &Harness, query: &str, last_id: Option<&str>) -> Self {
        let mut req = h.http.get(format!("{}/api/v1/events{query}", h.base));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, skipping comments and the `retry:` hint.
    async fn next(&mut self) -> Ev {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut name, mut data) = (None, None, None);
                for l in frame.lines() {
                    if let Some(v) = l.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = l.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = l.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return Ev { id, name, data };
                }
                continue;
            }
            let chunk = tokio::time::timeout(ARRIVE, self.resp.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event named `name`.
    async fn next_named(&mut self, name: &str) -> Ev {
        loop {
            let e = self.next().await;
            if e.name == name {
                return e;
            }
        }
    }
}

#[tokio::test]
async fn state_events_carry_old_and_new_and_filters_choose() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    let old = h.cached_state("light.bed_light").unwrap();
    let mut all = Sse::open(&h, "?full=1", None).await;
    let mut lights = Sse::open(&h, "?domain=light", None).await;
    let mut switches = Sse::open(&h, "?entity_id=switch.*&domain=light&domain=switch", None).await;
    let new = if old == "on" { "off" } else { "on" };
    h.sim.set("switch.ac", "on");
    h.sim.set("light.bed_light", new);

    let e = all.next_named("state").await;
    assert_eq!(e.data["entity_id"], "switch.ac");
    let e = all.next_named("state").await;
    assert_eq!(e.data["entity_id"], "light.bed_light");
    assert_eq!(e.data["old_state"], old.as_str());
    assert_eq!(e.data["new_state"], new);
    assert!(e.data["last_changed"].is_string() && e.data["last_updated"].is_string());
    assert_eq!(e.data["new"]["state"], new, "full=1 carries the object");
    assert_eq!(e.data["new"]["attributes"]["friendly_name"], "Bed Light");
    assert!(e.id.is_some(), "every event has an id");

    let e = lights.next_named("state").await;
    assert_eq!(
        e.data["entity_id"], "light.bed_light",
        "domain=light skips the switch"
    );
    assert!(e.data.get("new").is_none(), "no object without full=1");
    let e = switches.next_named("state").await;
    assert_eq!(
        e.data["entity_id"], "switch.ac",
        "the glob and the domains both hold"
    );

    assert!(h.sim.remove("switch.ac"));
    let e = all.next_named("removed").await;
    assert_eq!(e.data["entity_id"], "switch.ac");
    h.finish().await;
}

#[tokio::test]
async fn a_resume_replays_what_was_missed_and_a_stale_id_gets_resync() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    let mut s = Sse::open(&h, "", None).await;
    h.sim.set("switch.ac", "on");
    let first = s.next_named("state").await.id.unwrap();
    drop(s);
    for st in ["off", "on", "off"] {
        h.sim.set("switch.ac", st);
        h.wait_state("switch.ac", st).await;
    }
    let mut resumed = Sse::open(&h, "", Some(&first)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = resumed.next().await;
        assert_eq!(e.name, "state", "{e:?}");
        assert!(e.id.as_deref().unwrap() > first.as_str());
        seen.push(e.data["new_state"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["off", "on", "off"], "the missed events, in order");

    for stale in ["1", "not-a-number"] {
        let mut s = Sse::open(&h, "", Some(stale)).await;
        let e = s.next().await;
        assert_eq!(e.name, "resync");
        assert_eq!(e.data["reason"], "expired");
    }
    h.finish().await;
}

#[tokio::test]
async fn a_reconnect_to_home_assistant_announces_a_resync() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    let mut s = Sse::open(&h, "", None).await;
    h.sim.drop_connections();
    let e = s.next_named("resync").await;
    assert_eq!(e.data["reason"], "snapshot");
    // The status view samples once a second: the first snapshot and this one.
    crate::helpers::wait_for_async("two resyncs in the status", || async {
        let (_, status) = h.get_json("/api/v1/status").await;
        status["resyncs"].as_array().unwrap().len() >= 2
    })
    .await;
    h.finish().await;
}

#[tokio::test]
async fn a_fetcher_reload_is_announced_with_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fetchers");
    crate::helpers::fixtures::copy_dir(&shipped, dir.path());
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::TOKEN)
        .await
        .unwrap();
    let mut s = settings(&sim);
    s.fetchers_dir = dir.path().to_path_buf();
    s.reload_interval = Duration::from_millis(100);
    let h = Harness::start_with(sim, s, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    let mut sse = Sse::open(&h, "", None).await;
    std::fs::write(
        dir.path().join("broken_one.toml"),
        "name = \"broken_one\"\nsource = \"no_such_source\"\n",
    )
    .unwrap();
    let e = sse.next_named("reload").await;
    let problems = e.data["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["name"] == "broken_one"),
        "{}",
        e.data
    );
    assert!(e.data["fetchers"].as_u64().unwrap() > 0);
    h.finish().await;
}

#[tokio::test]
async fn a_stalled_client_is_resynced_and_never_holds_up_the_others() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    // A client that reads nothing. (Its window stays at the default size: a
    // tiny one would make the final catch-up crawl.)
    let addr = h.base.trim_start_matches("http://");
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /api/v1/events?full=1 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut reader = Sse::open(&h, "?entity_id=sensor.power_consumption", None).await;
    wait_for("both subscribed", || {
        h.engine.stream().stats().subscribers == 2
    })
    .await;

    // Far more than the socket buffers and the client's queue hold. The
    // writer keeps one state per entity per batch, so every round changes
    // every entity once and waits for it to land.
    let ids = h.sim.ids();
    let rounds = 400;
    let want = format!("v{}", rounds - 1);
    let reading = tokio::spawn(async move {
        loop {
            let e = reader.next().await;
            if e.name != "state" {
                return Err(e);
            }
            if e.data["new_state"] == want.as_str() {
                return Ok(());
            }
        }
    });
    for r in 0..rounds {
        let v = format!("v{r}");
        let changes: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), v.as_str())).collect();
        h.sim.set_many(&changes);
        h.wait_state("sensor.power_consumption", &v).await;
    }
    if let Err(e) = reading.await.unwrap() {
        panic!("the reading client was held up: {e:?}");
    }
    // Once it reads again, it is told to re-read and continues from now.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + 3 * ARRIVE;
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 1 << 16];
    while !String::from_utf8_lossy(&got).contains("\"reason\":\"overflow\"") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resync reached the stalled client"
        );
        let n = match tokio::time::timeout(ARRIVE, stalled.read(&mut buf)).await {
            Ok(r) => r.unwrap(),
            Err(_) => panic!(
                "the stalled client got nothing more after {} bytes: …{}",
                got.len(),
                String::from_utf8_lossy(&got[got.len().saturating_sub(600)..])
            ),
        };
        assert!(n > 0, "the stream stays open");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(h.engine.stream().stats().overflows, 1, "counted");
    h.finish().await;
}

#[tokio::test]
async fn open_streams_end_at_shutdown() {
    let h = Harness::start(Kind::Memory).await;
    h.synced().await;
    let mut s = Sse::open(&h, "", None).await;
    let stop = std::time::Instant::now();
    h.finish().await;
    loop {
        match tokio::time::timeout(ARRIVE, s.resp.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(_) => break,
            Err(_) => panic!("the stream outlived the shutdown"),
        }
    }
    assert!(
        stop.elapsed() < Duration::from_secs(5),
        "{:?}",
        stop.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn the_stream_starts_with_a_retry_hint_and_pings_when_idle() {
    let app = empty_app(None);
    let resp = tower::ServiceExt::oneshot(app, request(Method::GET, "/api/v1/events", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"retry: 2000\n\n");
    let started = tokio::time::Instant::now();
    let ping = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&ping[..], b": ping\n\n");
    assert_eq!(started.elapsed(), ha_fetchers::api::HEARTBEAT);
}

#[tokio::test]
async fn bad_filters_are_refused_by_name() {
    let app = empty_app(None);
    for (q, says) in [
        ("domain=Light", "domain"),
        ("entity_id=", "entity_id"),
        ("full=yes", "full"),
        ("token=abc", "unknown query parameter"),
    ] {
        let (status, body) = crate::helpers::api::send_json(
            &app,
            request(Method::GET, &format!("/api/v1/events?{q}"), None),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        let m = body["error"]["message"].as_str().unwrap();
        assert!(m.contains(says), "{q}: {m}");
    }
}

#[tokio::test]
async fn streams_past_half_the_connections_are_refused() {
    use ha_fetchers::api::{router, AppState};
    use ha_fetchers::fetchers::{Registry, Runner};
    use ha_fetchers::state::{MemoryStore, StateManager};
    let engine = Runner::new(
        Registry::from_rows(Vec::new()),
        StateManager::new(std::sync::Arc::new(MemoryStore::new()), None),
    );
    let mut state = AppState::new(ha_fetchers::engine::Engine::over(engine));
    state.limits.max_connections = 4;
    let app = router(state);
    let get =
        || tower::ServiceExt::oneshot(app.clone(), request(Method::GET, "/api/v1/events", None));
    let first = get().await.unwrap();
    let second = get().await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = get().await.unwrap();
    assert_eq!(
        third.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "two of four connections are streams"
    );
    drop(first);
    assert_eq!(
        get().await.unwrap().status(),
        StatusCode::OK,
        "a closed stream frees its place"
    );
}
