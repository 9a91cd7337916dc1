//! A real Home Assistant for conformance tests: its REST API, its WebSocket
//! for service calls, and comparing our listing with its `/api/states`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub struct Ha {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A long-lived access token.
    pub token: String,
    /// Reused connections.
    pub http: reqwest::Client,
}

/// The HA `scripts/test.sh` started, from `HA_TEST_URL`/`HA_TEST_TOKEN`.
pub fn real_ha() -> Option<Ha> {
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
    /// The embedded settings on this HA, bound to a free port: what a test
    /// starts our app from before setting what it needs.
    pub fn settings(&self) -> ha_fetchers::Settings {
        let mut s = ha_fetchers::Settings::embedded();
        s.ha_url = Some(self.url.parse().unwrap());
        s.ha_token = Some(secrecy::SecretString::from(self.token.clone()));
        s.bind = "127.0.0.1:0".parse().unwrap();
        s
    }

    pub async fn states(&self) -> BTreeMap<String, Value> {
        listing(
            self.http
                .get(format!("{}/api/states", self.url))
                .bearer_auth(&self.token),
        )
        .await
    }

    pub async fn post_state(&self, id: &str, body: Value) {
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

    pub async fn delete_state(&self, id: &str) {
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
    pub async fn call_services(&self, calls: &[(&str, &str, &str)]) {
        let commands = calls
            .iter()
            .map(|(domain, service, entity)| {
                json!({"type": "call_service", "domain": domain, "service": service,
                       "target": {"entity_id": entity}})
            })
            .collect();
        for v in self.ws(commands).await {
            assert_eq!(v["success"], true, "{v}");
        }
    }

    /// Sends `commands` over one WebSocket of HA's own, one after another,
    /// and returns each `result` message: what HA itself answers.
    pub async fn ws(&self, commands: Vec<Value>) -> Vec<Value> {
        let ws_url = format!("{}/api/websocket", self.url.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let _required = ws.next().await.unwrap().unwrap();
        let auth = json!({"type": "auth", "access_token": self.token}).to_string();
        ws.send(Message::text(auth)).await.unwrap();
        let ok: Value =
            serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(ok["type"], "auth_ok");
        let mut out = Vec::new();
        for (i, mut msg) in commands.into_iter().enumerate() {
            let id = i as u64 + 1;
            msg["id"] = id.into();
            ws.send(Message::text(msg.to_string())).await.unwrap();
            loop {
                let v: Value =
                    serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap())
                        .unwrap();
                if v["id"] == id && v["type"] == "result" {
                    out.push(v);
                    break;
                }
            }
        }
        out
    }
}

fn by_id(v: Vec<Value>) -> BTreeMap<String, Value> {
    v.into_iter()
        .map(|s| (s["entity_id"].as_str().unwrap().to_string(), s))
        .collect()
}

/// Our `/api/v1/states`, by id.
pub async fn ours(port: u16) -> BTreeMap<String, Value> {
    listing(reqwest::Client::new().get(format!("http://127.0.0.1:{port}/api/v1/states"))).await
}

/// A state listing (HA's or ours), by id.
async fn listing(req: reqwest::RequestBuilder) -> BTreeMap<String, Value> {
    let v: Vec<Value> = req.send().await.unwrap().json().await.unwrap();
    by_id(v)
}

/// Waits until our listing equals HA's, comparing at the same moment; the demo's
/// own devices keep changing, so a single comparison could race.
pub async fn assert_mirrors(ha: &Ha, port: u16) -> BTreeMap<String, Value> {
    assert_mirrors_within(ha, port, 100).await
}

/// As [`assert_mirrors`], with `tries` comparisons ~150 ms apart.
pub async fn assert_mirrors_within(ha: &Ha, port: u16, tries: usize) -> BTreeMap<String, Value> {
    let mut last_diff = String::new();
    for _ in 0..tries {
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
