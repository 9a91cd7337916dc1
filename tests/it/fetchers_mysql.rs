//! The registry against real MariaDB, one fresh database per test
//! (`DATABASE_URL=mysql://root@127.0.0.1:3306`): migrations, seeding, hot
//! reload, bad rows, the worked template examples, and MySQL going down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha_fetchers::fetchers::{db, Backend, FetchRequest, Registry, Runner};
use ha_fetchers::state::StateManager;
use serde_json::json;
use sqlx::MySqlPool;
use tokio_util::sync::CancellationToken;

use crate::helpers::api::{app_over, call, post};
use crate::helpers::fixtures::{fixture_store, shipped_rows};
use crate::helpers::{wait_for, wait_for_async};

/// How often tests reload; production defaults to 2 s.
const TEST_RELOAD: Duration = Duration::from_millis(200);
/// The promise: a row change takes effect within this.
const WITHIN: Duration = Duration::from_secs(5);

async fn seeded(pool: &MySqlPool) {
    db::seed(pool, &shipped_rows()).await.unwrap();
}

async fn engine(pool: &MySqlPool) -> Runner {
    let reg = Arc::new(Registry::new(Backend::Mysql(pool.clone())));
    reg.reload().await.unwrap();
    Runner::new(reg, StateManager::new(fixture_store().await, None))
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn migrate_is_idempotent_and_seed_upserts(pool: MySqlPool) {
    assert_eq!(db::migrate(&pool).await.unwrap(), [1, 3, 4]);
    assert_eq!(db::migrate(&pool).await.unwrap(), [1, 3, 4]);
    seeded(&pool).await;
    // An admin disables a shipped fetcher; re-seeding keeps that choice.
    sqlx::query("UPDATE data_fetchers SET enabled = 0 WHERE name = 'ha_switches_on'")
        .execute(&pool)
        .await
        .unwrap();
    seeded(&pool).await;
    let rows = db::load_rows(&pool).await.unwrap();
    assert_eq!(rows.len(), shipped_rows().len());
    let e = engine(&pool).await;
    assert!(!e.exists("ha_switches_on"));
    assert!(e.exists("ha_lights_on"));
    assert!(e.problems().is_empty());
    let v = e
        .run(FetchRequest::new("ha_lights_on"))
        .await
        .result
        .unwrap();
    assert_eq!(v["count"], 2);
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn a_changed_applied_migration_is_an_error(pool: MySqlPool) {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mysql/schemas");
    for f in std::fs::read_dir(&src).unwrap() {
        let p = f.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.file_name().unwrap().to_string_lossy().starts_with("01_") {
            text.push_str("\n-- edited after it was applied\n");
        }
        std::fs::write(dir.path().join(p.file_name().unwrap()), text).unwrap();
    }
    let changed = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let err = changed.run(&pool).await.unwrap_err();
    assert!(
        matches!(err, sqlx::migrate::MigrateError::VersionMismatch(1)),
        "{err}"
    );
    assert!(err.to_string().contains("modified"), "{err}");
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn bad_rows_are_reported_and_skipped(pool: MySqlPool) {
    seeded(&pool).await;
    for (name, source, params, template) in [
        ("bad_json", "entities", "{domain: light", None),
        ("bad_source", "magic", "{}", None),
        ("bad_missing", "entity", "{}", None),
        ("bad_template", "template", "{}", Some("{% for x in %}")),
    ] {
        sqlx::query(
            "INSERT INTO data_fetchers (name, source, params, template) VALUES (?, ?, ?, ?)",
        )
        .bind(name)
        .bind(source)
        .bind(params)
        .bind(template)
        .execute(&pool)
        .await
        .unwrap();
    }
    let e = engine(&pool).await;
    assert_eq!(
        e.names().len(),
        shipped_rows().len(),
        "the good rows still load"
    );
    let got: Vec<(String, String)> = e
        .problems()
        .into_iter()
        .map(|p| (p.name, p.field))
        .collect();
    let want = [
        ("bad_json", "params"),
        ("bad_missing", "params"),
        ("bad_source", "source"),
        ("bad_template", "template"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    let line = e.problems()[1].to_string();
    assert_eq!(
        line,
        "fetcher bad_missing: field params: missing required param entity_id: give it in params or list it in required_params"
    );
    let out = e.run(FetchRequest::new("bad_json")).await;
    assert_eq!(out.result.unwrap_err().code(), "unknown_fetcher");
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn inserts_updates_and_disables_take_effect_without_restart(pool: MySqlPool) {
    seeded(&pool).await;
    let e = engine(&pool).await;
    let stop = CancellationToken::new();
    let task = e.registry().spawn_reloader(TEST_RELOAD, stop.clone());

    sqlx::query(
        "INSERT INTO data_fetchers (name, description, source, params) \
         VALUES ('ha_climate', 'All climate devices', 'entities', '{\"domain\": \"climate\"}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let t = Instant::now();
    wait_for("the insert", || e.exists("ha_climate")).await;
    assert!(t.elapsed() < WITHIN, "insert took {:?}", t.elapsed());
    let v = e.run(FetchRequest::new("ha_climate")).await.result.unwrap();
    assert_eq!(v["count"], 3);

    sqlx::query(
        "UPDATE data_fetchers SET params = '{\"domain\": \"climate\", \"state\": \"heat\"}' \
         WHERE name = 'ha_climate'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let t = Instant::now();
    wait_for_async("the update", || async {
        let v = e.run(FetchRequest::new("ha_climate")).await.result.unwrap();
        v["count"] == 1
    })
    .await;
    assert!(t.elapsed() < WITHIN, "update took {:?}", t.elapsed());

    sqlx::query("UPDATE data_fetchers SET enabled = 0 WHERE name = 'ha_climate'")
        .execute(&pool)
        .await
        .unwrap();
    let t = Instant::now();
    wait_for("the disable", || !e.exists("ha_climate")).await;
    assert!(t.elapsed() < WITHIN, "disable took {:?}", t.elapsed());
    stop.cancel();
    task.await.unwrap();
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn the_documented_template_examples_work(pool: MySqlPool) {
    let sql = include_str!("../../mysql/examples/template_fetchers.sql");
    let docs = [
        ("docs/fetchers.md", include_str!("../../docs/fetchers.md")),
        ("README.md", include_str!("../../README.md")),
    ];
    for stmt in sql.split(";\n").filter(|s| s.contains("INSERT INTO")) {
        let insert = &stmt[stmt.find("INSERT INTO").unwrap()..];
        for (name, doc) in docs {
            assert!(doc.contains(insert.trim()), "{name} lacks:\n{insert}");
        }
    }
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    // The README's plain listing example works as written too.
    let readme = docs[1].1;
    let start = readme
        .find("INSERT INTO data_fetchers (name, description, source, params, ttl_seconds")
        .unwrap();
    let covers = &readme[start..start + readme[start..].find(';').unwrap() + 1];
    sqlx::raw_sql(covers).execute(&pool).await.unwrap();
    let e = engine(&pool).await;
    assert!(e.problems().is_empty(), "{:?}", e.problems());
    let covers = e
        .run(FetchRequest::new("covers_open"))
        .await
        .result
        .unwrap();
    assert!(
        covers["entities"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "open"),
        "{covers}"
    );

    let v = e
        .run(FetchRequest::new("climate_below_target"))
        .await
        .result
        .unwrap();
    assert_eq!(
        *v,
        json!([{"entity_id": "climate.ecobee", "name": "Ecobee", "current": 18.5, "target": 20.0}])
    );
    let v = e
        .run(FetchRequest::new("batteries_low"))
        .await
        .result
        .unwrap();
    assert_eq!(
        *v,
        json!([{"entity_id": "sensor.phone_battery", "name": "Phone Battery", "level": 15.0}])
    );
    let v = e
        .run(FetchRequest::new("batteries_low").param("below", 90))
        .await
        .result
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn mysql_down_keeps_the_last_known_definitions(pool: MySqlPool) {
    seeded(&pool).await;
    let e = engine(&pool).await;
    let app = app_over(e.clone(), None);
    let (status, body) = call(&app, Method::GET, "/api/health/mysql", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], true);

    // MySQL goes away: the pool is closed, as when the server is gone.
    pool.close().await;
    assert!(e.registry().reload().await.is_err());
    assert_eq!(e.names().len(), shipped_rows().len());
    let v = e
        .run(FetchRequest::new("ha_lights_on"))
        .await
        .result
        .unwrap();
    assert_eq!(v["count"], 2);
    let (status, body) = call(&app, Method::GET, "/api/health/mysql", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(body["fetchers"], shipped_rows().len());
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn a_dropped_table_also_reads_as_down(pool: MySqlPool) {
    seeded(&pool).await;
    let e = engine(&pool).await;
    sqlx::query("DROP TABLE data_fetchers")
        .execute(&pool)
        .await
        .unwrap();
    assert!(e.registry().reload().await.is_err());
    assert!(e.exists("ha_lights_on"));
    let (status, body) = call(&app_over(e, None), Method::GET, "/api/health/mysql", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().unwrap().contains("data_fetchers"),
        "{body}"
    );
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn the_api_lists_describes_and_runs(pool: MySqlPool) {
    seeded(&pool).await;
    sqlx::query("INSERT INTO data_fetchers (name, source, params) VALUES ('broken', 'nope', '{}')")
        .execute(&pool)
        .await
        .unwrap();
    let app = app_over(engine(&pool).await, None);

    let (s, body) = call(&app, Method::GET, "/api/v1/fetchers", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["fetchers"].as_array().unwrap().len(),
        shipped_rows().len()
    );
    assert_eq!(body["problems"][0]["name"], "broken");
    assert_eq!(body["problems"][0]["field"], "source");

    let (s, body) = call(
        &app,
        Method::GET,
        "/api/v1/fetchers/ha_specific_entity",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["required_params"], json!(["entity_id"]));
    let (s, _) = call(&app, Method::GET, "/api/v1/fetchers/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = call(&app, Method::GET, "/api/v1/fetchers/broken", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("source"));

    let (s, body) = post(
        &app,
        "/api/v1/fetchers/ha_specific_entity/run",
        json!({"entity_id": "light.kitchen"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["state"], "on");
    assert_eq!(body["cached"], false);
    assert!(body["elapsed_ms"].is_number());
    let (_, body) = post(
        &app,
        "/api/v1/fetchers/ha_specific_entity/run",
        json!({"entity_id": "light.kitchen"}),
    )
    .await;
    assert_eq!(body["cached"], true);
    let (s, _) = post(&app, "/api/v1/fetchers/ha_specific_entity/run", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, body) = post(
        &app,
        "/api/v1/fetchers/run",
        json!({"fetchers": [
            {"name": "ha_lights_on"},
            {"name": "nope"},
            {"name": "ha_search_pattern", "params": {"pattern": "switch.*"}}
        ]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = body["results"].as_array().unwrap();
    assert_eq!(r[0]["result"]["count"], 2);
    assert_eq!(r[1]["error"]["code"], "unknown_fetcher");
    assert_eq!(r[2]["result"]["count"], 2);
}

/// Hostile names and params are data: bound, stored, reported, never executed.
#[sqlx::test(migrations = "mysql/schemas")]
async fn hostile_rows_are_data(pool: MySqlPool) {
    seeded(&pool).await;
    let hostile = [
        ("x'; DROP TABLE data_fetchers; --", "{}"),
        (
            "robert\"); DELETE FROM data_fetchers; --",
            "{\"domain\": \"light'; DROP TABLE x; --\"}",
        ),
        (
            "ok_name",
            "{\"pattern\": \"*'; SHUTDOWN; --\", \"domain\": \"\\u0000\"}",
        ),
    ];
    for (name, params) in hostile {
        sqlx::query("INSERT INTO data_fetchers (name, source, params) VALUES (?, 'entities', ?)")
            .bind(name)
            .bind(params)
            .execute(&pool)
            .await
            .unwrap();
    }
    let e = engine(&pool).await;
    // The table is intact and the shipped rows still load.
    assert_eq!(e.names().len(), shipped_rows().len() + 1);
    let bad: Vec<String> = e.problems().into_iter().map(|p| p.name).collect();
    assert!(bad.iter().any(|n| n.contains("DROP TABLE")), "{bad:?}");
    // The odd-but-valid row runs; its params are matched as plain text.
    let out = e.run(FetchRequest::new("ok_name")).await.result.unwrap();
    assert_eq!(out["count"], 0);
    // The API names the bad row and why, as data.
    let (status, body) = call(
        &app_over(e, None),
        Method::GET,
        "/api/v1/fetchers/x%27%3B%20DROP%20TABLE%20data_fetchers%3B%20--",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_fetchers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n as usize, shipped_rows().len() + 3);
}
