//! Prompt templates against the recorded demo home (tests/fixtures/), with a
//! fake fetcher source that answers, fails, and times out on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ha_fetchers::fetchers::{FetchError, FetchOutcome, FetchRequest};
use ha_fetchers::prompt::{
    load_dir, FetcherSource, PromptTemplate, Prompts, RenderError, RenderOptions, Rendered,
    Renderer,
};
use ha_fetchers::state::{EntityState, MemoryStore, RegistryKind, StateManager, Store};
use serde_json::{json, Value};

use crate::helpers::services::redis_url;
use crate::helpers::{Kind, TestStore};

/// What a fake fetcher does.
enum Behaviour {
    Value(Value),
    Fail(&'static str),
    Slow,
}

/// How long the slow fetcher's timeout is.
const FAKE_TIMEOUT: Duration = Duration::from_millis(100);

struct FakeSource {
    fetchers: HashMap<&'static str, Behaviour>,
    runs: AtomicUsize,
    ran: parking_lot::Mutex<Vec<String>>,
}

#[async_trait]
impl FetcherSource for FakeSource {
    fn exists(&self, name: &str) -> bool {
        self.fetchers.contains_key(name)
    }

    fn names(&self) -> Vec<String> {
        self.fetchers.keys().map(|k| k.to_string()).collect()
    }

    async fn run_many(&self, requests: Vec<FetchRequest>) -> Vec<FetchOutcome> {
        let runs = requests.into_iter().map(|r| async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.ran.lock().push(r.name.clone());
            let result = match self.fetchers.get(r.name.as_str()) {
                Some(Behaviour::Value(v)) => {
                    // ha_search_pattern answers from its params, like the real one.
                    match r.params.get("pattern").and_then(|p| p.as_str()) {
                        Some(p) => Ok(json!(fixture_states()
                            .into_iter()
                            .filter(|s| glob_prefix(p, s["entity_id"].as_str().unwrap()))
                            .collect::<Vec<_>>())),
                        None => Ok(v.clone()),
                    }
                }
                Some(Behaviour::Fail(m)) => Err(FetchError::Failed(m.to_string())),
                Some(Behaviour::Slow) => {
                    match tokio::time::timeout(
                        FAKE_TIMEOUT,
                        tokio::time::sleep(Duration::from_secs(30)),
                    )
                    .await
                    {
                        Ok(()) => Ok(Value::Null),
                        Err(_) => Err(FetchError::Timeout(FAKE_TIMEOUT.as_millis() as u64)),
                    }
                }
                None => Err(FetchError::UnknownFetcher(r.name.clone())),
            };
            FetchOutcome {
                name: r.name,
                params: r.params,
                result: result.map(std::sync::Arc::new),
                elapsed_ms: 1.0,
                cached: false,
            }
        });
        futures::future::join_all(runs).await
    }
}

/// `sensor.outside_*` style patterns: a prefix and a star.
fn glob_prefix(p: &str, id: &str) -> bool {
    id.starts_with(p.trim_end_matches('*'))
}

fn fixture_states() -> Vec<Value> {
    serde_json::from_str(include_str!("../fixtures/states.json")).unwrap()
}

fn states_where(f: impl Fn(&Value) -> bool) -> Value {
    Value::Array(fixture_states().into_iter().filter(|s| f(s)).collect())
}

fn domain(s: &Value) -> &str {
    s["entity_id"].as_str().unwrap().split('.').next().unwrap()
}

/// The registries as recorded, with a few areas assigned (the demo assigns none):
/// the bed light's device is in the bedroom, the kitchen lights entity itself in the kitchen.
fn registries() -> [(RegistryKind, String); 3] {
    let mut devices: Value =
        serde_json::from_str(include_str!("../fixtures/registry/device.json")).unwrap();
    let mut entities: Value =
        serde_json::from_str(include_str!("../fixtures/registry/entity.json")).unwrap();
    let bed_device = entities["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ei"] == "light.bed_light")
        .unwrap()["di"]
        .clone();
    for d in devices.as_array_mut().unwrap() {
        if d["id"] == bed_device {
            d["area_id"] = json!("bedroom");
        }
    }
    for e in entities["entities"].as_array_mut().unwrap() {
        if e["ei"] == "light.kitchen_lights" || e["ei"] == "climate.hvac" {
            e["ai"] = json!("kitchen");
        }
        if e["ei"] == "sensor.outside_temperature" {
            e["ai"] = json!("living_room");
        }
    }
    [
        (
            RegistryKind::Area,
            include_str!("../fixtures/registry/area.json").to_string(),
        ),
        (RegistryKind::Device, devices.to_string()),
        (RegistryKind::Entity, entities.to_string()),
    ]
}

async fn home() -> StateManager {
    let store = Arc::new(MemoryStore::new());
    let states = fixture_states()
        .iter()
        .map(|s| EntityState::from_raw(&s.to_string()).unwrap())
        .collect();
    store.replace_all(states).await.unwrap();
    for (kind, raw) in registries() {
        store.set_registry(kind, raw.into()).await.unwrap();
    }
    StateManager::new(store, None)
}

fn source() -> Arc<FakeSource> {
    source_with(json!({"mode": "websocket", "unavailable": [], "unknown_count": 9}))
}

/// The fetchers, with `ha_device_status` answering `device_status`.
fn source_with(device_status: serde_json::Value) -> Arc<FakeSource> {
    let mut f = HashMap::new();
    f.insert(
        "ha_lights_on",
        Behaviour::Value(states_where(|s| domain(s) == "light" && s["state"] == "on")),
    );
    f.insert(
        "ha_switches_on",
        Behaviour::Value(states_where(|s| {
            domain(s) == "switch" && s["state"] == "on"
        })),
    );
    f.insert(
        "ha_domain_lights",
        Behaviour::Value(
            json!({"domain": "light", "entities": states_where(|s| domain(s) == "light")}),
        ),
    );
    f.insert(
        "ha_state_summary",
        Behaviour::Value(json!({"entity_count": 108, "connected": true})),
    );
    f.insert("ha_device_status", Behaviour::Value(device_status));
    f.insert("ha_search_pattern", Behaviour::Value(json!([])));
    f.insert(
        "ha_logbook_recent",
        Behaviour::Value(json!({"since": "2026-12-07T17:10:00+01:00", "until": "2026-12-07T18:10:00+01:00",
            "events": [{"when": "2026-12-07T18:02:11+01:00", "entity_id": "binary_sensor.front_door",
            "line": "18:02 Front Door opened"}], "more": 2})),
    );
    f.insert("ha_broken", Behaviour::Fail("database is on fire"));
    f.insert("ha_slow", Behaviour::Slow);
    Arc::new(FakeSource {
        fetchers: f,
        runs: AtomicUsize::new(0),
        ran: Default::default(),
    })
}

async fn renderer() -> (Arc<Renderer>, Arc<FakeSource>) {
    let src = source();
    (Arc::new(Renderer::new(home().await, src.clone())), src)
}

async fn render(body: &str) -> Result<Rendered, RenderError> {
    let (r, _) = renderer().await;
    r.render_source("t", body, RenderOptions::default()).await
}

async fn text(body: &str) -> String {
    match render(body).await {
        Ok(r) => r.text,
        Err(e) => panic!("{body}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn states_functions_match_home_assistant() {
    assert_eq!(text("{{ states('light.bed_light') }}").await, "on");
    assert_eq!(text("{{ states('light.nope') }}").await, "unknown");
    assert_eq!(text("{{ states.light | list | length }}").await, "6");
    assert_eq!(
        text("{{ states.light.bed_light.name }}|{{ states.light.bed_light.state }}|{{ states.light.bed_light.domain }}|{{ states.light.bed_light.entity_id }}").await,
        "Bed Light|on|light|light.bed_light"
    );
    assert_eq!(
        text("{{ states.light.bed_light.attributes.brightness }}").await,
        "180"
    );
    assert!(text("{{ states.light.bed_light.last_changed }}")
        .await
        .starts_with("20"));
    assert_eq!(text("{{ states.light.nope is defined }}").await, "False");
    assert_eq!(
        text("{% for s in states.switch %}{{ s.entity_id }} {% endfor %}").await,
        "switch.ac switch.decorative_lights "
    );
    assert_eq!(text("{{ states | list | length }}").await, "108");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_predicates() {
    assert_eq!(
        text("{{ is_state('light.bed_light', 'on') }} {{ is_state('light.bed_light', ['off', 'on']) }} {{ is_state('light.bed_light', 'off') }}").await,
        "True True False"
    );
    assert_eq!(
        text("{{ state_attr('light.bed_light', 'brightness') }} {{ state_attr('light.bed_light', 'nope') }}").await,
        "180 None"
    );
    assert_eq!(
        text("{{ is_state_attr('light.bed_light', 'brightness', 180) }} {{ is_state_attr('light.bed_light', 'brightness', 1) }}").await,
        "True False"
    );
    assert_eq!(
        text("{{ has_value('light.bed_light') }} {{ has_value('light.nope') }} {{ 'light.bed_light' | has_value }}").await,
        "True False True"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_functions() {
    let year = chrono::Local::now().format("%Y").to_string();
    assert_eq!(text("{{ now().year }}").await, year);
    assert_eq!(
        text("{{ as_timestamp('2026-01-01T00:00:00+00:00') }} {{ '2026-01-01T00:00:01+00:00' | as_timestamp }}").await,
        "1767225600.0 1767225601.0"
    );
    assert_eq!(text("{{ as_timestamp('junk', 0) }}").await, "0");
    assert!(render("{{ as_timestamp('junk') }}").await.is_err());
    assert!(text("{{ now().timestamp() - as_timestamp(now()) < 1 }}")
        .await
        .contains("True"));
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::minutes(61)).to_rfc3339();
    assert_eq!(
        text(&format!("{{{{ relative_time('{an_hour_ago}') }}}}")).await,
        "1 hour"
    );
    assert_eq!(
        text(&format!("{{{{ time_since('{an_hour_ago}', 2) }}}}")).await,
        "1 hour 1 minute"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn iif_float_int() {
    assert_eq!(
        text("{{ iif(true, 'y', 'n') }} {{ iif(0, 'y', 'n') }} {{ iif(none, 'y', 'n', 'z') }} {{ iif(1) }}").await,
        "y n z True"
    );
    assert_eq!(
        text("{{ float('2.5') }} {{ float('x', 1) }} {{ '3' | float }} {{ 'x' | float(0) }}").await,
        "2.5 1 3.0 0"
    );
    assert_eq!(
        text("{{ int('3.7') }} {{ int('x', -1) }} {{ '42' | int }} {{ 4.9 | int }}").await,
        "3 -1 42 4"
    );
    let e = render("{{ float('abc') }}").await.unwrap_err().to_string();
    assert!(e.contains("float got invalid input"), "{e}");
    assert!(render("{{ 'abc' | int }}").await.is_err());
}

/// HA's `expand`: groups (nested, in a cycle too) and zones give their
/// members, each once, in HA's order; ids, state objects and lists mix; a
/// scope's expansion stops at what it does not see; a runaway is refused.
#[tokio::test(flavor = "multi_thread")]
async fn expand_gives_each_member_once_in_has_order_and_within_a_scope() {
    use ha_fetchers::state::{Entities, Scope, ScopeSpec};
    let st = |id: &str, attributes: Value| {
        let raw = json!({"entity_id": id, "state": "on", "attributes": attributes,
                         "last_updated": "2026-01-01T00:00:00+00:00"});
        EntityState::from_raw(&raw.to_string()).unwrap()
    };
    let store = Arc::new(MemoryStore::new());
    store
        .replace_all(vec![
            st(
                "group.downstairs",
                json!({"entity_id": ["light.b", "group.nested", "light.gone"]}),
            ),
            st(
                "group.nested",
                json!({"entity_id": ["light.a", "group.downstairs"]}),
            ),
            st("light.kitchen_group", json!({"entity_id": ["light.c"]})),
            st("zone.home", json!({"persons": ["person.ada"]})),
            st("person.ada", json!({})),
            st("light.a", json!({})),
            st("light.b", json!({})),
            st("light.c", json!({})),
        ])
        .await
        .unwrap();
    let whole = StateManager::new(store, None);
    let spec = ScopeSpec {
        entities: Entities::Only(vec!["light.a".into(), "group.*".into()]),
        fetchers: vec![],
        prompts: vec![],
    };
    let scoped = whole.scoped(Arc::new(Scope::new("t", spec).unwrap()));
    let text = |sm: &StateManager, body: &'static str| {
        let r = Arc::new(Renderer::new(sm.clone(), source()));
        async move {
            match r.render_source("t", body, RenderOptions::default()).await {
                Ok(r) => r.text,
                Err(e) => format!("error: {e}"),
            }
        }
    };
    let ids = "| map(attribute='entity_id') | join(',') }}";
    let cases: [(&'static str, &str, &str); 4] = [
        (
            "{{ expand('group.downstairs') ",
            "light.a,light.b",
            "light.a",
        ),
        (
            "{{ expand('zone.home', ['light.kitchen_group', states.light.a], 'light.a', 42) ",
            "light.a,light.c,person.ada",
            "light.a",
        ),
        // HA's order: a stack, so a sorted list comes out backwards.
        (
            "{{ states.light | expand ",
            "light.c,light.b,light.a",
            "light.a",
        ),
        ("{{ expand('light.nope', 'group.nope') ", "", ""),
    ];
    for (call, all, seen) in cases {
        let body: &'static str = Box::leak(format!("{call}{ids}").into_boxed_str());
        assert_eq!(text(&whole, body).await, all, "{body}");
        assert_eq!(text(&scoped, body).await, seen, "{body} through a scope");
    }
    let runaway = text(&whole, "{{ expand([['x'] * 1000] * 200) | length }}").await;
    assert!(
        runaway.contains("expand looks at 100000 names at most"),
        "{runaway}"
    );
}

/// Renders sort under the render guard with a sort of the guard's own (one
/// that can stop part way): the order is Jinja's, stable, every option.
#[tokio::test(flavor = "multi_thread")]
async fn sorts_under_the_render_guard_keep_jinjas_order() {
    for (body, want) in [
        ("{{ [3, 1, 2, 1, 10] | sort | join(',') }}", "1,1,2,3,10"),
        ("{{ [3, 1, 2] | sort(reverse=true) | join(',') }}", "3,2,1"),
        ("{{ ['b', 'A', 'a', 'B'] | sort | join(',') }}", "A,a,b,B"),
        ("{{ ['b', 'A', 'a', 'B'] | sort(case_sensitive=true) | join(',') }}", "A,B,a,b"),
        (
            "{{ [{'n': 2, 'i': 0}, {'n': 1, 'i': 1}, {'n': 2, 'i': 2}, {'n': 1, 'i': 3}] | sort(attribute='n') | map(attribute='i') | join(',') }}",
            "1,3,0,2",
        ),
        ("{{ {'b': 1, 'a': 2, 'c': 0} | dictsort | map('first') | join(',') }}", "a,b,c"),
        ("{{ {'b': 1, 'a': 2, 'c': 0} | dictsort(by='value') | map('first') | join(',') }}", "c,b,a"),
        (
            "{% for g in [{'k': 'y', 'i': 0}, {'k': 'x', 'i': 1}, {'k': 'y', 'i': 2}] | groupby('k') %}{{ g.grouper }}:{{ g.list | map(attribute='i') | join('') }} {% endfor %}",
            "x:1 y:02 ",
        ),
        ("{{ [] | sort | length }} {{ [7] | sort | join(',') }}", "0 7"),
    ] {
        assert_eq!(text(body).await, want, "{body}");
    }
    // 1,000 numbers in a scrambled order, as Rust's own sort orders them.
    let nums: Vec<i64> = (0..1000).map(|i| (i * 7919 + 13) % 1009).collect();
    let mut sorted = nums.clone();
    sorted.sort();
    let body = format!("{{{{ {nums:?} | sort | join(',') }}}}");
    let want: Vec<String> = sorted.iter().map(i64::to_string).collect();
    assert_eq!(text(&body).await, want.join(","));
}

#[tokio::test(flavor = "multi_thread")]
async fn area_lookups_on_recorded_registries() {
    assert_eq!(text("{{ area_name('light.bed_light') }}").await, "Bedroom");
    assert_eq!(
        text("{{ area_name('light.kitchen_lights') }}").await,
        "Kitchen"
    );
    assert_eq!(
        text("{{ area_name('light.ceiling_lights') }}").await,
        "None"
    );
    assert_eq!(text("{{ area_id('Living Room') }}").await, "living_room");
    assert_eq!(text("{{ area_id('light.bed_light') }}").await, "bedroom");
    assert_eq!(
        text("{{ area_entities('Kitchen') | join(',') }}").await,
        "climate.hvac,light.kitchen_lights"
    );
    assert_eq!(
        text("{{ area_entities('kitchen') | select('is_state', 'on') | join(',') }}").await,
        "light.kitchen_lights"
    );
    assert_eq!(
        text("{{ states.light.bed_light.area_name }}").await,
        "Bedroom"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_write_compact_text() {
    assert_eq!(
        text("{{ ['light.bed_light', 'light.kitchen_lights'] | compact }}").await,
        "- Bed Light (Bedroom): on, brightness 180\n- Kitchen Lights (Kitchen): on, brightness 180"
    );
    assert_eq!(
        text("{{ [states.sensor.outside_humidity] | compact }}").await,
        "- Outside Humidity: 54 %"
    );
    assert_eq!(
        text("{{ ['sensor.outside_temperature'] | compact(ids=true) }}").await,
        "- sensor.outside_temperature (Living Room): 15.6 °C"
    );
    assert_eq!(
        text("{{ states.switch | count_by_state }} / {{ ha_domain_lights | count_by_state }}")
            .await,
        "off 2 / on 6"
    );
    assert_eq!(
        text("{{ ha_lights_on | names }}").await,
        "Bed Light, Ceiling Lights, Kitchen Lights, Office RGBW Lights, Living Room RGBWW Lights, Entrance Color + White Lights"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_only_the_fetchers_a_template_uses() {
    let (r, src) = renderer().await;
    let out = r
        .render_source(
            "t",
            "{{ ha_lights_on | length }} {{ fetch('ha_search_pattern', pattern='sensor.outside_*') | length }} {{ fetch('ha_lights_on') | length }}",
            RenderOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.text, "6 2 6");
    // ha_lights_on as a variable and as fetch() with no params run once.
    let mut ran = src.ran.lock().clone();
    ran.sort();
    assert_eq!(ran, vec!["ha_lights_on", "ha_search_pattern"]);
    assert_eq!(out.fetchers.len(), 2);
    assert!(out.errors.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn lazy_fetch_for_computed_names() {
    let (r, src) = renderer().await;
    let out = r
        .render_source(
            "t",
            "{% for n in ['ha_lights_on', 'ha_switches_on'] %}{{ fetch(n) | length }} {% endfor %}",
            RenderOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.text, "6 0 ");
    assert_eq!(src.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fetchers_are_named_in_the_error() {
    let e = render("{{ fetch('ha_nope') }}").await.unwrap_err();
    assert!(
        matches!(&e, RenderError::UnknownFetcher { name, template } if name == "ha_nope" && template == "t"),
        "{e}"
    );
    let e = render("{{ ha_lihgts_on }}").await.unwrap_err();
    assert!(e.to_string().contains("ha_lihgts_on") && e.to_string().contains("template t"));
    let e = render("{% set n = 'ha_nope2' %}{{ fetch(n) }}")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ha_nope2"), "{e}");
    // A variable the caller passes is not a fetcher.
    let (r, _) = renderer().await;
    let mut opts = RenderOptions::default();
    opts.variables.insert("who".into(), json!("Ann"));
    assert_eq!(
        r.render_source("t", "hi {{ who }}", opts)
            .await
            .unwrap()
            .text,
        "hi Ann"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_fetchers_render_as_markers_and_are_listed() {
    let out = render("A {{ ha_broken }} B {{ ha_slow | compact }} C {{ ha_lights_on | length }}")
        .await
        .unwrap();
    assert_eq!(
        out.text,
        "A [ha_broken unavailable: database is on fire] B [ha_slow unavailable: timeout] C 6"
    );
    let mut codes: Vec<_> = out
        .errors
        .iter()
        .map(|e| (e.fetcher.as_str(), e.code.as_str()))
        .collect();
    codes.sort();
    assert_eq!(codes, vec![("ha_broken", "failed"), ("ha_slow", "timeout")]);
    // A marker is false and empty, so templates branch on it naturally.
    assert_eq!(
        text("{% if ha_broken %}yes{% else %}no{% endif %} {{ ha_broken | length }}").await,
        "no 0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_fails_the_whole_render() {
    let (r, _) = renderer().await;
    let strict = RenderOptions {
        strict: true,
        ..Default::default()
    };
    let e = r
        .render_source("t", "{{ ha_slow }}", strict.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RenderError::FetcherFailed { fetcher, .. } if fetcher == "ha_slow"),
        "{e}"
    );
    let e = r
        .render_source("t", "{% set n = 'ha_broken' %}{{ fetch(n) }}", strict)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RenderError::FetcherFailed { fetcher, .. } if fetcher == "ha_broken"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_templates_run_out_of_fuel() {
    let started = Instant::now();
    let e =
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
            .await
            .unwrap_err();
    assert!(matches!(e, RenderError::OutOfFuel { .. }), "{e}");
    assert!(e.to_string().contains("ran out of fuel"));
    let e = render("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RenderError::OutOfFuel { .. } | RenderError::Render { .. }
        ),
        "{e}"
    );
    // Not a timing assertion on speed: a ceiling that only a missing limit would break.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_capped() {
    let (r, _) = renderer().await;
    let mut opts = RenderOptions::default();
    opts.variables.insert("s".into(), json!("x".repeat(1024)));
    let e = r
        .render_source(
            "t",
            "{% for i in range(300) %}{{ s }}{% endfor %}",
            opts.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, RenderError::TooLarge { limit, .. } if limit == 256 * 1024),
        "{e}"
    );
    let ok = r
        .render_source("t", "{% for i in range(200) %}{{ s }}{% endfor %}", opts)
        .await
        .unwrap();
    assert_eq!(ok.text.len(), 200 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_file_or_include_access() {
    assert!(render("{% include '/etc/passwd' %}").await.is_err());
    assert!(render("{% import 'x.j2' as x %}").await.is_err());
}

fn shipped() -> Vec<PromptTemplate> {
    load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fetchers/prompts"
    )))
    .unwrap()
}

/// Home Assistant's LLM API view of entities (`_get_exposed_entities` dumped as YAML).
fn ha_yaml(sm: &StateManager, ids: &[String]) -> String {
    let mut out = String::new();
    let q = |s: &str| {
        let needs = s.parse::<f64>().is_ok()
            || ["on", "off", "yes", "no", "true", "false", "null"]
                .contains(&s.to_lowercase().as_str())
            || s.contains(": ")
            || s.starts_with(['{', '[', '\'', '"', '*', '&', '!', '%', '@']);
        if needs {
            format!("'{s}'")
        } else {
            s.to_string()
        }
    };
    for id in ids {
        let st = sm.cached(id).unwrap();
        let json = st.json();
        out.push_str(&format!("- names: {}\n", st.name()));
        out.push_str(&format!("  domain: {}\n", st.domain()));
        out.push_str(&format!("  state: {}\n", q(&st.state)));
        let mut area = None;
        sm.store().read(&mut |ix| {
            let r = ix.registries();
            area = r
                .area_of(id)
                .and_then(|a| r.area_name(a))
                .map(str::to_string)
        });
        if let Some(a) = area {
            out.push_str(&format!("  areas: {a}\n"));
        }
        let attrs: Vec<_> = ha_fetchers::jinja::EXPOSED_ATTRIBUTES
            .iter()
            .filter_map(|k| Some((k, json["attributes"].get(*k)?)))
            .collect();
        if !attrs.is_empty() {
            out.push_str("  attributes:\n");
            for (k, v) in attrs {
                // HA turns ints into strings, which YAML then quotes.
                let v = match v {
                    Value::String(s) => q(s),
                    Value::Number(n) if n.is_i64() => format!("'{n}'"),
                    other => other.to_string(),
                };
                out.push_str(&format!("    {k}: {v}\n"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn home_status_is_no_larger_than_home_assistants_yaml() {
    let (r, src) = renderer().await;
    let t = shipped()
        .into_iter()
        .find(|t| t.name == "home_status")
        .expect("home_status ships");
    assert!(!t.description.is_empty());
    let out = r
        .render_source(&t.name, &t.body, RenderOptions::default())
        .await
        .unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let used: std::collections::BTreeSet<String> = src.ran.lock().iter().cloned().collect();
    assert!(used.len() >= 6, "{used:?}");
    for needle in [
        "Bed Light (Bedroom): on, brightness 180",
        "Hvac (Kitchen): cool",
        "Outside Temperature (Living Room): 15.6 °C",
        "Switches on: none",
        "Last hour:\n- 18:02 Front Door opened\n- and 2 more",
        "Lights: on 6",
    ] {
        assert!(
            out.text.contains(needle),
            "{needle} missing from:\n{}",
            out.text
        );
    }
    // The same entities as HA would list them: lights on, climate, outside sensors, attention.
    let sm = home().await;
    let mut ids: Vec<String> = Vec::new();
    for s in fixture_states() {
        let id = s["entity_id"].as_str().unwrap().to_string();
        let keep = (domain(&s) == "light" && s["state"] == "on")
            || domain(&s) == "climate"
            || id.starts_with("sensor.outside_")
            || s["state"] == "unavailable";
        if keep {
            ids.push(id);
        }
    }
    let yaml = ha_yaml(&sm, &ids);
    println!(
        "--- ours ({} chars)\n{}\n--- HA YAML ({} chars)\n{yaml}",
        out.text.chars().count(),
        out.text,
        yaml.chars().count()
    );
    assert!(
        out.text.chars().count() <= yaml.chars().count(),
        "home_status is {} chars, HA's YAML {}",
        out.text.chars().count(),
        yaml.chars().count()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn home_status_lists_unavailable_entities_under_needs_attention() {
    let t = shipped()
        .into_iter()
        .find(|t| t.name == "home_status")
        .expect("home_status ships");
    let quiet = Renderer::new(home().await, source());
    let out = Arc::new(quiet)
        .render_source(&t.name, &t.body, RenderOptions::default())
        .await
        .unwrap();
    assert!(!out.text.contains("Needs attention"), "{}", out.text);

    let src = source_with(json!({"unavailable": ["light.bed_light", "sensor.outside_humidity"]}));
    let r = Arc::new(Renderer::new(home().await, src));
    let out = r
        .render_source(&t.name, &t.body, RenderOptions::default())
        .await
        .unwrap();
    assert!(
        out.text.contains(
            "Needs attention:\n- Bed Light (Bedroom): on, brightness 180\n- Outside Humidity"
        ),
        "{}",
        out.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_syntax_and_unknown_fetchers() {
    let (r, _) = renderer().await;
    let t = |name: &str, body: &str| PromptTemplate {
        name: name.into(),
        body: body.into(),
        description: String::new(),
        enabled: true,
        updated_at: None,
    };
    let check = |templates: Vec<PromptTemplate>| Prompts::new(r.clone(), templates).check();
    let problems = check(vec![
        t(
            "good",
            "{{ ha_lights_on | compact }} {{ states('light.x') }}",
        ),
        t("broken", "{% if %}"),
        t("typo", "{{ ha_lihgts_on }} {{ fetch('ha_nope') }}"),
        t("Bad-Name", "x"),
    ]);
    let got: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.name.as_str(), p.field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("Bad-Name", "name"),
            ("broken", "body"),
            ("typo", "body"),
            ("typo", "body"),
        ]
    );
    assert!(
        problems[1].reason.contains("(line 1, column"),
        "{}",
        problems[1]
    );
    assert!(problems[2].reason.contains("ha_lihgts_on"));
    assert!(problems[3].reason.contains("ha_nope"));
    assert!(check(shipped()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_survive_in_redis() {
    use ha_fetchers::state::RedisStore;
    // Dropping it deletes the test's keys.
    let test = TestStore::new(Kind::Redis).await;
    let (store, prefix) = (test.redis.as_ref().unwrap(), test.prefix.as_ref().unwrap());
    for (kind, raw) in registries() {
        store.set_registry(kind, raw.into()).await.unwrap();
    }
    assert!(store
        .set_registry(RegistryKind::Area, "{\"not\":\"a list\"}".into())
        .await
        .is_err());
    // A new process reads the registries back from Redis.
    let again = RedisStore::connect(&redis_url(), prefix).await.unwrap();
    let mut area = None;
    again.read(&mut |ix| {
        area = ix
            .registries()
            .area_of("light.bed_light")
            .map(str::to_string)
    });
    assert_eq!(area.as_deref(), Some("bedroom"));
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: String = redis::AsyncCommands::get(&mut conn, format!("{prefix}registry:area"))
        .await
        .unwrap();
    assert!(raw.contains("living_room"));
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn seed_writes_files_and_keeps_enabled(pool: sqlx::MySqlPool) {
    use ha_fetchers::prompt::{load_db, seed};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a_prompt.j2"), "{# First. #}\nhello").unwrap();
    assert_eq!(seed(&pool, dir.path()).await.unwrap(), 1);
    sqlx::query("UPDATE prompt_templates SET enabled = FALSE WHERE name = 'a_prompt'")
        .execute(&pool)
        .await
        .unwrap();
    std::fs::write(dir.path().join("a_prompt.j2"), "{# Second. #}\nhi").unwrap();
    assert_eq!(seed(&pool, dir.path()).await.unwrap(), 1);
    let rows = load_db(&pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].body, "{# Second. #}\nhi");
    assert_eq!(rows[0].description, "Second.");
    assert!(!rows[0].enabled && rows[0].updated_at.is_some());
}

/// The shipped area variant of `ha_lights_on`, a row over the `entities` source.
#[tokio::test]
async fn lights_on_in_an_area_from_the_shipped_row() {
    use ha_fetchers::fetchers::{files, FetchRequest, Registry, Runner};
    let states = home().await;
    let (rows, problems) = files::load_dir(std::path::Path::new("fetchers")).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let engine = Runner::new(Registry::from_rows(rows), states);
    let run = |area: &str| {
        let engine = engine.clone();
        let req = FetchRequest::new("ha_lights_on_in_area").param("area", json!(area));
        async move { engine.run_many(vec![req]).await.remove(0).result }
    };
    // The kitchen lights entity is in the kitchen itself; the bed light through its device.
    let kitchen = run("Kitchen").await.unwrap();
    let ids: Vec<&str> = kitchen["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["light.kitchen_lights"]);
    let bedroom = run("bedroom").await.unwrap();
    assert_eq!(
        bedroom["entities"][0]["entity_id"], "light.bed_light",
        "{bedroom}"
    );
    assert_eq!(bedroom["count"], 1, "{bedroom}");
    let err = run("attic").await.unwrap_err();
    assert_eq!(err.code(), "bad_params");
    let missing = engine
        .run_many(vec![FetchRequest::new("ha_lights_on_in_area")])
        .await
        .remove(0)
        .result;
    assert_eq!(missing.unwrap_err().code(), "bad_params");
}

/// Warm renders reuse parsed attributes and converted fetcher results; a state
/// change must still show in the very next render.
#[tokio::test(flavor = "multi_thread")]
async fn warm_renders_follow_state_changes() {
    use ha_fetchers::fetchers::{files, Registry, Runner};
    let (rows, problems) = files::load_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fetchers")
            .as_path(),
    )
    .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let sm = home().await;
    let engine = Arc::new(Runner::new(Registry::from_rows(rows), sm.clone()));
    let r = Arc::new(Renderer::new(sm.clone(), engine));
    let body = "{{ ha_lights_on | compact }}";
    let first = r
        .render_source("t", body, RenderOptions::default())
        .await
        .unwrap();
    let again = r
        .render_source("t", body, RenderOptions::default())
        .await
        .unwrap();
    assert_eq!(first.text, again.text);
    assert!(
        first
            .text
            .contains("Bed Light (Bedroom): on, brightness 180"),
        "{}",
        first.text
    );
    let mut bed: Value =
        serde_json::from_str(&sm.get("light.bed_light").await.unwrap().raw).unwrap();
    bed["attributes"]["brightness"] = json!(42);
    bed["last_updated"] = json!("2030-01-01T00:00:00+00:00");
    sm.store()
        .upsert(vec![EntityState::from_raw(&bed.to_string()).unwrap()])
        .await
        .unwrap();
    let after = r
        .render_source("t", body, RenderOptions::default())
        .await
        .unwrap();
    assert!(
        after
            .text
            .contains("Bed Light (Bedroom): on, brightness 42"),
        "{}",
        after.text
    );
}
