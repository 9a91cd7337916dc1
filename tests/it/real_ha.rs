//! Conformance against a real Home Assistant (started by `scripts/ha/start.sh`).
//!
//! Needs `HA_TEST_URL` and `HA_TEST_TOKEN`; `scripts/test.sh` sets them and
//! `HA_CONFORMANCE_REQUIRED=1`, so in CI a missing HA fails instead of skipping.

use std::time::Duration;

use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::real::{assert_mirrors, real_ha};
use crate::helpers::services::redis_url;

#[tokio::test]
async fn mirror_equals_real_home_assistant() {
    let Some(ha) = real_ha() else { return };
    let mut settings = Settings::embedded();
    settings.ha_url = Some(ha.url.parse().unwrap());
    settings.ha_token = Some(SecretString::from(ha.token.clone()));
    let prefix = format!("conformance-{}:", std::process::id());
    settings.redis_url = Some(SecretString::from(redis_url()));
    settings.redis_prefix = prefix.clone();
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

/// The same real HA behind a TLS-terminating proxy (`socat`, a CA the run
/// makes), as a reverse proxy or Nabu Casa puts it: the mirror over wss://
/// equals HA's `/api/states`, and the REST fallback goes through too.
#[tokio::test]
async fn mirror_through_a_tls_proxy_equals_real_home_assistant() {
    let Some(ha) = real_ha() else { return };
    let pki = crate::helpers::tls::pki();
    let ha_port = url::Url::parse(&ha.url).unwrap().port().unwrap();
    let proxy = crate::helpers::tls::proxy(&pki, ha_port);
    let https: url::Url = format!("https://127.0.0.1:{}", proxy.port).parse().unwrap();
    let mut settings = Settings::embedded();
    settings.ha_url = Some(https.clone());
    settings.ha_token = Some(SecretString::from(ha.token.clone()));
    settings.ha_ca_file = Some(pki.ca.clone());
    let app = Application::build(settings).await.unwrap();
    let port = app.port();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    assert_mirrors(&ha, port).await;
    let health: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/health/websocket"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["tls"], "verified", "{health}");

    let trust = ha_fetchers::tls::Trust {
        ca_file: Some(pki.ca.clone()),
        skip_verify: false,
    };
    let rest = ha_fetchers::ha::HaRest::with_tls(
        https,
        SecretString::from(ha.token.clone()),
        Duration::from_secs(10),
        Some(ha_fetchers::tls::client_config(&trust).unwrap()),
    );
    let through = rest.states().await.expect("REST through the proxy");
    assert!(through.iter().any(|s| &*s.entity_id == "light.bed_light"));
    stop.cancel();
    server.await.unwrap().unwrap();
}
