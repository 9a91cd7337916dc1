//! A real Home Assistant restarted under a steady event load.
//!
//! Runs its own HA (port 8124, its own config directory) through the
//! project's `scripts/ha/` scripts, so the conformance test's HA on 8123 is
//! not disturbed. Opt-in with `HA_RESTARTS=N`; `scripts/test.sh` sets 10.
//! `HA_RESTARTS_PORT` and `HA_RESTARTS_CONFIG` move it, and `HA_VENV` picks
//! the Home Assistant installed there (test.sh runs it on 2024.3.3 too).
//! States created through HA's REST API are not restored by a restart, so
//! each round's probe entity must vanish from the cache too.
//!
//! This HA serves TLS itself (`http: ssl_certificate`, a CA made by the run),
//! so the restarts are wss:// reconnects; before them, a trust of another CA
//! is refused with the reason in `last_error`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::real::{assert_mirrors_within, ours, Ha};
use crate::helpers::serial;
use crate::helpers::services::redis_url;
use crate::helpers::tls::{pki, Pki};

/// The port of this test's own HA, unless `HA_RESTARTS_PORT` says otherwise.
const PORT: u16 = 8124;

fn port() -> String {
    std::env::var("HA_RESTARTS_PORT").unwrap_or_else(|_| PORT.to_string())
}
/// One load event every this often while HA is up (50/s).
const LOAD_EVERY: Duration = Duration::from_millis(20);
/// How long HA plus our reconnect may take after a restart.
const RECONNECT_LIMIT: Duration = Duration::from_secs(180);
/// Comparisons ~150 ms apart after a restart: HA's demo entities come up over seconds.
const MIRROR_TRIES: usize = 400;

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ha")
}

fn config_dir() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    std::env::var("HA_RESTARTS_CONFIG")
        .unwrap_or_else(|_| format!("{home}/.cache/ha-fetchers/ha-restarts"))
}

/// Starts (or finds) this test's HA, serving TLS with `pki`'s certificate,
/// and returns it with its token.
fn start_ha(pki: &Pki) -> Ha {
    let out = Command::new(scripts().join("start.sh"))
        .args([config_dir(), port()])
        .env("HA_TLS_CERT", &pki.cert)
        .env("HA_TLS_KEY", &pki.key)
        .env("HA_TLS_CA", &pki.ca)
        .output()
        .expect("scripts/ha/start.sh runs");
    assert!(
        out.status.success(),
        "start.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("start.sh printed no {k}"))
    };
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    Ha {
        url: get("HA_URL="),
        token: get("HA_TOKEN="),
        http: reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap(),
    }
}

fn stop_ha() {
    let ok = Command::new(scripts().join("stop.sh"))
        .arg(config_dir())
        .status()
        .expect("scripts/ha/stop.sh runs")
        .success();
    assert!(ok, "stop.sh failed");
}

/// HA's own TLS, trusted through another CA: refused, and health says why.
async fn refused_with_another_ca(settings: &Settings, pki: &Pki) {
    let mut s = settings.clone();
    s.ha_ca_file = Some(pki.wrong_ca.clone());
    let app = Application::build(s).await.unwrap();
    let engine = app.engine().clone();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let why = "certificate verify failed: unknown issuer";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !engine
        .states()
        .meta()
        .last_error
        .is_some_and(|e| e.contains(why))
    {
        assert!(
            Instant::now() < deadline,
            "no '{why}': {:?}",
            engine.states().meta().last_error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!engine.states().meta().connected);
    drop(engine);
    stop.cancel();
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_ha_restarted_under_event_load() {
    let Some(rounds) = std::env::var("HA_RESTARTS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    else {
        eprintln!("skipped: set HA_RESTARTS=N (scripts/test.sh sets 10)");
        return;
    };
    let _alone = serial::alone().await;
    let pki = pki();
    let ha = Arc::new(start_ha(&pki));
    assert!(ha.url.starts_with("https://"), "{}", ha.url);
    let mut settings = Settings::embedded();
    settings.ha_url = Some(ha.url.parse().unwrap());
    settings.ha_token = Some(SecretString::from(ha.token.clone()));
    refused_with_another_ca(&settings, &pki).await;
    settings.ha_ca_file = Some(pki.ca.clone());
    settings.ha_reconnect_max = Duration::from_secs(2);
    settings.redis_url = Some(SecretString::from(redis_url()));
    settings.redis_prefix = format!("restarts-{}-{}:", std::process::id(), rand::random::<u32>());
    let app = Application::build(settings).await.unwrap();
    let port = app.port();
    let engine = app.engine().clone();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    assert_mirrors_within(&ha, port, MIRROR_TRIES).await;

    // The load: one sensor changing every 20 ms, errors ignored while HA is down.
    let paused = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let load = {
        let (ha, paused, posted, stop) = (ha.clone(), paused.clone(), posted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                tokio::time::sleep(LOAD_EVERY).await;
                if paused.load(Ordering::SeqCst) {
                    continue;
                }
                n += 1;
                let r = ha
                    .http
                    .post(format!("{}/api/states/sensor.ha_fetchers_load", ha.url))
                    .bearer_auth(&ha.token)
                    .json(&json!({"state": n.to_string(), "attributes": {"unit_of_measurement": "W"}}))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    posted.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    let started = Instant::now();
    for round in 0..rounds {
        let probe = format!("sensor.ha_fetchers_restart_{round}");
        ha.post_state(&probe, json!({"state": "here"})).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ours(port).await.contains_key(&probe) {
            assert!(Instant::now() < deadline, "{probe} never reached the cache");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before = engine.states().meta().reconnects;

        let t = Instant::now();
        stop_ha();
        start_ha(&pki);
        let deadline = Instant::now() + RECONNECT_LIMIT;
        loop {
            let m = engine.states().meta();
            if m.connected && m.reconnects > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no reconnect after restart {}",
                round + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Compare at a still moment: pause the load, let the last event land.
        paused.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mirrored = assert_mirrors_within(&ha, port, MIRROR_TRIES).await;
        paused.store(false, Ordering::SeqCst);
        assert!(
            !mirrored.contains_key(&probe),
            "{probe} outlived the restart in the cache"
        );
        eprintln!(
            "restart {}: reconnected and equal to HA's /api/states ({} entities) {:.1} s after stopping HA",
            round + 1,
            mirrored.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let meta = engine.states().meta();
    eprintln!(
        "real HA restarted {rounds} times in {:.0} s: reconnects {}, load events accepted by HA {}, cache == HA after every restart",
        started.elapsed().as_secs_f64(),
        meta.reconnects,
        posted.load(Ordering::SeqCst)
    );
    assert!(meta.reconnects >= u64::from(rounds));
    // The writer drains once every handle to the pipe is gone.
    drop(engine);
    stop.cancel();
    load.await.unwrap();
    server.await.unwrap().unwrap();
    stop_ha();
}
