//! The simulated Home Assistant itself speaks HA's protocol: checked with a
//! bare WebSocket client and plain HTTP, without our session code.

use futures::{SinkExt, StreamExt};
use ha_fetchers::sim::Sim;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Message::Close(_) => return Value::Null,
            _ => {}
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn connect(sim: &Sim, token: &str) -> (Ws, Value) {
    let url = format!("ws://{}/api/websocket", sim.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "auth_required");
    send(&mut ws, json!({"type": "auth", "access_token": token})).await;
    let reply = next(&mut ws).await;
    (ws, reply)
}

#[tokio::test]
async fn websocket_commands() {
    let sim = Sim::start_demo(helpers::TOKEN).await.unwrap();
    let (_, reply) = connect(&sim, "WRONG").await;
    assert_eq!(reply["type"], "auth_invalid");

    let (mut ws, reply) = connect(&sim, helpers::TOKEN).await;
    assert_eq!(reply, json!({"type": "auth_ok", "ha_version": "2025.4.4"}));
    send(
        &mut ws,
        json!({"id": 1, "type": "supported_features", "features": {"coalesce_messages": 1}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["success"], true);
    send(
        &mut ws,
        json!({"id": 2, "type": "subscribe_events", "event_type": "state_changed"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["id"], 2);
    send(&mut ws, json!({"id": 3, "type": "get_states"})).await;
    let states = next(&mut ws).await;
    assert_eq!(states["result"].as_array().unwrap().len(), 108);
    send(&mut ws, json!({"id": 4, "type": "ping"})).await;
    assert_eq!(next(&mut ws).await, json!({"id": 4, "type": "pong"}));
    send(&mut ws, json!({"id": 5, "type": "get_states_bogus"})).await;
    let err = next(&mut ws).await;
    assert_eq!(err["success"], false);
    assert_eq!(err["error"]["code"], "unknown_command");

    sim.set("light.bed_light", "off");
    let ev = next(&mut ws).await;
    assert_eq!(ev["id"], 2);
    assert_eq!(ev["event"]["event_type"], "state_changed");
    assert_eq!(ev["event"]["data"]["old_state"]["state"], "on");
    assert_eq!(ev["event"]["data"]["new_state"]["state"], "off");
    let new = &ev["event"]["data"]["new_state"];
    assert_eq!(new["last_changed"], new["last_updated"]);
    sim.remove("light.bed_light");
    let ev = next(&mut ws).await;
    assert_eq!(ev["event"]["data"]["new_state"], Value::Null);
    sim.set_many(&[("switch.ac", "on"), ("switch.ac", "off")]);
    let arr = next(&mut ws).await;
    assert_eq!(arr.as_array().unwrap().len(), 2);
    sim.drop_connections();
    assert!(matches!(
        ws.next().await,
        None | Some(Err(_)) | Some(Ok(Message::Close(_)))
    ));
    sim.stop();
}

#[tokio::test]
async fn rest_states() {
    let sim = Sim::start_demo(helpers::TOKEN).await.unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!(
            "{}{}",
            sim.url().as_str().trim_end_matches('/'),
            path
        ))
        .bearer_auth(token)
        .send()
    };
    let all = get("/api/states", helpers::TOKEN).await.unwrap();
    assert_eq!(all.status(), 200);
    assert_eq!(all.text().await.unwrap(), sim.states_json());
    let one = get("/api/states/light.bed_light", helpers::TOKEN)
        .await
        .unwrap();
    assert_eq!(
        Some(one.text().await.unwrap()),
        sim.state("light.bed_light")
    );
    let missing = get("/api/states/light.nope", helpers::TOKEN).await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad = get("/api/states/light.bed_light", "WRONG").await.unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(sim.rest_calls(), 4);
    sim.stop();
}
