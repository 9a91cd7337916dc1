//! Conformance against a real Home Assistant (started by `scripts/ha/start.sh`).
//!
//! Needs `HA_TEST_URL` and `HA_TEST_TOKEN`; `scripts/test.sh` sets them and
//! `HA_CONFORMANCE_REQUIRED=1`, so in CI a missing HA fails instead of skipping.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Ha {
    url: String,
    token: String,
    http: reqwest::Client,
}

fn real_ha() -> Option<Ha> {
    match (std::env::var("HA_TEST_URL"), std::env::var("HA_TEST_TOKEN")) {
        (Ok(url), Ok(token)) if !url.is_empty() && !token.is_empty() => Some(Ha {
            url: url.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }),
        _ => {
            assert!(
                std::env::var("HA_CONFORMANCE_REQUIRED").is_err(),
                "HA_CONFORMANCE_REQUIRED is set but HA_TEST_URL/HA_TEST_TOKEN are not"
            );
            eprintln!("skipped: no real Home Assistant (set HA_TEST_URL and HA_TEST_TOKEN, or run scripts/test.sh)");
            None
        }
    }
}

impl Ha {
    async fn states(&self) -> BTreeMap<String, Value> {
        let v: Vec<Value> = self
            .http
            .get(format!("{}/api/states", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        by_id(v)
    }

    async fn post_state(&self, id: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/api/states/{id}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {id}: {}", r.status());
    }

    async fn delete_state(&self, id: &str) {
        let r = self
            .http
            .delete(format!("{}/api/states/{id}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "DELETE {id}: {}", r.status());
    }

    /// Calls services over HA's own WebSocket, as a person's automation would.
    async fn call_services(&self, calls: &[(&str, &str, &str)]) {
        let ws_url = format!("{}/api/websocket", self.url.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let _required = ws.next().await.unwrap().unwrap();
        let auth = json!({"type": "auth", "access_token": self.token}).to_string();
        ws.send(Message::text(auth)).await.unwrap();
        let ok: Value =
            serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(ok["type"], "auth_ok");
        for (i, (domain, service, entity)) in calls.iter().enumerate() {
            let id = i as u64 + 1;
            let msg = json!({"id": id, "type": "call_service", "domain": domain, "service": service,
                             "target": {"entity_id": entity}});
            ws.send(Message::text(msg.to_string())).await.unwrap();
            loop {
                let v: Value =
                    serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap())
                        .unwrap();
                if v["id"] == id && v["type"] == "result" {
                    assert_eq!(v["success"], true, "{v}");
                    break;
                }
            }
        }
    }
}

fn by_id(v: Vec<Value>) -> BTreeMap<String, Value> {
    v.into_iter()
        .map(|s| (s["entity_id"].as_str().unwrap().to_string(), s))
        .collect()
}

async fn ours(port: u16) -> BTreeMap<String, Value> {
    let v: Vec<Value> = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/states"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    by_id(v)
}

/// Waits until our listing equals HA's, comparing at the same moment; the demo's
/// own devices keep changing, so a single comparison could race.
async fn assert_mirrors(ha: &Ha, port: u16) -> BTreeMap<String, Value> {
    let mut last_diff = String::new();
    for _ in 0..100 {
        let theirs = ha.states().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mine = ours(port).await;
        if mine == theirs {
            return mine;
        }
        let differing: Vec<&String> = theirs
            .keys()
            .chain(mine.keys())
            .filter(|k| theirs.get(*k) != mine.get(*k))
            .collect();
        last_diff = format!("{differing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cache never matched HA's /api/states; differing entities: {last_diff}");
}

#[tokio::test]
async fn mirror_equals_real_home_assistant() {
    let Some(ha) = real_ha() else { return };
    let mut settings = Settings::embedded();
    settings.ha_url = Some(ha.url.parse().unwrap());
    settings.ha_token = Some(SecretString::from(ha.token.clone()));
    let prefix = format!("conformance-{}:", std::process::id());
    if let Ok(redis) = std::env::var("REDIS_TEST_URL") {
        settings.redis_url = Some(SecretString::from(redis));
        settings.redis_prefix = prefix.clone();
    }
    let app = Application::build(settings).await.unwrap();
    let port = app.port();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    // The area registry arrives over the same session; the demo has areas.
    let mut areas = 0;
    for _ in 0..100 {
        let r: Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/v1/render"))
            .json(&json!({"body": "{{ areas() | length }}"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        areas = r["text"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
        if areas > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(areas > 0, "the area registry was mirrored from HA");

    let probe = "sensor.ha_fetchers_conformance_probe";
    let keeper = "sensor.ha_fetchers_conformance_keeper";
    assert_mirrors(&ha, port).await;

    ha.call_services(&[
        ("light", "toggle", "light.bed_light"),
        ("light", "toggle", "light.ceiling_lights"),
        ("switch", "toggle", "switch.decorative_lights"),
    ])
    .await;
    ha.post_state(
        probe,
        json!({"state": "1", "attributes": {"unit_of_measurement": "W", "friendly_name": "Probe"}}),
    )
    .await;
    ha.post_state(
        keeper,
        json!({"state": "kept", "attributes": {"friendly_name": "Keeper"}}),
    )
    .await;
    ha.post_state(
        probe,
        json!({"state": "2", "attributes": {"unit_of_measurement": "W", "friendly_name": "Probe"}}),
    )
    .await;
    let mirrored = assert_mirrors(&ha, port).await;
    assert_eq!(mirrored[probe]["state"], "2");

    ha.delete_state(probe).await;
    let mirrored = assert_mirrors(&ha, port).await;
    assert!(!mirrored.contains_key(probe));
    assert!(mirrored.contains_key(keeper));
    let one: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/states/{keeper}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, mirrored[keeper]);

    ha.delete_state(keeper).await;
    assert_mirrors(&ha, port).await;
    // Put the demo lights back as they were, for the next run.
    ha.call_services(&[
        ("light", "toggle", "light.bed_light"),
        ("light", "toggle", "light.ceiling_lights"),
        ("switch", "toggle", "switch.decorative_lights"),
    ])
    .await;
    stop.cancel();
    server.await.unwrap().unwrap();
}
