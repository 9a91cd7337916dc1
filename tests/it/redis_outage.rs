//! Redis killed under read load: no panic, no hung request, reads keep
//! answering, and Redis is complete again within 5 s of coming back.
//!
//! Uses a private `redis-server` on a free port, so killing it touches no
//! other test. `OUTAGE_SECS` (default 2) sets how long Redis stays down;
//! RELIABILITY.md records a 30 s run.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ha_fetchers::sim::Sim;
use ha_fetchers::state::RedisStore;

use crate::helpers::{settings, wait_for_async, Harness, TestStore, TOKEN};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(port: u16) -> Child {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/services.sh)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("private redis-server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_under_read_load() {
    let outage = Duration::from_secs(
        std::env::var("OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
    );
    let port = free_port();
    let (mut redis, store, sim, h) = whole_app(port, "outage:").await;

    // Readers hammer the API for the whole outage.
    let stop = tokio_util::sync::CancellationToken::new();
    let ok = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for n in 0..4 {
        let (base, stop, ok, unavailable) = (
            h.base.clone(),
            stop.clone(),
            ok.clone(),
            unavailable.clone(),
        );
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let paths = [
                "/api/v1/states/light.bed_light",
                "/api/v1/states?domain=light",
                "/api/v1/summary",
                "/api/v1/states/switch.ac",
            ];
            while !stop.is_cancelled() {
                let path = paths[n % paths.len()];
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    http.get(format!("{base}{path}")).send(),
                )
                .await
                .expect("no request hangs during a Redis outage")
                .expect("the API answers");
                match r.status().as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    503 => unavailable.fetch_add(1, Ordering::Relaxed),
                    other => panic!("{path}: unexpected {other}"),
                };
            }
        }));
    }

    redis.kill().unwrap();
    redis.wait().unwrap();
    let down = tokio::time::Instant::now();
    let mut flips = 0;
    while down.elapsed() < outage {
        sim.set_many(&[
            ("light.bed_light", if flips % 2 == 0 { "on" } else { "off" }),
            ("switch.ac", "on"),
        ]);
        flips += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = h.get("/api/health/redis").await;
    assert_eq!(code, 503, "health reports Redis down");
    // The reads during the outage saw the newest state (from the index or REST).
    let (code, body) = h.get_json("/api/v1/states/light.bed_light").await;
    assert_eq!(code, 200);
    assert_eq!(
        body["state"],
        sim.state("light.bed_light")
            .map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap()["state"].clone())
            .unwrap()
    );

    let mut redis = start_redis(port);
    let back = tokio::time::Instant::now();
    wait_for_async("Redis complete again", || redis_is_whole(&store, &sim)).await;
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "Redis complete {:?} after it came back",
        back.elapsed()
    );
    stop.cancel();
    for r in readers {
        r.await.unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 0);
    eprintln!(
        "outage {outage:?}: {} reads ok, {} answered 503, Redis complete {:?} after restart",
        ok.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
        back.elapsed()
    );
    let (code, _) = h.get("/api/health/redis").await;
    assert_eq!(code, 200);
    h.finish().await;
    redis.kill().ok();
    redis.wait().ok();
}

/// Redis holds exactly the sim's states, the meta hash and the marker.
async fn redis_is_whole(store: &RedisStore, sim: &Sim) -> bool {
    let mut ids: Vec<String> = store
        .redis_ids()
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    ids.sort();
    if ids != sim.ids() {
        return false;
    }
    for id in &ids {
        if store.redis_state(id).await.ok().flatten() != sim.state(id) {
            return false;
        }
    }
    store.redis_meta().await.is_ok_and(|m| !m.is_empty())
}

/// A private Redis, the app on it (keys under `prefix`), synced and whole.
async fn whole_app(port: u16, prefix: &str) -> (Child, Arc<RedisStore>, Sim, Harness) {
    let redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let store = Arc::new(RedisStore::connect(&url, prefix).await.unwrap());
    let test_store = TestStore {
        shared: store.clone(),
        redis: Some(store.clone()),
        prefix: None,
    };
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let h = Harness::start_with(sim.clone(), settings(&sim), test_store).await;
    h.synced().await;
    wait_for_async("Redis whole at start", || redis_is_whole(&store, &sim)).await;
    (redis, store, sim, h)
}

/// Waits for Redis to be whole again, within 5 s of `since`.
async fn whole_within_5s(store: &RedisStore, sim: &Sim, since: tokio::time::Instant, what: &str) {
    wait_for_async(what, || redis_is_whole(store, sim)).await;
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "{what}: {:?}",
        since.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_redis_restarted_empty_is_rewritten_within_5s() {
    let port = free_port();
    let (mut redis, store, sim, h) = whole_app(port, "idle:").await;
    // Nothing changes in the house from here on.
    redis.kill().unwrap();
    redis.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut redis = start_redis(port);
    let back = tokio::time::Instant::now();
    whole_within_5s(&store, &sim, back, "an empty Redis rewritten").await;
    let (code, health) = h.get_json("/api/health/redis").await;
    assert_eq!(code, 200);
    let r = &health["rewrites"];
    let total = r["after_data_loss"].as_u64().unwrap() + r["after_failed_writes"].as_u64().unwrap();
    assert!(total >= 1, "{health}");
    h.finish().await;
    redis.kill().ok();
    redis.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushdb_is_noticed_and_rewritten_within_5s() {
    let port = free_port();
    let (mut redis, store, sim, h) = whole_app(port, "idle:").await;
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let flushed = tokio::time::Instant::now();
    whole_within_5s(&store, &sim, flushed, "a flushed Redis rewritten").await;
    let (_, health) = h.get_json("/api/health/redis").await;
    assert_eq!(health["rewrites"]["after_data_loss"], 1, "{health}");
    assert!(health["rewrites"]["last_at"].is_number());
    h.finish().await;
    redis.kill().ok();
    redis.wait().ok();
}
