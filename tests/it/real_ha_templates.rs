//! Templates against a real Home Assistant (both versions in CI): the same
//! template through HA's own `POST /api/template` and through our
//! `/api/v1/render` over our mirror of that HA gives the same text. Groups
//! made with HA's `group.set` give `expand` something to expand.

use std::time::Duration;

use ha_fetchers::Application;
use serde_json::json;

use crate::helpers::api::json as json_of;
use crate::helpers::real::{real_ha, Ha};

/// What both render, chosen so Python's and our printing agree (joined
/// strings, numbers, booleans, `None`).
const TEMPLATES: &[&str] = &[
    "{{ expand('group.hf_outer') | map(attribute='entity_id') | join(',') }}",
    "{{ expand('group.hf_outer', states.light.office_rgbw_lights, ['zone.home', 'light.nope', 7]) | map(attribute='entity_id') | join(',') }}",
    // HA walks `states` in its state machine's order, the mirror by id
    // (docs/prompts.md): sorted, the two agree.
    "{{ states.light | expand | map(attribute='entity_id') | sort | join(',') }}",
    "{{ expand('zone.home') | map(attribute='entity_id') | join(',') }}",
    "{{ states.light | map(attribute='entity_id') | sort | join(',') }}",
    "{{ states('sun.sun') }} {{ states('light.nope') }} {{ is_state('sun.sun', states('sun.sun')) }} {{ is_state('light.nope', 'on') }}",
    "{{ state_attr('light.bed_light', 'friendly_name') }} {{ state_attr('light.bed_light', 'nope') }} {{ is_state_attr('light.bed_light', 'friendly_name', 'Bed Light') }}",
    "{{ has_value('sun.sun') }} {{ has_value('light.nope') }}",
    "{{ area_name('light.kitchen_lights') }} {{ area_id('light.kitchen_lights') }} {{ area_name('light.bed_light') }} {{ area_id('Living Room') }} {{ areas() | sort | join(',') }}",
    "{{ area_entities('Kitchen') | sort | join(',') }}|{{ area_entities('living_room') | sort | join(',') }}",
    "{{ int('3.7') }} {{ float('x', 1) }} {{ iif(true, 'y', 'n') }} {{ 'x' | float(0) }} {{ '42' | int }}",
    "{{ states.light.bed_light.name }} {{ states.light.bed_light.domain }} {{ states.light.bed_light.object_id }}",
    "{{ states.sun | list | count }} {{ states.light | selectattr('state', 'eq', 'on') | list | count }}",
];

/// HA's own rendering of `t`.
async fn theirs(ha: &Ha, t: &str) -> String {
    let r = ha
        .http
        .post(format!("{}/api/template", ha.url))
        .bearer_auth(&ha.token)
        .json(&json!({ "template": t }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "HA refused {t}: {}", r.status());
    r.text().await.unwrap()
}

async fn group(ha: &Ha, object_id: &str, entities: &[&str]) {
    let r = ha
        .http
        .post(format!("{}/api/services/group/set", ha.url))
        .bearer_auth(&ha.token)
        .json(&json!({ "object_id": object_id, "entities": entities }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "group.set: {}", r.status());
}

#[tokio::test]
async fn templates_render_as_home_assistants_own() {
    let Some(ha) = real_ha() else { return };
    group(
        &ha,
        "hf_inner",
        &["light.kitchen_lights", "light.bed_light"],
    )
    .await;
    group(
        &ha,
        "hf_outer",
        &["light.bed_light", "group.hf_inner", "light.not_there"],
    )
    .await;
    // An entity in an area, for the area functions (the demo leaves its
    // lights in none).
    let r = ha
        .ws(vec![json!({"type": "config/entity_registry/update",
                        "entity_id": "light.kitchen_lights", "area_id": "kitchen"})])
        .await;
    assert_eq!(r[0]["success"], true, "{r:?}");
    let app = Application::build(ha.settings()).await.unwrap();
    let (engine, port, stop) = (app.engine().clone(), app.port(), app.shutdown_token());
    tokio::spawn(app.run_until_stopped());
    crate::helpers::wait_for("the groups in the mirror", || {
        engine.states().cached("group.hf_outer").is_some()
            && engine.states().cached("group.hf_inner").is_some()
            && engine.states().area_names(&["light.kitchen_lights"])[0].is_some()
    })
    .await;
    let ours = |t: &str| {
        let body = json!({ "body": t });
        let url = format!("http://127.0.0.1:{port}/api/v1/render");
        async move {
            let v = json_of(reqwest::Client::new().post(url).json(&body)).await;
            v["text"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        }
    };
    for t in TEMPLATES {
        // Other tests change the shared HA's lights: a few tries, so a
        // change between the two renders is not a difference.
        let mut last = (String::new(), String::new());
        for _ in 0..5 {
            last = (theirs(&ha, t).await, ours(t).await);
            if last.0 == last.1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(last.1, last.0, "ours, then HA's, for {t}");
        eprintln!("{t} → {}", last.0);
    }
    stop.cancel();
}
