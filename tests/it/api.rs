//! The HTTP API in-process (`tower::ServiceExt::oneshot`), over the recorded demo house.

use axum::http::{Method, StatusCode};
use axum::Router;
use serde_json::Value;

use crate::helpers::api::{self as helpers, call, demo_app, login, post};

const API_TOKEN: &str = "api-secret";

async fn ids(app: &Router, uri: &str) -> Vec<String> {
    let (status, v) = call(app, Method::GET, uri, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["entity_id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn listing_filters() {
    let app = demo_app(None).await;
    assert_eq!(ids(&app, "/api/v1/states").await.len(), 108);
    let lights = ids(&app, "/api/v1/states?domain=light").await;
    assert_eq!(lights.len(), 6);
    assert!(lights.windows(2).all(|w| w[0] < w[1]), "sorted by id");
    assert_eq!(
        ids(&app, "/api/v1/states?domain=switch&state=off").await,
        ["switch.ac", "switch.decorative_lights"]
    );
    assert_eq!(
        ids(&app, "/api/v1/states?state=locked").await,
        ["lock.front_door", "lock.openable_lock"]
    );
    assert!(ids(&app, "/api/v1/states?domain=nothing").await.is_empty());
    // The listing serves HA's own bytes.
    let (_, one) = call(&app, Method::GET, "/api/v1/states/light.bed_light", None).await;
    assert_eq!(one["attributes"]["friendly_name"], "Bed Light");
}

#[tokio::test]
async fn q_is_a_case_insensitive_glob_over_id_and_name() {
    let app = demo_app(None).await;
    assert_eq!(
        ids(&app, "/api/v1/states?q=*KITCHEN*").await,
        [
            "cover.kitchen_window",
            "light.kitchen_lights",
            "lock.kitchen_door",
            "media_player.kitchen"
        ]
    );
    // Matches the friendly name ("Bed Light", "Bedroom") as well as the id.
    assert_eq!(
        ids(&app, "/api/v1/states?q=Bed*").await,
        ["light.bed_light", "media_player.bedroom"]
    );
    assert_eq!(
        ids(&app, "/api/v1/states?q=lock.?????_door").await,
        ["lock.front_door"]
    );
    assert_eq!(
        ids(&app, "/api/v1/states?domain=light&q=*office*").await,
        ["light.office_rgbw_lights"]
    );
    // Redis-glob syntax is plain data, not a character class.
    assert!(ids(&app, "/api/v1/states?q=light.[bk]*").await.is_empty());
    let (status, v) = call(&app, Method::GET, "/api/v1/states?q=", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request");
}

#[tokio::test]
async fn errors_are_json() {
    let app = demo_app(None).await;
    let (status, v) = call(&app, Method::GET, "/api/v1/states/light.nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");
    let (status, v) = call(&app, Method::GET, "/api/v1/states/NoDot", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request");
    let (status, v) = call(&app, Method::GET, "/api/v1/nothing/here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");
    let (status, v) = call(&app, Method::POST, "/api/v1/states", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "method_not_allowed");
    let (status, v) = call(&app, Method::DELETE, "/api/v1/states/light.bed_light", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "method_not_allowed");
}

#[tokio::test]
async fn domains_and_summary() {
    let app = demo_app(None).await;
    let (status, v) = call(&app, Method::GET, "/api/v1/domains", None).await;
    assert_eq!(status, StatusCode::OK);
    let lock = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "lock")
        .unwrap()
        .clone();
    assert_eq!(lock["count"], 4);
    assert_eq!(lock["states"]["locked"], 2);
    assert_eq!(lock["states"]["unlocked"], 2);
    let (status, v) = call(&app, Method::GET, "/api/v1/summary", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["entity_count"], 108);
    assert_eq!(v["store"], "memory");
}

#[tokio::test]
async fn bearer_token_guards_every_route_but_health() {
    let app = demo_app(Some(API_TOKEN)).await;
    let guarded = [
        "/api/v1/states",
        "/api/v1/states/light.bed_light",
        "/api/v1/domains",
        "/api/v1/summary",
        "/api/health/websocket",
        "/api/health/redis",
        "/api/v1/nothing/here",
    ];
    for uri in guarded {
        for bearer in [None, Some("wrong"), Some("api-secre"), Some("api-secretX")] {
            let (status, v) = call(&app, Method::GET, uri, bearer).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {bearer:?}");
            assert_error(&v, "unauthorized");
        }
        let (status, _) = call(&app, Method::GET, uri, Some(API_TOKEN)).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, _) = call(&app, Method::GET, "/api/v1/states", Some(API_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    // Health answers without a token (503 here: no Home Assistant is configured).
    let (status, v) = call(&app, Method::GET, "/api/health", None).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["status"], "degraded");
}

#[tokio::test]
async fn inline_render_previews_and_names_what_is_wrong() {
    let app = demo_app(None).await;
    let (status, v) = post(&app, "/api/v1/render", serde_json::json!({"body": "{{ states('light.bed_light') }}|{{ who }}", "variables": {"who": "me"}})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["text"], "on|me");
    assert_eq!(v["errors"], serde_json::json!([]));
    let (status, v) = post(
        &app,
        "/api/v1/render",
        serde_json::json!({"body": "{{ fetch('no_such_fetcher') }}"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_fetcher"),
        "{v}"
    );
    let (status, v) = post(
        &app,
        "/api/v1/render",
        serde_json::json!({"body": "{% for x in %}"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = post(&app, "/api/v1/render", serde_json::json!({"body": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("fuel"),
        "{v}"
    );
    let (status, v) = post(&app, "/api/v1/prompts/nope/render", serde_json::json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = call(&app, Method::GET, "/api/v1/prompts", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// The console's login: the token for an HttpOnly, SameSite=Strict cookie
/// that the API accepts like the bearer header, until logout.
#[tokio::test]
async fn a_console_login_is_a_cookie_the_api_accepts_until_logout() {
    use crate::helpers::api::{empty_app, request, send, send_json};
    use axum::http::header::SET_COOKIE;
    use http_body_util::BodyExt;
    let app = empty_app(Some("s3cret"));
    let (status, v) = send_json(&app, request(Method::GET, "/api/v1/session", None)).await;
    assert_eq!(status, StatusCode::OK, "open, so the page can ask");
    assert_eq!(
        v,
        serde_json::json!({"auth_required": true, "authenticated": false})
    );

    let resp = tower::ServiceExt::oneshot(app.clone(), login("wrong"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get(SET_COOKIE).is_none(),
        "no cookie for a wrong token"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["error"], "wrong token");

    let resp = tower::ServiceExt::oneshot(app.clone(), login("s3cret"))
        .await
        .unwrap();
    let cookie = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let pair = helpers::session_cookie(resp.headers());
    let with_cookie = |uri: &str, method: Method| helpers::with_cookie(method, uri, &pair);
    let (status, _) = send(&app, with_cookie("/api/v1/states", Method::GET)).await;
    assert_eq!(status, StatusCode::OK, "the cookie opens the API");
    let (status, _) = send(
        &app,
        request(Method::GET, "/api/v1/states?token=s3cret", None),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "never a token in a URL");

    let resp =
        tower::ServiceExt::oneshot(app.clone(), with_cookie("/api/v1/session", Method::DELETE))
            .await
            .unwrap();
    assert!(resp.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = send(&app, with_cookie("/api/v1/states", Method::GET)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");
}

/// DNS rebinding: a page on another site that points its own name at this
/// server reads nothing, on any route; loopback names and their pages do.
#[tokio::test]
async fn every_route_answers_only_the_allowed_host_names() {
    use crate::helpers::api::{request, send_json};
    let app = demo_app(None).await;
    let with = |host: &str, origin: Option<&str>| {
        let mut r = request(Method::GET, "/api/v1/states/lock.front_door", None);
        r.headers_mut().insert("host", host.parse().unwrap());
        if let Some(o) = origin {
            r.headers_mut().insert("origin", o.parse().unwrap());
        }
        r
    };
    let (status, v) = send_json(&app, with("127.0.0.1:8080", None)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = send_json(&app, with("localhost:8080", Some("http://localhost:5173"))).await;
    assert_eq!(status, StatusCode::OK);
    for (host, origin) in [
        ("attacker.example:8080", None),
        ("127.0.0.1:8080", Some("http://attacker.example")),
    ] {
        let (status, v) = send_json(&app, with(host, origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host} {origin:?}: {v}");
        assert_error(&v, "forbidden");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ALLOWED_HOSTS"),
            "{v}"
        );
    }
    let mut health = request(Method::GET, "/api/health", None);
    health
        .headers_mut()
        .insert("host", "attacker.example".parse().unwrap());
    assert_eq!(send_json(&app, health).await.0, StatusCode::FORBIDDEN);
}

/// Logout ends the event streams opened with that cookie, and wrong tokens
/// are limited per address: the sixth in a minute is 429 with `Retry-After`.
#[tokio::test]
async fn logout_ends_the_cookies_streams_and_guesses_are_limited() {
    use crate::helpers::api::empty_app;
    use axum::http::header::RETRY_AFTER;
    use http_body_util::BodyExt;
    let app = empty_app(Some("s3cret"));
    let resp = tower::ServiceExt::oneshot(app.clone(), login("s3cret"))
        .await
        .unwrap();
    let cookie = helpers::session_cookie(resp.headers());
    let with_cookie = |uri: &str, method: Method| helpers::with_cookie(method, uri, &cookie);
    let stream =
        tower::ServiceExt::oneshot(app.clone(), with_cookie("/api/v1/events", Method::GET))
            .await
            .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| d.starts_with(b"retry:")));
    let resp =
        tower::ServiceExt::oneshot(app.clone(), with_cookie("/api/v1/session", Method::DELETE))
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let end = tokio::time::timeout(std::time::Duration::from_secs(2), body.frame()).await;
    assert!(
        matches!(end, Ok(None)),
        "the stream ended at logout: {end:?}"
    );

    for _ in 0..5 {
        let resp = tower::ServiceExt::oneshot(app.clone(), login("guess"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = tower::ServiceExt::oneshot(app.clone(), login("guess"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = resp.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_error(&v, "too_many_requests");
    // The right token too waits out the window: a guesser cannot tell it found it.
    let resp = tower::ServiceExt::oneshot(app.clone(), login("s3cret"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}
