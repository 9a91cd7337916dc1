//! The engine over the shipped fetchers and known states (in memory), plus
//! timeouts, isolation of failures, and cache invalidation (memory and Redis).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_fetchers::fetchers::{FetchError, FetchRequest, Registry, Runner};
use ha_fetchers::state::{
    EntityState, Fallback, FallbackError, MemoryStore, SharedStore, StateManager,
};
use serde_json::{json, Value};

use crate::helpers::fixtures::{
    fixture_states, fixture_store, row, shipped_engine, shipped_rows, state,
};
use crate::helpers::{Kind, TestStore};

async fn ok(engine: &Runner, req: FetchRequest) -> Value {
    let out = engine.run(req).await;
    Value::clone(&out.result.unwrap_or_else(|e| panic!("{}: {e}", out.name)))
}

fn ids(v: &Value) -> Vec<&str> {
    v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn shipped_fetchers_on_known_data() {
    let e = shipped_engine().await;
    assert_eq!(
        e.names(),
        [
            "ha_device_status",
            "ha_domain_lights",
            "ha_domain_switches",
            "ha_energy_today",
            "ha_history_today",
            "ha_lights_on",
            "ha_lights_on_in_area",
            "ha_logbook_recent",
            "ha_search_pattern",
            "ha_specific_entity",
            "ha_state_summary",
            "ha_switch_history_today",
            "ha_switches_on",
            "light_entities"
        ]
    );

    let v = ok(&e, FetchRequest::new("ha_lights_on")).await;
    assert_eq!(v["count"], 2);
    assert_eq!(ids(&v), ["light.ceiling", "light.kitchen"]);
    // Compact: id, name, state and useful attributes only.
    assert_eq!(
        v["entities"][1],
        json!({"entity_id": "light.kitchen", "name": "Kitchen Lights", "state": "on", "brightness": 180})
    );

    let v = ok(&e, FetchRequest::new("ha_switches_on")).await;
    assert_eq!(ids(&v), ["switch.decorative_lights"]);

    let v = ok(&e, FetchRequest::new("ha_domain_lights")).await;
    assert_eq!(v["count"], 4);
    assert_eq!(v["by_state"], json!({"off": 1, "on": 2, "unavailable": 1}));

    let v = ok(&e, FetchRequest::new("ha_domain_switches")).await;
    assert_eq!(v["by_state"], json!({"off": 1, "on": 1}));

    let v = ok(&e, FetchRequest::new("light_entities")).await;
    assert_eq!(v["by_state"]["on"], 2);
    let ceiling = &v["entities"][1];
    assert_eq!(ceiling["entity_id"], "light.ceiling");
    assert_eq!(ceiling["color_temp_kelvin"], 3000);

    let v = ok(&e, FetchRequest::new("ha_state_summary")).await;
    assert_eq!(v["entity_count"], 13);
    assert_eq!(v["domains"]["light"], 4);
    assert_eq!(v["connected"], false);

    let v = ok(
        &e,
        FetchRequest::new("ha_specific_entity").param("entity_id", "climate.ecobee"),
    )
    .await;
    assert_eq!(v["state"], "heat");
    assert_eq!(v["attributes"]["temperature"], 20.0);
    assert!(v["attributes"].get("friendly_name").is_none());

    let v = ok(
        &e,
        FetchRequest::new("ha_search_pattern").param("pattern", "*battery*"),
    )
    .await;
    assert_eq!(
        ids(&v),
        [
            "sensor.door_battery",
            "sensor.phone_battery",
            "sensor.remote_battery"
        ]
    );
    // Friendly names match too, case-insensitively.
    let v = ok(
        &e,
        FetchRequest::new("ha_search_pattern").param("pattern", "kitchen*"),
    )
    .await;
    assert_eq!(ids(&v), ["light.kitchen"]);

    let v = ok(&e, FetchRequest::new("ha_device_status")).await;
    assert_eq!(v["mode"], "rest_fallback");
    assert_eq!(
        v["unavailable"],
        json!(["light.porch", "sensor.door_battery"])
    );
    assert_eq!(v["unknown_count"], 0);
    assert!(v["domains"][0]["states"].is_object(), "{v}");
}

#[tokio::test]
async fn device_status_reports_websocket_mode_when_connected() {
    let store = fixture_store().await;
    store
        .set_meta(&ha_fetchers::state::Meta {
            connected: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = Runner::new(
        Registry::from_rows(shipped_rows()),
        StateManager::new(store, None),
    );
    let v = ok(&e, FetchRequest::new("ha_device_status")).await;
    assert_eq!(v["mode"], "websocket");
}

#[tokio::test]
async fn missing_and_bad_params_are_errors_for_that_fetcher_only() {
    let e = shipped_engine().await;
    let outs = e
        .run_many(vec![
            FetchRequest::new("ha_specific_entity"),
            FetchRequest::new("ha_search_pattern").param("pattern", "x".repeat(500)),
            FetchRequest::new("no_such_fetcher"),
            FetchRequest::new("ha_lights_on").param("colour", "red"),
            FetchRequest::new("ha_switches_on"),
        ])
        .await;
    let codes: Vec<&str> = outs
        .iter()
        .map(|o| o.result.as_ref().err().map_or("ok", |e| e.code()))
        .collect();
    assert_eq!(
        codes,
        [
            "bad_params",
            "bad_params",
            "unknown_fetcher",
            "bad_params",
            "ok"
        ]
    );
}

/// A REST fallback that answers too late.
struct SlowFallback;

#[async_trait]
impl Fallback for SlowFallback {
    async fn fetch_state(&self, _: &str) -> Result<Option<EntityState>, FallbackError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(None)
    }
}

#[tokio::test]
async fn a_slow_fetcher_times_out_alone() {
    let states = StateManager::new(fixture_store().await, Some(Arc::new(SlowFallback)));
    let mut rows = shipped_rows();
    for r in &mut rows {
        if r.name == "ha_specific_entity" {
            r.timeout_ms = 100;
        }
    }
    let e = Runner::new(Registry::from_rows(rows), states);
    let outs = e
        .run_many(vec![
            // Not cached, so it goes to the (slow) REST fallback.
            FetchRequest::new("ha_specific_entity").param("entity_id", "light.not_cached"),
            FetchRequest::new("ha_lights_on"),
        ])
        .await;
    assert!(matches!(outs[0].result, Err(FetchError::Timeout(100))));
    assert!(outs[1].result.is_ok());
}

#[tokio::test]
async fn a_runaway_template_runs_out_of_fuel() {
    let mut r = row("spin", "template", "{}");
    r.template = Some(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}".into(),
    );
    r.timeout_ms = 60_000;
    let states = StateManager::new(fixture_store().await, None);
    let e = Runner::new(Registry::from_rows(vec![r]), states);
    let out = e.run(FetchRequest::new("spin")).await;
    let err = out.result.unwrap_err();
    assert_eq!(err.code(), "failed");
    assert!(err.to_string().contains("fuel"), "{err}");
}

#[tokio::test]
async fn templates_have_no_file_or_env_access() {
    let mut r = row("sneaky", "template", "{}");
    r.template = Some(r#"{% include "/etc/passwd" %}"#.into());
    let e = Runner::new(
        Registry::from_rows(vec![r]),
        StateManager::new(fixture_store().await, None),
    );
    let out = e.run(FetchRequest::new("sneaky")).await;
    assert!(out.result.is_err());
}

/// Checks caching and invalidation over any store.
async fn cache_follows_state_changes(store: SharedStore) {
    store.replace_all(fixture_states()).await.unwrap();
    let e = Runner::new(
        Registry::from_rows(shipped_rows()),
        StateManager::new(store.clone(), None),
    );
    let first = e.run(FetchRequest::new("ha_lights_on")).await;
    assert!(!first.cached);
    let second = e.run(FetchRequest::new("ha_lights_on")).await;
    assert!(second.cached);
    assert_eq!(first.result.unwrap(), second.result.clone().unwrap());

    // A change in another domain leaves the lights' result cached.
    store
        .upsert(vec![state("switch.ac", "on", json!({}), 1)])
        .await
        .unwrap();
    assert!(e.run(FetchRequest::new("ha_lights_on")).await.cached);
    // ...but the summary, which reads everything, is recomputed.
    e.run(FetchRequest::new("ha_state_summary")).await;
    assert!(e.run(FetchRequest::new("ha_state_summary")).await.cached);
    store
        .upsert(vec![state("sensor.x", "1", json!({}), 2)])
        .await
        .unwrap();
    assert!(!e.run(FetchRequest::new("ha_state_summary")).await.cached);

    // A light turning on ends the cached lights result at once.
    store
        .upsert(vec![state(
            "light.bed_light",
            "on",
            json!({"friendly_name": "Bed Light"}),
            3,
        )])
        .await
        .unwrap();
    let third = e.run(FetchRequest::new("ha_lights_on")).await;
    assert!(!third.cached);
    assert_eq!(third.result.unwrap()["count"], 3);

    // Different params are cached apart.
    let a = e
        .run(FetchRequest::new("ha_search_pattern").param("pattern", "*bed*"))
        .await;
    let b = e
        .run(FetchRequest::new("ha_search_pattern").param("pattern", "*ac*"))
        .await;
    assert!(!a.cached && !b.cached);
    assert_ne!(a.result.unwrap(), b.result.unwrap());
}

#[tokio::test]
async fn cache_is_invalidated_by_state_changes_in_memory() {
    cache_follows_state_changes(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn cache_is_invalidated_by_state_changes_in_redis() {
    // Dropping it deletes the test's keys.
    let store = TestStore::new(Kind::Redis).await;
    cache_follows_state_changes(store.shared.clone()).await;
}

/// On paused time: the TTL passes without the test waiting for it.
#[tokio::test(start_paused = true)]
async fn ttl_is_a_ceiling() {
    let mut r = row("lights", "entities", r#"{"domain":"light"}"#);
    r.ttl_seconds = 1;
    let mut nocache = row("lights_nocache", "entities", r#"{"domain":"light"}"#);
    nocache.ttl_seconds = 0;
    let e = Runner::new(
        Registry::from_rows(vec![r, nocache]),
        StateManager::new(fixture_store().await, None),
    );
    e.run(FetchRequest::new("lights")).await;
    assert!(e.run(FetchRequest::new("lights")).await.cached);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!e.run(FetchRequest::new("lights")).await.cached);
    e.run(FetchRequest::new("lights_nocache")).await;
    assert!(!e.run(FetchRequest::new("lights_nocache")).await.cached);
}

#[tokio::test]
async fn old_dialect_rows_are_reported_with_their_fix() {
    let mut r = row("old_climate", "template", "{}");
    r.template = Some(r#"{% for c in states("climate") %}{{ c.entity_id }}{% endfor %}"#.into());
    let problems = ha_fetchers::fetchers::validate(&r).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "template");
    assert!(
        problems[0]
            .reason
            .contains("line 1, column 13: states(\"climate\") is the state of an entity")
            && problems[0].reason.ends_with("use states.climate"),
        "{}",
        problems[0].reason
    );
}

#[tokio::test]
async fn templates_speak_home_assistant_like_prompts() {
    let mut r = row("ha_forms", "template", "{}");
    r.template = Some(
        r#"{{ {"one": states("light.kitchen"), "on": is_state("light.kitchen", "on"), "n": states.light | list | length, "b": state_attr("light.kitchen", "brightness"), "p": params.x | default(1)} | tojson }}"#
            .into(),
    );
    let e = Runner::new(
        Registry::from_rows(vec![r]),
        StateManager::new(fixture_store().await, None),
    );
    let v = e.run(FetchRequest::new("ha_forms")).await.result.unwrap();
    assert_eq!(v["one"], json!("on"), "{v}");
    assert_eq!(v["on"], json!(true));
    assert_eq!(v["n"], json!(4), "{v}");
    assert_eq!(v["b"], json!(180));
    assert_eq!(v["p"], json!(1));
}

#[tokio::test]
async fn template_reads_only_invalidate_on_the_domains_they_read() {
    let mut r = row("hot_climate", "template", "{}");
    r.template = Some(r#"{{ states.climate | selectattr("state", "eq", "cool") | map(attribute="entity_id") | list | tojson }}"#.into());
    let store = fixture_store().await;
    let e = Runner::new(
        Registry::from_rows(vec![r]),
        StateManager::new(store.clone(), None),
    );
    let v = e.run(FetchRequest::new("hot_climate")).await;
    assert_eq!(*v.result.unwrap(), json!(["climate.hvac"]));
    store
        .upsert(vec![state("light.kitchen", "off", json!({}), 4)])
        .await
        .unwrap();
    assert!(e.run(FetchRequest::new("hot_climate")).await.cached);
    store
        .upsert(vec![state("climate.ecobee", "cool", json!({}), 5)])
        .await
        .unwrap();
    let v = e.run(FetchRequest::new("hot_climate")).await;
    assert!(!v.cached);
    assert_eq!(
        *v.result.unwrap(),
        json!(["climate.ecobee", "climate.hvac"])
    );
}

/// A REST fallback that answers with another entity's state.
struct WrongFallback;

#[async_trait]
impl Fallback for WrongFallback {
    async fn fetch_state(&self, _: &str) -> Result<Option<EntityState>, FallbackError> {
        Ok(Some(
            EntityState::from_raw(
                r#"{"entity_id":"light.b","state":"on","attributes":{},"last_updated":"2026-01-01T00:00:00+00:00"}"#,
            )
            .unwrap(),
        ))
    }
}

#[tokio::test]
async fn a_rest_answer_for_another_entity_is_refused_and_never_cached() {
    use axum::http::{Method, StatusCode};
    let store: ha_fetchers::state::SharedStore = Arc::new(ha_fetchers::state::MemoryStore::new());
    let states = StateManager::new(store, Some(Arc::new(WrongFallback)));
    let app = crate::helpers::api::app_over(
        Runner::new(Registry::from_rows(Vec::new()), states.clone()),
        None,
    );
    let (status, body) = crate::helpers::api::send_json(
        &app,
        crate::helpers::api::request(Method::GET, "/api/v1/states/sensor.a", None),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], "bad_gateway");
    let m = body["error"]["message"].as_str().unwrap();
    assert!(m.contains("light.b") && m.contains("sensor.a"), "{m}");
    assert!(states.cached("light.b").is_none() && states.cached("sensor.a").is_none());
}
