//! Assist exposure against a real Home Assistant (both versions in CI): our
//! mirror equals HA's own `homeassistant/expose_entity/list`, and a change
//! made with `homeassistant/expose_entity` (what HA's UI sends) arrives
//! within the documented time: at once for an entity of HA's registry (HA
//! fires `entity_registry_updated`), within the 10 s poll for one outside it.

use std::time::{Duration, Instant};

use ha_fetchers::engine::Engine;
use ha_fetchers::Application;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::api::json as json_of;
use crate::helpers::real::{real_ha, Ha};

/// The tests here change what the shared HA exposes: one at a time.
static EXPOSING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start(ha: &Ha) -> (Engine, tokio_util::sync::CancellationToken) {
    let app = Application::build(ha.settings()).await.unwrap();
    let engine = app.engine().clone();
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    (engine, stop)
}

/// HA's own list: the entities exposed to `conversation`.
async fn theirs(ha: &Ha) -> Vec<String> {
    let r = ha
        .ws(vec![json!({"type": "homeassistant/expose_entity/list"})])
        .await;
    let map = r[0]["result"]["exposed_entities"].as_object().unwrap();
    let mut ids: Vec<String> = map
        .iter()
        .filter(|(_, to)| to["conversation"] == Value::Bool(true))
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

async fn expose(ha: &Ha, id: &str, on: bool) {
    let r = ha
        .ws(vec![
            json!({"type": "homeassistant/expose_entity", "assistants": ["conversation"],
                        "entity_ids": [id], "should_expose": on}),
        ])
        .await;
    assert_eq!(r[0]["success"], true, "{r:?}");
}

/// How long until `engine` sees `id` as `on`.
async fn arrives(engine: &Engine, id: &str, on: bool, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if engine.states().exposed(id) == on {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} exposed={on} did not arrive within {within:?}");
}

#[tokio::test]
async fn exposure_equals_has_own_list_and_changes_arrive() {
    let Some(ha) = real_ha() else { return };
    let _one = EXPOSING.lock().await;
    let (engine, stop) = start(&ha).await;
    let mut ours = None;
    for _ in 0..200 {
        ours = engine.states().exposed_ids();
        if ours.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = theirs(&ha).await;
    assert!(!want.is_empty(), "the demo exposes entities");
    assert_eq!(ours.unwrap(), want);

    // An entity of HA's registry: the registry event carries the change.
    let id = "light.bed_light";
    let was = engine.states().exposed(id);
    expose(&ha, id, !was).await;
    let event = arrives(&engine, id, !was, Duration::from_secs(5)).await;
    expose(&ha, id, was).await;
    arrives(&engine, id, was, Duration::from_secs(5)).await;
    eprintln!("exposure change of a registry entity arrived in {event:?}");
    assert!(event < Duration::from_secs(2), "{event:?}");

    // A state set over REST has no registry entry: the poll finds it.
    let legacy = format!("sensor.ha_fetchers_exposure_{}", std::process::id());
    ha.post_state(&legacy, json!({"state": "1"})).await;
    expose(&ha, &legacy, true).await;
    let polled = arrives(&engine, &legacy, true, Duration::from_secs(15)).await;
    eprintln!("exposure change of an entity outside the registry arrived in {polled:?}");
    ha.delete_state(&legacy).await;
    stop.cancel();
}

#[tokio::test]
async fn an_assist_token_sees_exactly_what_ha_exposes() {
    let Some(ha) = real_ha() else { return };
    let _one = EXPOSING.lock().await;
    let app = start_assist(&ha).await;
    let (engine, port, stop, token) = (&app.engine, app.port, &app.stop, app.token.clone());
    for _ in 0..200 {
        if engine.states().exposed_ids().is_some() && engine.states().cached("sun.sun").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = |token: &'static str| {
        let url = format!("http://127.0.0.1:{port}/api/v1/states");
        async move {
            let v = json_of(reqwest::Client::new().get(url).bearer_auth(token)).await;
            let mut ids: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["entity_id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let token: &'static str = Box::leak(token.into_boxed_str());
    // HA's list names entities it no longer has states for too; the states a
    // scope sees are those of HA's exposed entities that exist.
    let states: std::collections::BTreeSet<String> = ha.states().await.into_keys().collect();
    let want: Vec<String> = theirs(&ha)
        .await
        .into_iter()
        .filter(|id| states.contains(id))
        .collect();
    assert_eq!(get(token).await, want);
    assert_eq!(get(ADMIN).await.len(), states.len(), "the admin sees all");

    // Every other door, the same set.
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        json_of(
            http.post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body),
        )
    };
    let summary = json_of(
        http.get(format!("{base}/api/v1/summary"))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(summary["entity_count"], want.len());
    let walk = "{{ states | map(attribute='entity_id') | join(',') }}";
    let r = post("/api/v1/render", json!({"body": walk})).await;
    assert_eq!(
        r["text"],
        want.join(","),
        "templates walk only the exposed states"
    );
    let r = post(
        "/api/v1/fetchers/ha_search_pattern/run",
        json!({"pattern": "*"}),
    )
    .await;
    assert_eq!(r["result"]["count"], want.len(), "{r}");
    let hidden: Vec<&String> = states.iter().filter(|id| !want.contains(id)).collect();
    let session = crate::helpers::mcp::open(&http, &base, token).await;
    let args = json!({"name": "live_context", "arguments": {"limit": 10000}});
    let (v, _) =
        crate::helpers::mcp::call(&http, &base, token, Some(&session), "tools/call", args).await;
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    for id in &want {
        assert!(
            text.contains(id.as_str()),
            "live_context names {id}: {text}"
        );
    }
    for id in &hidden {
        assert!(
            !text.contains(&format!("{id}:")) && !text.contains(&format!("[{id}]")),
            "live_context hides {id}"
        );
    }
    let r = http
        .get(format!("{base}/api/v1/states/{}", hidden[0]))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "an unexposed entity does not exist for the token"
    );
    // Unexposing an entity in HA hides it from the token within the event's time.
    let id = want.first().cloned().unwrap();
    expose(&ha, &id, false).await;
    arrives(engine, &id, false, Duration::from_secs(5)).await;
    assert!(!get(token).await.contains(&id));
    expose(&ha, &id, true).await;
    arrives(engine, &id, true, Duration::from_secs(5)).await;
    stop.cancel();
}

/// An app with one token scoped to `assist`, and [`ADMIN`].
struct Assist {
    engine: Engine,
    port: u16,
    stop: tokio_util::sync::CancellationToken,
    /// The scoped token.
    token: String,
    /// Holds the tokens file.
    _dir: tempfile::TempDir,
}

async fn start_assist(ha: &Ha) -> Assist {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (token, hash) = ha_fetchers::tokens::mint();
    let row = ha_fetchers::tokens::Stored {
        name: "assist".into(),
        hash,
        scope: ha_fetchers::state::ScopeSpec {
            entities: ha_fetchers::state::Entities::Assist,
            fetchers: vec![],
            prompts: vec![],
        },
        created_at: String::new(),
    };
    ha_fetchers::tokens::Backend::File(file.clone())
        .create(row)
        .await
        .unwrap();
    let mut settings = ha.settings();
    settings.api_token = Some(SecretString::from(ADMIN));
    settings.tokens_file = file;
    let app = Application::build(settings).await.unwrap();
    let (engine, port, stop) = (app.engine().clone(), app.port(), app.shutdown_token());
    tokio::spawn(app.run_until_stopped());
    Assist {
        engine,
        port,
        stop,
        token,
        _dir: dir,
    }
}

/// The admin token of the apps here.
const ADMIN: &str = "admin-of-the-exposure-test";
/// A domain of the test's own, so nothing else changes under its subscription.
const DOMAIN: &str = "hf_exposure";

/// The doors the first test does not walk, each with two entities of a
/// domain of its own, one exposed in HA and one not: the event stream, the
/// console's login, MCP search, `get_entity`, resources and a domain
/// subscription (rmcp's client), `/api/v1/domains`.
#[tokio::test]
async fn the_stream_the_console_and_mcp_see_only_what_ha_exposes() {
    let Some(ha) = real_ha() else { return };
    let _one = EXPOSING.lock().await;
    let (shown, hidden) = (format!("{DOMAIN}.shown"), format!("{DOMAIN}.hidden"));
    ha.post_state(&shown, json!({"state": "0"})).await;
    ha.post_state(&hidden, json!({"state": "0"})).await;
    expose(&ha, &shown, true).await;
    expose(&ha, &hidden, false).await;
    let app = start_assist(&ha).await;
    let (engine, port, stop, token) = (&app.engine, app.port, &app.stop, &app.token);
    // Outside HA's registry: the poll carries the exposure (README).
    arrives(engine, &shown, true, Duration::from_secs(15)).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let domains = json_of(
        http.get(format!("{base}/api/v1/domains"))
            .bearer_auth(token),
    )
    .await;
    assert!(domains.to_string().contains(DOMAIN), "{domains}");
    let seen = |v: &Value| v.to_string().contains(&shown);
    let leaked = |v: &Value| v.to_string().contains(&hidden);

    // The console: a login with the token sees its scope, and only it.
    let r = http
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    let cookie = crate::helpers::api::session_cookie(r.headers());
    let view: Value = r.json().await.unwrap();
    assert!(
        view["scope"].as_str().unwrap_or("").contains("Assist"),
        "{view}"
    );
    let states = http
        .get(format!("{base}/api/v1/states?domain={DOMAIN}"))
        .header("cookie", &cookie);
    let states = json_of(states).await;
    assert!(seen(&states) && !leaked(&states), "{states}");

    // MCP through rmcp's client: search, one entity, resources, a subscription.
    let (c, mut heard) = crate::helpers::mcp::connect(&base, token).await;
    let call = |name: &str, args: Value| {
        let mut p = rmcp::model::CallToolRequestParams::new(name.to_string());
        if let Value::Object(m) = args {
            p = p.with_arguments(m);
        }
        c.call_tool(p)
    };
    let found = call("search_entities", json!({"query": "*"}))
        .await
        .unwrap();
    let found = serde_json::to_value(&found).unwrap();
    assert!(
        !leaked(&found),
        "search_entities hides what HA does not expose"
    );
    let one = call("get_entity", json!({"entity_id": hidden}))
        .await
        .unwrap();
    assert_eq!(one.is_error, Some(true));
    let read = |uri: String| c.read_resource(rmcp::model::ReadResourceRequestParams::new(uri));
    assert!(read(format!("ha://entity/{hidden}")).await.is_err());
    let domain =
        serde_json::to_value(read(format!("ha://domain/{DOMAIN}")).await.unwrap()).unwrap();
    assert!(seen(&domain) && !leaked(&domain), "{domain}");
    #[allow(deprecated)]
    let refused = c
        .subscribe(rmcp::model::SubscribeRequestParams::new(format!(
            "ha://entity/{hidden}"
        )))
        .await;
    assert!(
        refused.is_err(),
        "a subscription outside the scope is refused"
    );
    #[allow(deprecated)]
    c.subscribe(rmcp::model::SubscribeRequestParams::new(format!(
        "ha://domain/{DOMAIN}"
    )))
    .await
    .unwrap();

    // The event stream, asked for everything.
    let mut events = http
        .get(format!("{base}/api/v1/events?entity_id=*"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A change HA does not expose: no news anywhere.
    ha.post_state(&hidden, json!({"state": "1"})).await;
    let mut stream = String::new();
    let quiet = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet {
        tokio::select! {
            n = heard.recv() => panic!("MCP told of an unexposed change: {n:?}"),
            c = events.chunk() => stream.push_str(&String::from_utf8_lossy(&c.unwrap().unwrap())),
            _ = tokio::time::sleep_until(quiet.into()) => {}
        }
    }
    // An exposed one: both hear it.
    ha.post_state(&shown, json!({"state": "1"})).await;
    let uri = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("the exposed change is told within 5 s")
        .unwrap();
    assert_eq!(uri, format!("ha://domain/{DOMAIN}"));
    let until = Instant::now() + Duration::from_secs(5);
    while !stream.contains(&shown) && Instant::now() < until {
        if let Ok(Ok(Some(c))) =
            tokio::time::timeout(Duration::from_millis(500), events.chunk()).await
        {
            stream.push_str(&String::from_utf8_lossy(&c));
        }
    }
    assert!(stream.contains(&shown), "{stream}");
    assert!(!stream.contains(&hidden), "{stream}");
    c.cancel().await.unwrap();
    ha.delete_state(&shown).await;
    ha.delete_state(&hidden).await;
    stop.cancel();
}
