//! Scoped tokens against a simulated HA: what each door shows a scope, and
//! the hostile suite — path tricks, `*` in every filter, templates that walk
//! `states`, the event stream, a revoked token, one scope's token replayed
//! against another's cached answers. None reaches an entity outside its scope.

use std::collections::BTreeSet;
use std::time::Duration;

use ha_fetchers::state::{Entities, ScopeSpec};
use ha_fetchers::tokens::{self, Backend, Stored};
use serde_json::{json, Value};

use crate::helpers::{Harness, Kind, TestStore};

const ADMIN: &str = "admin-token-for-scope-tests";

/// The entities the `bed` token sees.
const BED: &[&str] = &["light.bed_light", "switch.ac", "switch.decorative_lights"];

struct Scoped {
    h: Harness,
    /// `light.bed_light` and the switches, `ha_*` fetchers, `home_status` only.
    bed: String,
    /// What HA exposes to Assist.
    assist: String,
    /// The tokens file, to revoke from.
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn create(file: &std::path::Path, name: &str, spec: ScopeSpec) -> String {
    let (token, hash) = tokens::mint();
    let row = Stored {
        name: name.into(),
        hash,
        scope: spec,
        created_at: String::new(),
    };
    Backend::File(file.to_path_buf()).create(row).await.unwrap();
    token
}

async fn start() -> Scoped {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let bed = create(
        &file,
        "bed",
        ScopeSpec {
            entities: Entities::Only(vec!["light.bed_light".into(), "domain:switch".into()]),
            fetchers: vec!["ha_*".into()],
            prompts: vec!["home_status".into()],
        },
    )
    .await;
    let assist = create(
        &file,
        "assist",
        ScopeSpec {
            entities: Entities::Assist,
            fetchers: vec![],
            prompts: vec![],
        },
    )
    .await;
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::TOKEN)
        .await
        .unwrap();
    let mut settings = crate::helpers::settings(&sim);
    settings.api_token = Some(ADMIN.to_string().into());
    settings.tokens_file = file.clone();
    settings.reload_interval = Duration::from_millis(200);
    let h = Harness::start_with(sim, settings, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    crate::helpers::wait_for("the exposure list", || {
        h.engine.states().exposed_ids().is_some()
    })
    .await;
    Scoped {
        h,
        bed,
        assist,
        file,
        _dir: dir,
    }
}

impl Scoped {
    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .h
            .http
            .get(format!("{}{path}", self.h.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .h
            .http
            .post(format!("{}{path}", self.h.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn render(&self, token: &str, body: &str) -> String {
        let (status, v) = self
            .post(token, "/api/v1/render", json!({"body": body}))
            .await;
        assert_eq!(status, 200, "{v}");
        v["text"].as_str().unwrap().to_string()
    }
}

fn ids(v: &Value) -> BTreeSet<String> {
    let list = v.as_array().or_else(|| v["entities"].as_array()).unwrap();
    list.iter()
        .map(|s| s["entity_id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn each_door_shows_a_scope_only_its_entities() {
    let s = start().await;
    let (_, all) = s.get(ADMIN, "/api/v1/states").await;
    assert!(ids(&all).len() > 100, "the admin sees everything");
    let (_, mine) = s.get(&s.bed, "/api/v1/states").await;
    assert_eq!(ids(&mine), set(BED));
    let exposed: BTreeSet<String> =
        s.h.engine
            .states()
            .exposed_ids()
            .unwrap()
            .into_iter()
            .collect();
    let (_, theirs) = s.get(&s.assist, "/api/v1/states").await;
    assert_eq!(
        ids(&theirs),
        exposed,
        "the assist scope sees what HA exposes"
    );
    assert!(!exposed.contains("sun.sun") && exposed.contains("light.bed_light"));

    // One, domains, summary.
    let (status, _) = s.get(&s.bed, "/api/v1/states/light.bed_light").await;
    assert_eq!(status, 200);
    let (hidden, body_hidden) = s.get(&s.bed, "/api/v1/states/light.kitchen_lights").await;
    let (absent, body_absent) = s.get(&s.bed, "/api/v1/states/light.not_in_the_house").await;
    assert_eq!((hidden, absent), (404, 404));
    assert_eq!(body_hidden["error"]["code"], body_absent["error"]["code"]);
    let (_, domains) = s.get(&s.bed, "/api/v1/domains").await;
    let names: Vec<&str> = domains
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["light", "switch"]);
    let (_, summary) = s.get(&s.bed, "/api/v1/summary").await;
    assert_eq!(summary["entity_count"], 3);

    // Fetchers: results, the list, one outside the scope's names.
    let (_, v) = s
        .post(
            &s.bed,
            "/api/v1/fetchers/ha_search_pattern/run",
            json!({"pattern": "*"}),
        )
        .await;
    assert_eq!(ids(&v["result"]), set(BED));
    let (status, _) = s
        .post(&s.bed, "/api/v1/fetchers/light_entities/run", json!({}))
        .await;
    assert_eq!(
        status, 404,
        "a fetcher outside the scope's names does not exist for it"
    );
    let (_, list) = s.get(&s.bed, "/api/v1/fetchers").await;
    assert!(list["fetchers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["name"].as_str().unwrap().starts_with("ha_")));
    let (status, v) = s
        .post(
            &s.bed,
            "/api/v1/fetchers/ha_specific_entity/run",
            json!({"entity_id": "sensor.outside_temperature"}),
        )
        .await;
    // Exactly what an entity HA does not have gets.
    let (absent, w) = s
        .post(
            &s.bed,
            "/api/v1/fetchers/ha_specific_entity/run",
            json!({"entity_id": "sensor.not_in_the_house"}),
        )
        .await;
    assert_eq!(status, absent, "{v} {w}");
    assert_eq!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .replace("outside_temperature", "X"),
        w["error"]["message"]
            .as_str()
            .unwrap()
            .replace("not_in_the_house", "X")
    );
    let (_, v) = s
        .post(&s.bed, "/api/v1/fetchers/ha_device_status/run", json!({}))
        .await;
    assert_eq!(v["result"]["entity_count"], 3, "{v}");

    // Templates.
    let walk = "{{ states | map(attribute='entity_id') | join(',') }}";
    assert_eq!(s.render(&s.bed, walk).await, BED.join(","));
    let expand =
        "{{ expand(states, 'light.kitchen_lights') | map(attribute='entity_id') | sort | join(',') }}";
    assert_eq!(s.render(&s.bed, expand).await, BED.join(","));
    assert_eq!(
        s.render(&s.bed, "{{ states('sensor.outside_temperature') }}")
            .await,
        "unknown"
    );
    assert_eq!(
        s.render(&s.bed, "{{ states.sensor | list | count }}").await,
        "0"
    );
    assert_eq!(
        s.render(&s.bed, "{{ is_state('light.kitchen_lights', 'on') }}")
            .await,
        "False"
    );
    assert_eq!(
        s.render(
            &s.bed,
            "{{ state_attr('light.kitchen_lights', 'brightness') }}"
        )
        .await,
        "None"
    );
    assert_eq!(
        s.render(&s.bed, "{{ area_name('light.kitchen_lights') }}")
            .await,
        "None"
    );
    let fetched = "{{ fetch('ha_search_pattern', pattern='*').entities | map(attribute='entity_id') | join(',') }}";
    assert_eq!(s.render(&s.bed, fetched).await, BED.join(","));
    let (status, _) = s
        .post(&s.bed, "/api/v1/prompts/home_status/render", json!({}))
        .await;
    assert_eq!(status, 200);
    s.h.finish().await;
}

#[tokio::test]
async fn hostile_requests_reach_nothing_outside_the_scope() {
    let s = start().await;
    // Path tricks: every spelling of a hidden entity is a 404 or a 400.
    for path in [
        "/api/v1/states/light.kitchen_lights",
        "/api/v1/states/light%2Ekitchen_lights",
        "/api/v1/states/LIGHT.KITCHEN_LIGHTS",
        "/api/v1/states/light.bed_light/../light.kitchen_lights",
        "/api/v1/states/light.kitchen_lights%00",
        "/api/v1/states/./light.kitchen_lights",
        "//api/v1/states/light.kitchen_lights",
    ] {
        let (status, v) = s.get(&s.bed, path).await;
        assert!(matches!(status, 400 | 403 | 404), "{path}: {status} {v}");
        assert!(!v.to_string().contains("\"state\""), "{path}: {v}");
    }
    // `*` in every filter.
    for q in [
        "?pattern=*",
        "?domain=light",
        "?domain=sensor",
        "?state=on",
        "?pattern=*kitchen*",
        "?pattern=light.*&state=on",
    ] {
        let (_, v) = s.get(&s.bed, &format!("/api/v1/states{q}")).await;
        assert!(ids(&v).is_subset(&set(BED)), "{q}: {v}");
    }
    for (name, params) in [
        ("ha_search_pattern", json!({"pattern": "*"})),
        ("ha_domain_lights", json!({})),
        ("ha_lights_on", json!({})),
        ("ha_history_today", json!({"pattern": "*", "since": "1h"})),
        (
            "ha_history_today",
            json!({"entity_id": "light.kitchen_lights", "since": "1h"}),
        ),
        ("ha_logbook_recent", json!({})),
    ] {
        let (_, v) = s
            .post(
                &s.bed,
                &format!("/api/v1/fetchers/{name}/run"),
                params.clone(),
            )
            .await;
        let text = v.to_string();
        // An error may echo what the caller sent; nothing else may show.
        let asked = params.to_string();
        for hidden in [
            "kitchen_lights",
            "outside_temperature",
            "sun.sun",
            "ceiling_lights",
        ] {
            assert!(
                asked.contains(hidden) || !text.contains(hidden),
                "{name} {params}: {text}"
            );
        }
    }
    // Templates that iterate or reach around.
    for body in [
        "{% for s in states %}{{ s.entity_id }} {% endfor %}",
        "{% for d in ['light','sensor','sun'] %}{{ states[d] | list | count }} {% endfor %}",
        "{{ states.light.kitchen_lights }}",
        "{{ states['light']['kitchen_lights'] }}",
        "{{ area_entities('Kitchen') }}{{ area_entities('kitchen') }}",
        "{{ fetch('ha_specific_entity', entity_id='light.kitchen_lights') }}",
    ] {
        // Whatever a template names outside the scope renders as a name
        // HA does not have would.
        let text = s.render(&s.bed, body).await;
        let absent = s
            .render(&s.bed, &body.replace("kitchen_lights", "not_in_the_house"))
            .await
            .replace("not_in_the_house", "kitchen_lights");
        assert_eq!(text, absent, "{body}");
        assert!(!text.contains("Kitchen"), "{body}: {text}");
    }
    // A fetcher outside the scope's names is unknown to its templates too.
    let (status, v) = s
        .post(
            &s.bed,
            "/api/v1/render",
            json!({"body": "{{ fetch('light_entities') }}"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown fetcher light_entities"));
    // Doors the scope does not reach.
    for path in ["/metrics", "/api/health/redis"] {
        let (status, _) = s.get(&s.bed, path).await;
        assert_eq!(status, 403, "{path}");
    }
    s.h.finish().await;
}

#[tokio::test]
async fn the_event_stream_carries_only_the_scopes_entities() {
    let s = start().await;
    let r =
        s.h.http
            .get(format!(
                "{}/api/v1/events?entity_id=*&domain=light&domain=sensor",
                s.h.base
            ))
            .bearer_auth(&s.bed)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let mut r = r;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.h.sim.set("light.kitchen_lights", "off");
    s.h.sim.set("sensor.outside_temperature", "3.5");
    s.h.sim.set("light.bed_light", "off");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("light.bed_light") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), r.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("light.bed_light"), "{seen}");
    assert!(
        !seen.contains("kitchen_lights") && !seen.contains("outside_temperature"),
        "{seen}"
    );
    s.h.finish().await;
}

#[tokio::test]
async fn a_revoked_token_stops_and_scopes_never_share_cached_answers() {
    let s = start().await;
    // The same fetcher and params, alternately through two scopes: each
    // answer is its own scope's, cached or not.
    for _ in 0..3 {
        for (token, want) in [(&s.bed, BED.len()), (&s.assist, 0)] {
            let (_, v) = s
                .post(token, "/api/v1/fetchers/ha_domain_lights/run", json!({}))
                .await;
            let n = v["result"]["count"].as_u64().unwrap() as usize;
            if want > 0 {
                assert_eq!(n, 1, "bed sees one light: {v}");
            } else {
                assert!(n > 1, "assist sees every exposed light: {v}");
            }
        }
    }
    Backend::File(s.file.clone()).revoke("bed").await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let (status, _) = s.get(&s.bed, "/api/v1/states").await;
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "revoked within RELOAD_INTERVAL (200 ms)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = s.get(&s.assist, "/api/v1/states").await;
    assert_eq!(status, 200, "the other token still works");
    let (status, _) = s.get("hf_made_up_token", "/api/v1/states").await;
    assert_eq!(status, 401);
    s.h.finish().await;
}

async fn mcp(
    s: &Scoped,
    token: &str,
    session: Option<&str>,
    method: &str,
    params: Value,
) -> (Value, Option<String>) {
    crate::helpers::mcp::call(&s.h.http, &s.h.base, token, session, method, params).await
}

async fn mcp_session(s: &Scoped, token: &str) -> String {
    crate::helpers::mcp::open(&s.h.http, &s.h.base, token).await
}

#[tokio::test]
async fn mcp_answers_a_scoped_token_within_its_scope() {
    let s = start().await;
    let session = mcp_session(&s, &s.bed).await;
    let bed = |method: &'static str, params: Value| mcp(&s, &s.bed, Some(&session), method, params);
    let (v, _) = bed("tools/list", json!({})).await;
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"live_context") && names.contains(&"ha_lights_on"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"light_entities"),
        "a fetcher outside its names is not listed: {names:?}"
    );
    let (v, _) = bed(
        "tools/call",
        json!({"name": "live_context", "arguments": {}}),
    )
    .await;
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("light.bed_light") && text.contains("switch.ac"),
        "{text}"
    );
    for hidden in ["kitchen_lights", "sensor.", "sun.sun"] {
        assert!(!text.contains(hidden), "{hidden}: {text}");
    }
    let (v, _) = bed(
        "tools/call",
        json!({"name": "search_entities", "arguments": {"pattern": "*"}}),
    )
    .await;
    assert!(!v.to_string().contains("kitchen_lights"), "{v}");
    let (v, _) = bed(
        "tools/call",
        json!({"name": "get_entity", "arguments": {"entity_id": "light.kitchen_lights"}}),
    )
    .await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    let (v, _) = bed(
        "resources/read",
        json!({"uri": "ha://entity/light.kitchen_lights"}),
    )
    .await;
    assert!(v["error"].is_object(), "{v}");
    let (v, _) = bed("resources/read", json!({"uri": "ha://domain/light"})).await;
    assert!(!v.to_string().contains("kitchen_lights"), "{v}");
    let (v, _) = bed(
        "resources/subscribe",
        json!({"uri": "ha://entity/light.kitchen_lights"}),
    )
    .await;
    assert!(
        v["error"].is_object(),
        "a subscription outside the scope is refused: {v}"
    );
    let (v, _) = bed(
        "resources/subscribe",
        json!({"uri": "ha://entity/light.bed_light"}),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    let (v, _) = bed("prompts/list", json!({})).await;
    let prompts: Vec<&str> = v["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, ["home_status"]);
    // Another token replaying this session is refused, the admin's too.
    for other in [s.assist.as_str(), ADMIN] {
        let (v, _) = mcp(&s, other, Some(&session), "tools/list", json!({})).await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("another token"),
            "{v}"
        );
    }
    s.h.finish().await;
}

/// What a scoped subscriber hears: a change of an entity it sees, and not
/// one of an entity outside its scope, though both are lights and the
/// subscription is to the whole domain (or a fetcher that reads it).
#[tokio::test]
async fn a_scoped_subscriber_hears_nothing_of_entities_outside_its_scope() {
    use rmcp::model::SubscribeRequestParams;
    let s = start().await;
    let (c, mut heard) = crate::helpers::mcp::connect(&s.h.base, &s.bed).await;
    for uri in ["ha://domain/light", "ha://fetcher/ha_lights_on"] {
        #[allow(deprecated)]
        c.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    }
    // Past the first look, which only takes the fetcher's baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The other state than the one held.
    let flip = |id: &str| match &*s.h.engine.states().cached(id).unwrap().state {
        "on" => "off",
        _ => "on",
    };
    let flip_kitchen = flip("light.kitchen_lights");
    s.h.sim.set("light.kitchen_lights", flip_kitchen);
    s.h.wait_state("light.kitchen_lights", flip_kitchen).await;
    let quiet = tokio::time::timeout(Duration::from_millis(1500), heard.recv()).await;
    assert!(
        quiet.is_err(),
        "a change outside the scope is not news: {quiet:?}"
    );
    s.h.sim.set("light.bed_light", flip("light.bed_light"));
    let mut uris = BTreeSet::new();
    while uris.len() < 2 {
        let uri = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .expect("a change inside the scope is heard within 5 s")
            .unwrap();
        uris.insert(uri);
    }
    assert_eq!(
        uris,
        set(&["ha://domain/light", "ha://fetcher/ha_lights_on"])
    );
    c.cancel().await.unwrap();
    s.h.finish().await;
}

/// The house's logbook through a scope: its entities' entries only, and
/// none of no entity (their words may name anything).
#[tokio::test]
async fn a_scoped_logbook_has_only_the_scopes_entries() {
    let s = start().await;
    s.h.sim.set("light.kitchen_lights", "off");
    s.h.sim.set("light.bed_light", "off");
    s.h.wait_state("light.bed_light", "off").await;
    let run = |token: &str| {
        let token = token.to_string();
        let s = &s;
        async move {
            let (status, v) = s
                .post(&token, "/api/v1/fetchers/ha_logbook_recent/run", json!({}))
                .await;
            assert_eq!(status, 200, "{v}");
            v["result"].to_string()
        }
    };
    let all = run(ADMIN).await;
    assert!(
        all.contains("Home Assistant started") && all.contains("Kitchen"),
        "{all}"
    );
    let bed = run(&s.bed).await;
    assert!(bed.contains("light.bed_light"), "{bed}");
    for hidden in ["Home Assistant", "kitchen"] {
        assert!(!bed.contains(hidden), "{hidden}: {bed}");
    }
    s.h.finish().await;
}

/// What `r` sends until it has sent `until` (then a little more, up to
/// `within`), or `within` has passed.
async fn read_for(r: &mut reqwest::Response, within: Duration, until: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, r.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
        if seen.contains(until) && seen.contains("event: reload") {
            break;
        }
    }
    seen
}

/// The tool and prompt lists are news to a session only when what it may
/// use of them changed: a fetcher or prompt outside a scope is added, and
/// the admin hears of it while the scoped session hears nothing.
#[sqlx::test(migrations = "mysql/schemas")]
async fn a_scoped_session_hears_only_of_lists_it_may_use(pool: sqlx::MySqlPool) {
    let spec = ScopeSpec {
        entities: Entities::Only(vec!["domain:light".into()]),
        fetchers: vec!["ha_*".into()],
        prompts: vec!["home_status".into()],
    };
    let (token, hash) = tokens::mint();
    let row = Stored {
        name: "bed".into(),
        hash,
        scope: spec,
        created_at: String::new(),
    };
    Backend::Sql(pool.clone()).create(row).await.unwrap();
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::TOKEN)
        .await
        .unwrap();
    let mut settings = crate::helpers::settings(&sim);
    settings.api_token = Some(ADMIN.to_string().into());
    settings.database_url = Some(crate::helpers::services::mysql_url_of(&pool).into());
    settings.reload_interval = Duration::from_millis(200);
    let h = Harness::start_with(sim, settings, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    let (admin, mut admin_heard) = crate::helpers::mcp::connect(&h.base, ADMIN).await;
    let (bed, mut bed_heard) = crate::helpers::mcp::connect(&h.base, &token).await;
    let events = |token: &str| {
        h.http
            .get(format!("{}/api/v1/events", h.base))
            .bearer_auth(token)
            .send()
    };
    let mut admin_events = events(ADMIN).await.unwrap();
    let mut bed_events = events(&token).await.unwrap();
    crate::helpers::fixtures::reminders_example(&pool).await;
    let broken =
        "INSERT INTO data_fetchers (name, source, params) VALUES ('secret_broken', 'nope', '{}')";
    sqlx::query(broken).execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO prompt_templates (name, body) VALUES ('private', 'secret')")
        .execute(&pool)
        .await
        .unwrap();
    let mut told = BTreeSet::new();
    while told.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), admin_heard.recv())
            .await
            .expect("the admin hears of both lists within 5 s")
            .unwrap();
        told.insert(n);
    }
    assert_eq!(told, set(&["prompts/list_changed", "tools/list_changed"]));
    // Past another reload: the scoped session has heard nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bed_heard.try_recv().ok(),
        None,
        "a list it cannot use changed"
    );
    // The event stream's `reload`: the admin's names the broken row; the
    // scoped one's counts and names only what the scope may use.
    let admin_saw = read_for(&mut admin_events, Duration::from_secs(5), "secret_broken").await;
    assert!(admin_saw.contains("secret_broken"), "{admin_saw}");
    let bed_saw = read_for(&mut bed_events, Duration::from_millis(500), "\n\n").await;
    assert!(bed_saw.contains("event: reload"), "{bed_saw}");
    for hidden in ["secret_broken", "reminders_due_today", "private"] {
        assert!(!bed_saw.contains(hidden), "{hidden}: {bed_saw}");
    }
    sqlx::query("INSERT INTO prompt_templates (name, body) VALUES ('home_status', 'home')")
        .execute(&pool)
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), bed_heard.recv())
        .await
        .expect("a prompt it may use is news within 5 s")
        .unwrap();
    assert_eq!(n, "prompts/list_changed");
    for c in [admin, bed] {
        c.cancel().await.unwrap();
    }
    h.finish().await;
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn tokens_live_in_mysql_as_hashes(pool: sqlx::MySqlPool) {
    let store = Backend::Sql(pool.clone());
    let (token, hash) = tokens::mint();
    let spec = ScopeSpec {
        entities: Entities::Only(vec!["domain:light".into()]),
        fetchers: vec![],
        prompts: vec![],
    };
    let row = |hash: String| Stored {
        name: "desk".into(),
        hash,
        scope: spec.clone(),
        created_at: String::new(),
    };
    store.create(row(hash.clone())).await.unwrap();
    let again = store.create(row(tokens::mint().1)).await.unwrap_err();
    assert!(again.to_string().contains("exists"), "{again}");
    let bad = Stored {
        name: "no spaces".into(),
        ..row(tokens::mint().1)
    };
    assert!(store.create(bad).await.is_err());
    let all = store.load().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].hash.as_str(), &all[0].scope),
        (hash.as_str(), &spec)
    );
    let (stored,): (String,) = sqlx::query_as("SELECT token_hash FROM api_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_ne!(stored, token, "only the hash is kept");
    let t = tokens::Tokens::default();
    t.replace(all);
    assert!(t.scope_of(&token).is_some());
    store.revoke("desk").await.unwrap();
    assert!(store.revoke("desk").await.is_err());
    t.replace(store.load().await.unwrap());
    assert!(t.scope_of(&token).is_none());
}

#[test]
fn the_token_command_prints_a_token_once_and_keeps_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ha-fetchers"))
            .arg("token")
            .args(args)
            .env("TOKENS_FILE", &file)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = run(&["create", "desk", "--scope", "assist", "--fetchers", "ha_*"]);
    assert!(ok, "{out}");
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("hf_"), "{out}");
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(!kept.contains(&token) && kept.contains(&ha_fetchers::tokens::hash(&token)));
    let (ok, out) = run(&["list"]);
    assert!(
        ok && out.contains("desk") && out.contains("entities exposed to Assist; fetchers ha_*"),
        "{out}"
    );
    assert!(!out.contains(&token));
    let (ok, out) = run(&["create", "desk", "--scope", "all"]);
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = run(&["create", "bad", "--scope", "light.*,area:"]);
    assert!(!ok && out.contains("area: names no area"), "{out}");
    let (ok, out) = run(&["create", "worse", "--scope", ","]);
    assert!(!ok && out.contains("--scope: entities"), "{out}");
    let (ok, _) = run(&["revoke", "desk"]);
    assert!(ok);
    let (ok, out) = run(&["revoke", "desk"]);
    assert!(!ok && out.contains("no token named"), "{out}");
}

#[tokio::test]
async fn a_console_login_with_a_scoped_token_sees_its_scope() {
    let s = start().await;
    let r =
        s.h.http
            .post(format!("{}/api/v1/session", s.h.base))
            .json(&json!({"token": s.bed}))
            .send()
            .await
            .unwrap();
    let cookie = crate::helpers::api::session_cookie(r.headers());
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["authenticated"], true);
    assert!(
        view["scope"].as_str().unwrap().contains("light.bed_light"),
        "{view}"
    );
    let get = |path: &str| {
        s.h.http
            .get(format!("{}{path}", s.h.base))
            .header("cookie", &cookie)
            .send()
    };
    let states: Value = get("/api/v1/states").await.unwrap().json().await.unwrap();
    assert_eq!(ids(&states), set(BED));
    let status: Value = get("/api/v1/status").await.unwrap().json().await.unwrap();
    assert_eq!(status["entities"], 3, "{status}");
    assert_eq!(status["websocket"]["entity_count"], 3, "{status}");
    // The house's event rate and snapshots are not the scope's to see.
    assert_eq!(status["events_per_second"], json!([]), "{status}");
    assert_eq!(status["resyncs"], json!([]), "{status}");
    assert_eq!(status["mysql"]["problems"], 0, "{status}");
    let fetchers = status["mysql"]["fetchers"].as_u64().unwrap();
    let (_, listed) = s.get(&s.bed, "/api/v1/fetchers").await;
    assert_eq!(
        fetchers as usize,
        listed["fetchers"].as_array().unwrap().len()
    );
    assert_eq!(get("/metrics").await.unwrap().status(), 403);
    let session: Value = get("/api/v1/session").await.unwrap().json().await.unwrap();
    assert!(session["scope"].is_string(), "{session}");
    // The admin's login shows no scope and sees the house.
    let r =
        s.h.http
            .post(format!("{}/api/v1/session", s.h.base))
            .json(&json!({"token": ADMIN}))
            .send()
            .await
            .unwrap();
    let view: Value = r.json().await.unwrap();
    assert!(
        view["scope"].is_null() && view["authenticated"] == true,
        "{view}"
    );
    s.h.finish().await;
}
