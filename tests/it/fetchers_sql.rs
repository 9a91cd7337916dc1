//! The `sql` source against real MariaDB, one fresh database per test: the
//! worked reminders example, MySQL types as JSON, params bound never spliced,
//! every refused statement kind, the read-only transaction on its own, the
//! server's time limit, the row and byte caps, `check` against the live
//! schema, and MySQL down for this fetcher only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_fetchers::fetchers::sql::{self, Database, Limits};
use ha_fetchers::fetchers::{db, input_schema, validate, Backend, FetchRequest, Registry, Runner};
use ha_fetchers::state::StateManager;
use serde_json::{json, Map, Value};
use sqlx::MySqlPool;

use crate::helpers::fixtures::{
    fixture_store, reminders_example, row, shipped_rows, REMINDERS_SQL,
};

/// A `Database` on the test's own database (a pool of its own, as in the app).
fn sql_db(pool: &MySqlPool) -> Database {
    Database::with_options((*pool.connect_options()).clone())
}

/// The registry (MySQL rows) and the engine, `sql` fetchers reading `pool`'s database.
async fn engine(pool: &MySqlPool) -> Runner {
    db::seed(pool, &shipped_rows()).await.unwrap();
    let reg = Arc::new(Registry::new(Backend::Mysql(pool.clone())));
    reg.reload().await.unwrap();
    Runner::new(reg, StateManager::new(fixture_store().await, None)).with_sql(Some(sql_db(pool)))
}

/// Adds one `sql` fetcher row.
async fn add(pool: &MySqlPool, name: &str, params: Value, timeout_ms: u32) {
    sqlx::query(
        "INSERT INTO data_fetchers (name, source, params, ttl_seconds, timeout_ms)
         VALUES (?, 'sql', ?, 0, ?)",
    )
    .bind(name)
    .bind(params.to_string())
    .bind(timeout_ms)
    .execute(pool)
    .await
    .unwrap();
}

async fn run(e: &Runner, name: &str, params: Value) -> Result<Arc<Value>, (String, String)> {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    e.run(FetchRequest {
        name: name.into(),
        params,
    })
    .await
    .result
    .map_err(|e| (e.code().to_string(), e.to_string()))
}

fn titles(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect()
}

async fn reminders(pool: &MySqlPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM reminders WHERE done = 0")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn the_reminders_example_works_as_documented(pool: MySqlPool) {
    let insert = &REMINDERS_SQL[REMINDERS_SQL.rfind("INSERT INTO data_fetchers").unwrap()..];
    let docs = include_str!("../../docs/fetchers.md");
    assert!(
        docs.contains(insert.trim()),
        "docs/fetchers.md lacks:\n{insert}"
    );
    reminders_example(&pool).await;
    let e = engine(&pool).await;
    assert!(e.problems().is_empty(), "{:?}", e.problems());

    let today = run(&e, "reminders_due_today", json!({})).await.unwrap();
    assert_eq!(
        titles(&today),
        ["Water the plants", "Call the plumber", "Bins out"]
    );
    let first = &today[0];
    let day: String = sqlx::query_scalar("SELECT CAST(CURDATE() AS CHAR)")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(first["due_at"], format!("{day}T09:00:00"));
    assert_eq!(first["priority"], json!(2.5));
    assert_eq!(
        first["tags"],
        json!(["garden"]),
        "json_columns parses MariaDB's JSON text"
    );
    assert_eq!(today[1]["priority"], Value::Null);
    assert_eq!(today[2]["tags"], json!([]));

    let ada = run(&e, "reminders_due_today", json!({"person": "ada"}))
        .await
        .unwrap();
    assert_eq!(titles(&ada), ["Water the plants", "Call the plumber"]);

    // A tool's inputs are the query's params, never the query itself.
    let def = e
        .definitions()
        .into_iter()
        .find(|d| d.name == "reminders_due_today")
        .unwrap();
    let schema = input_schema(&def);
    assert!(schema["properties"].get("person").is_some(), "{schema}");
    assert!(schema["properties"].get("query").is_none(), "{schema}");
    assert!(
        schema["properties"].get("json_columns").is_none(),
        "{schema}"
    );

    // Cached for the row's TTL (60 s): the second call does not query.
    let again = e.run(FetchRequest::new("reminders_due_today")).await;
    assert!(again.cached);
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn mysql_types_come_back_as_json(pool: MySqlPool) {
    sqlx::raw_sql(
        "CREATE TABLE kinds (
            b TINYINT(1), i INT, n BIGINT UNSIGNED, y YEAR, f FLOAT, d DOUBLE,
            m DECIMAL(10,2), big DECIMAL(30,10), dt DATETIME(3), ts TIMESTAMP NULL,
            day DATE, t TIME, j JSON, bin VARBINARY(8), blb BLOB, e ENUM('a','b'),
            s VARCHAR(20), nothing INT, bits BIT(10), small TINYINT
         );
         INSERT INTO kinds VALUES (1, -7, 18446744073709551615, 2026, 0.5, 0.1,
            12.50, 12345678901234567890.0123456789, '2026-11-30 07:30:00.250',
            '2026-11-30 07:30:00', '2026-11-30', '-838:59:59', '{\"a\": [1, 2]}',
            X'00FF', 'hi', 'b', 'é', NULL, b'1000000001', -3);",
    )
    .execute(&pool)
    .await
    .unwrap();
    add(
        &pool,
        "kinds",
        json!({"query": "SELECT * FROM kinds", "json_columns": ["j"]}),
        1000,
    )
    .await;
    let e = engine(&pool).await;
    let v = run(&e, "kinds", json!({})).await.unwrap();
    assert_eq!(
        v[0],
        json!({
            "b": true, "i": -7, "n": 18446744073709551615u64, "y": 2026, "f": 0.5, "d": 0.1,
            "m": 12.5, "big": "12345678901234567890.0123456789",
            "dt": "2026-11-30T07:30:00.250", "ts": "2026-11-30T07:30:00",
            "day": "2026-11-30", "t": "-838:59:59", "j": {"a": [1, 2]},
            "bin": "AP8=", "blb": "hi", "e": "b", "s": "é", "nothing": null,
            "bits": 513, "small": -3
        })
    );
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn params_are_bound_never_spliced(pool: MySqlPool) {
    reminders_example(&pool).await;
    add(
        &pool,
        "echo",
        json!({"query": "SELECT :q AS echo, JSON_LENGTH(:list) AS n", "q": null, "list": []}),
        1000,
    )
    .await;
    let e = engine(&pool).await;
    for attack in [
        "ada' OR '1'='1",
        "'; DELETE FROM reminders; --",
        "ada\\' OR 1=1 -- ",
        "\" OR \"\"=\"",
    ] {
        let v = run(&e, "reminders_due_today", json!({"person": attack}))
            .await
            .unwrap();
        assert_eq!(*v, json!([]), "{attack}");
        let v = run(&e, "echo", json!({"q": attack, "list": [1, 2, 3]}))
            .await
            .unwrap();
        assert_eq!(*v, json!([{"echo": attack, "n": 3}]), "{attack}");
    }
    assert_eq!(reminders(&pool).await, 4);
    // A call cannot change the query, nor pass params it does not take.
    let q = "SELECT * FROM data_fetchers";
    let bad = run(&e, "echo", json!({"q": 1, "query": q}))
        .await
        .unwrap_err();
    assert_eq!(bad.0, "bad_params", "{bad:?}");
    let bad = run(&e, "echo", json!({"q": 1, "qq": 2})).await.unwrap_err();
    assert!(bad.1.contains("qq is not a param"), "{bad:?}");
    let bad = run(&e, "echo", json!({"limit": 0})).await.unwrap_err();
    assert!(bad.1.contains("limit must be"), "{bad:?}");
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn every_refused_statement_kind_is_a_row_problem(pool: MySqlPool) {
    reminders_example(&pool).await;
    let refused = [
        ("w_update", "UPDATE reminders SET done = 1"),
        ("w_delete", "DELETE FROM reminders"),
        (
            "w_insert_select",
            "INSERT INTO reminders SELECT * FROM reminders",
        ),
        ("w_for_update", "SELECT * FROM reminders FOR UPDATE"),
        ("w_share_mode", "SELECT * FROM reminders LOCK IN SHARE MODE"),
        (
            "w_outfile",
            "SELECT * FROM reminders INTO OUTFILE '/tmp/r.txt'",
        ),
        ("w_stacked", "SELECT 1; DELETE FROM reminders"),
        ("w_hidden", "SELECT 1 /*M! ; DELETE FROM reminders */"),
        ("w_positional", "SELECT * FROM reminders WHERE person = ?"),
        (
            "w_unbound",
            "SELECT * FROM reminders WHERE person = :nobody",
        ),
    ];
    for (name, q) in refused {
        add(&pool, name, json!({"query": q}), 1000).await;
    }
    let e = engine(&pool).await;
    let problems = e.problems();
    for (name, q) in refused {
        assert!(!e.exists(name), "{name} loaded");
        let p = problems.iter().find(|p| p.name == name).unwrap();
        assert!(p.field.starts_with("params"), "{q}: {p}");
        eprintln!("{p}");
    }
    assert!(e.exists("reminders_due_today"), "the good row still loads");
    assert_eq!(reminders(&pool).await, 4);
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn the_read_only_transaction_holds_without_the_parser(pool: MySqlPool) {
    reminders_example(&pool).await;
    let db = sql_db(&pool);
    let limits = Limits {
        rows: 10,
        time: Duration::from_secs(2),
    };
    // Writes the parser would refuse, sent straight to the second wall.
    for text in [
        "UPDATE reminders SET done = 1",
        "DELETE FROM reminders",
        "INSERT INTO reminders (person, title, due_at) VALUES ('x', 'x', NOW())",
    ] {
        let q = sql::Query {
            text: text.into(),
            binds: vec![],
        };
        let e = db.run(&q, &Map::new(), &[], &limits).await.unwrap_err();
        assert!(e.to_string().contains("READ ONLY"), "{text}: {e}");
    }
    assert_eq!(reminders(&pool).await, 4);
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn a_slow_query_is_stopped_by_the_server(pool: MySqlPool) {
    add(&pool, "slow", json!({"query": "SELECT SLEEP(5) AS s"}), 500).await;
    let e = engine(&pool).await;
    let started = Instant::now();
    let err = run(&e, "slow", json!({})).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.0, "timeout", "{err:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // Killed, not abandoned: the server is not still sleeping on it.
    let running: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(5)%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(running, 0);
    // The pool's connection is fine for the next run.
    add(&pool, "quick", json!({"query": "SELECT 1 AS one"}), 500).await;
    e.registry().reload().await.unwrap();
    assert_eq!(
        *run(&e, "quick", json!({})).await.unwrap(),
        json!([{"one": 1}])
    );
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn a_huge_result_is_capped(pool: MySqlPool) {
    let numbers =
        "WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 100000)";
    add(
        &pool,
        "many",
        json!({"query": format!("{numbers} SELECT i FROM n")}),
        5000,
    )
    .await;
    add(
        &pool,
        "wide",
        json!({"query": format!("{numbers} SELECT i, REPEAT('x', 10000) AS pad FROM n"), "limit": 10000}),
        5000,
    )
    .await;
    let e = engine(&pool).await;
    let v = run(&e, "many", json!({})).await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), sql::DEFAULT_ROWS as usize);
    assert_eq!(v[199]["i"], 200);
    let v = run(&e, "many", json!({"limit": 5})).await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);
    let started = Instant::now();
    let v = run(&e, "wide", json!({})).await.unwrap();
    let bytes = serde_json::to_string(&*v).unwrap().len();
    assert!(bytes <= sql::MAX_BYTES, "{bytes}");
    assert!(
        v.as_array().unwrap().len() > 90,
        "{}",
        v.as_array().unwrap().len()
    );
    eprintln!(
        "wide: {} rows, {bytes} bytes in {:?}",
        v.as_array().unwrap().len(),
        started.elapsed()
    );
    // The cut connection was closed, not drained; the next run is normal.
    assert_eq!(
        run(&e, "many", json!({"limit": 1})).await.unwrap()[0]["i"],
        1
    );
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn check_prepares_sql_rows_against_the_live_schema(pool: MySqlPool) {
    reminders_example(&pool).await;
    let mut rows = vec![
        row(
            "no_table",
            "sql",
            r#"{"query": "SELECT title FROM remindrs"}"#,
        ),
        row(
            "no_column",
            "sql",
            r#"{"query": "SELECT titel FROM reminders"}"#,
        ),
        row(
            "fine",
            "sql",
            r#"{"query": "SELECT title FROM reminders WHERE person = :p", "p": "ada"}"#,
        ),
    ];
    rows.push(row("not_sql", "summary", "{}"));
    // Each row is verified by its own source: only `sql` looks at MySQL.
    let runner = Runner::new(
        Registry::from_rows(Vec::new()),
        StateManager::new(fixture_store().await, None),
    )
    .with_sql(Some(sql_db(&pool)));
    let defs: Vec<_> = rows.iter().map(|r| validate(r).unwrap()).collect();
    let problems = runner.verify(&defs).await;
    let found: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.name.as_str(), p.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [("no_table", "params.query"), ("no_column", "params.query")]
    );
    assert!(problems[0].reason.contains("remindrs"), "{}", problems[0]);
    assert!(problems[1].reason.contains("titel"), "{}", problems[1]);
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn mysql_down_fails_this_fetcher_only(pool: MySqlPool) {
    add(&pool, "mine", json!({"query": "SELECT 1 AS one"}), 1000).await;
    db::seed(&pool, &shipped_rows()).await.unwrap();
    let reg = Arc::new(Registry::new(Backend::Mysql(pool.clone())));
    reg.reload().await.unwrap();
    // Nothing listens on port 1.
    let down = Database::connect_lazy("mysql://root@127.0.0.1:1/nothing").unwrap();
    let e = Runner::new(reg, StateManager::new(fixture_store().await, None)).with_sql(Some(down));
    let started = Instant::now();
    let err = run(&e, "mine", json!({})).await.unwrap_err();
    assert_eq!(err.0, "failed", "{err:?}");
    assert!(err.1.contains("MySQL is unreachable"), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let lights = run(&e, "ha_lights_on", json!({})).await.unwrap();
    assert_eq!(lights["count"], 2);
    // Without any MySQL, the error says what to set.
    let e = Runner::new(e.registry().clone(), e.states().clone());
    let err = run(&e, "mine", json!({})).await.unwrap_err();
    assert!(err.1.contains("FETCHERS_SQL_URL"), "{err:?}");
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn a_read_only_user_as_the_readme_grants_it(pool: MySqlPool) {
    reminders_example(&pool).await;
    let db = pool.connect_options().get_database().unwrap().to_string();
    // The README's two statements, with this test's names.
    let user = format!("r{}", &db[db.len() - 12..]).to_lowercase();
    sqlx::raw_sql(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'change-me';
         GRANT SELECT ON `{db}`.reminders TO '{user}'@'%';"
    ))
    .execute(&pool)
    .await
    .unwrap();
    add(
        &pool,
        "peek",
        json!({"query": "SELECT name FROM data_fetchers"}),
        1000,
    )
    .await;
    let reader = (*pool.connect_options())
        .clone()
        .username(&user)
        .password("change-me");
    db::seed(&pool, &shipped_rows()).await.unwrap();
    let reg = Arc::new(Registry::new(Backend::Mysql(pool.clone())));
    reg.reload().await.unwrap();
    let e = Runner::new(reg, StateManager::new(fixture_store().await, None))
        .with_sql(Some(Database::with_options(reader)));
    let v = run(&e, "reminders_due_today", json!({})).await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let err = run(&e, "peek", json!({})).await.unwrap_err();
    assert!(err.1.contains("denied"), "{err:?}");
    sqlx::raw_sql(&format!("DROP USER '{user}'@'%'"))
        .execute(&pool)
        .await
        .unwrap();
}
