//! The README's first command: `ha-fetchers demo` starts, prints the API
//! address, the example curl lines and the rendered prompt, serves, and stops
//! cleanly on Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn demo_prints_serves_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ha-fetchers"))
        .args(["demo", "--bind", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !printed
        .iter()
        .any(|l: &String| l.contains("Serving until Ctrl-C"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => printed.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("demo did not get ready; printed: {printed:#?}");
            }
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("a simulated house of 108 entities"), "{text}");
    assert!(
        text.contains("Home status at"),
        "the prompt is printed: {text}"
    );
    assert!(text.contains("Lights:"), "{text}");
    let base = printed
        .iter()
        .find_map(|l| l.strip_prefix("API: "))
        .expect("the API address is printed")
        .to_string();

    // The printed curl lines work.
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let lights: serde_json::Value = http
        .get(format!("{base}/api/v1/states?domain=light&state=on"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(lights
        .as_array()
        .is_some_and(|a| a.iter().all(|s| s["state"] == "on")));
    let r = http
        .post(format!("{base}/api/v1/prompts/home_status/render"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["text"].as_str().unwrap().contains("Home status at"));
    assert_eq!(body["errors"], serde_json::json!([]));

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "ha_events_received_total",
        "ha_events_applied_total",
        "ha_cache_hits_total",
        "ha_cache_misses_total",
        "ha_cache_updates_total",
        "ha_cache_update_fallbacks_total",
        "ha_rest_fallbacks_total",
        "ha_reconnects_total",
        "ha_fetcher_runs_total",
        "ha_fetcher_duration_seconds_bucket",
        "ha_render_duration_seconds_bucket",
        "ha_entities",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "demo exits cleanly on Ctrl-C: {exit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
}
