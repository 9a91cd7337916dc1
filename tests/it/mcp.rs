//! `/mcp` through rmcp's own client (and raw HTTP for what a client library
//! hides): tools, prompts, resources, a subscription that sees the simulated
//! house change, bad input, auth and the Host check.

use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, GetPromptRequestParams, ReadResourceRequestParams,
    ResourceContents, SubscribeRequestParams,
};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::harness::{settings, Harness, TestStore};
use crate::helpers::mcp::{connect, Client, Heard};
use crate::helpers::Kind;

const TOKEN: &str = "mcp-test-token";

async fn harness() -> Harness {
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::harness::TOKEN)
        .await
        .unwrap();
    let mut s = settings(&sim);
    s.api_token = Some(TOKEN.to_string().into());
    let h = Harness::start_with(sim, s, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    h
}

async fn call(c: &Client, name: &str, args: Value) -> CallToolResult {
    let mut p = CallToolRequestParams::new(name.to_string());
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    c.call_tool(p).await.expect("a tool call is answered")
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn tools_prompts_and_resources_through_rmcps_client() {
    let h = harness().await;
    let (c, _) = connect(&h.base, TOKEN).await;

    let tools = c.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names[..3],
        ["live_context", "search_entities", "get_entity"]
    );
    let mut fetchers = names[3..].to_vec();
    fetchers.sort_unstable();
    assert_eq!(fetchers, names[3..], "fetchers follow, by name");
    assert!(names.contains(&"ha_lights_on"));
    let spec = tools
        .iter()
        .find(|t| t.name == "ha_specific_entity")
        .unwrap();
    assert_eq!(
        spec.input_schema["properties"]["entity_id"]["type"],
        "string"
    );
    assert_eq!(
        tools
            .iter()
            .find(|t| t.name == "ha_lights_on")
            .unwrap()
            .input_schema["properties"]["state"]["default"],
        "on"
    );

    let r = call(&c, "ha_lights_on", json!({})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let s = r.structured_content.clone().unwrap();
    assert!(s["count"].as_u64().unwrap() > 0);
    assert!(text(&r).contains("light."), "{}", text(&r));

    let r = call(&c, "live_context", json!({"domain": "light"})).await;
    assert!(text(&r).contains("- light.bed_light"), "{}", text(&r));
    let r = call(&c, "live_context", json!({"limit": 1})).await;
    assert!(text(&r).contains(" more ("), "an N more line: {}", text(&r));

    let r = call(&c, "search_entities", json!({"query": "kitchen"})).await;
    assert!(text(&r).contains("kitchen"), "{}", text(&r));
    let r = call(&c, "get_entity", json!({"entity_id": "light.bed_light"})).await;
    assert_eq!(
        r.structured_content.unwrap()["entity_id"],
        "light.bed_light"
    );

    // Mistakes come back as tool errors that name the argument or the cause.
    for (tool, args, says) in [
        (
            "live_context",
            json!({"limit": "x"}),
            "`limit` must be integer",
        ),
        (
            "get_entity",
            json!({}),
            "missing required param `entity_id`",
        ),
        (
            "ha_specific_entity",
            json!({"entity_id": 5}),
            "`entity_id` must be string",
        ),
        (
            "ha_lights_on",
            json!({"colour": "red"}),
            "unknown field `colour`",
        ),
        ("no_such_tool", json!({}), "unknown tool"),
        (
            "get_entity",
            json!({"entity_id": "light.nope"}),
            "no entity",
        ),
        ("live_context", json!({"area": "Atlantis"}), "param `area`"),
    ] {
        let r = call(&c, tool, args).await;
        assert_eq!(r.is_error, Some(true), "{tool}");
        assert!(text(&r).contains(says), "{tool}: {}", text(&r));
    }

    let prompts = c.list_all_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p.name == "home_status"));
    let p = c
        .get_prompt(GetPromptRequestParams::new("home_status"))
        .await
        .unwrap();
    let said = serde_json::to_value(&p.messages[0].content).unwrap();
    assert!(
        said["text"].as_str().unwrap().contains("Bed Light"),
        "{said}"
    );
    assert!(c
        .get_prompt(GetPromptRequestParams::new("nope"))
        .await
        .is_err());

    let templates = c.list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 2);
    let resources = c.list_all_resources().await.unwrap();
    assert!(resources
        .iter()
        .any(|r| r.uri == "ha://fetcher/ha_lights_on"));
    for uri in [
        "ha://entity/light.bed_light",
        "ha://domain/light",
        "ha://fetcher/ha_lights_on",
    ] {
        let r = c
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .unwrap();
        let ResourceContents::TextResourceContents { text, .. } = &r.contents[0] else {
            panic!("{uri}: text expected");
        };
        assert!(text.contains("light."), "{uri}: {text}");
    }
    assert!(c
        .read_resource(ReadResourceRequestParams::new("file:///etc/passwd"))
        .await
        .is_err());
    c.cancel().await.unwrap();
    h.finish().await;
}

#[tokio::test]
async fn a_subscriber_hears_of_a_change_once_it_reaches_the_cache() {
    let h = harness().await;
    let (c, mut heard) = connect(&h.base, TOKEN).await;
    #[allow(deprecated)]
    c.subscribe(SubscribeRequestParams::new("ha://entity/light.bed_light"))
        .await
        .unwrap();
    // Another entity's change is not news to this subscriber.
    h.sim.set("switch.decorative_lights", "off");
    let mut worst = Duration::ZERO;
    for state in ["on", "off", "on"] {
        // Past the coalescing gap, so each change is its own notification.
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.sim.set("light.bed_light", state);
        h.wait_state("light.bed_light", state).await;
        let cached = Instant::now();
        let uri = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .expect("an update within 5 s")
            .unwrap();
        assert_eq!(uri, "ha://entity/light.bed_light");
        worst = worst.max(cached.elapsed());
    }
    eprintln!("cache → notification, worst of 3: {worst:?}");
    assert!(worst < Duration::from_millis(100), "{worst:?}");
    // A burst is coalesced: a few notifications, not one per event.
    for i in 0..50 {
        h.sim
            .set("light.bed_light", if i % 2 == 0 { "off" } else { "on" });
    }
    // Counted once the burst is cached and the notifications have stopped.
    h.wait_state("light.bed_light", "on").await;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), heard.recv()).await {
        n += 1;
    }
    assert!(
        (1..=4).contains(&n),
        "{n} notifications for a 50-event burst"
    );
    c.cancel().await.unwrap();
    h.finish().await;
}

#[tokio::test]
async fn raw_http_gets_the_spec_answers() {
    let h = harness().await;
    let url = format!("{}/mcp", h.base);
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
    };
    // Each protocol revision current clients send is answered in kind, as JSON.
    for v in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": v, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
        let r = post(init.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("mcp-session-id").is_some());
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["result"]["protocolVersion"], v);
    }
    // The stateless 2026-07-28 revision: no session, the version in each request's `_meta`.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let list =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}});
    let r = post(list.to_string())
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["tools"][0]["name"], "live_context");
    // Malformed JSON-RPC is a JSON-RPC error.
    let r = post("{not json".into()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    let r = post(json!({"hello": "world"}).to_string())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    // An oversized body is 413.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    assert_eq!(post(big).send().await.unwrap().status(), 413);
    // A GET without a session is refused as the spec says, not a crash.
    let r = http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // No token: 401 naming the scheme.
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // Another site's name for this server (DNS rebinding), or its page's Origin: 403.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let r = post(init.to_string())
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(init.to_string())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(init.to_string())
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.finish().await;
}

/// `ha-fetchers mcp` against `sim`, with nothing else from the environment.
fn mcp_command(sim: &ha_fetchers::sim::Sim) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ha-fetchers"));
    cmd.arg("mcp")
        .env_clear()
        .env("HA_URL", sim.url().as_str())
        .env("HA_TOKEN", crate::helpers::harness::TOKEN)
        .env(
            "FETCHERS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fetchers"),
        );
    cmd
}

#[tokio::test]
async fn the_mcp_command_serves_the_same_over_stdio() {
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::harness::TOKEN)
        .await
        .unwrap();
    let mut cmd = mcp_command(&sim);
    cmd.env("RUST_LOG", "warn");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let (tx, _) = mpsc::unbounded_channel();
    let c = Heard(tx)
        .serve(transport)
        .await
        .expect("initialize over stdio");
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"ha_lights_on".to_string()), "{names:?}");
    // The command waited for the first snapshot: the house is there at once.
    let r = call(&c, "live_context", json!({"domain": "light"})).await;
    assert!(text(&r).contains("- light.bed_light"), "{}", text(&r));
    c.cancel().await.unwrap();

    // Raw lines: one past MAX_BODY_BYTES and one not JSON are answered with
    // JSON-RPC errors, and the session goes on.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut cmd = mcp_command(&sim);
    cmd.env("MAX_BODY_BYTES", "65536")
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
        "a".repeat(10 << 20)
    );
    let ping = json!({"jsonrpc": "2.0", "id": 3, "method": "ping"});
    let input = format!("{init}\n{big}\n{{not json\n{ping}\n");
    tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
        let _ = stdin.flush().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut answers = Vec::new();
    while answers.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("every line is answered")
            .unwrap()
            .expect("stdout is open");
        answers.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    // JSON-RPC does not order replies: the errors are written beside rmcp's
    // answers, so the ping's reply may come before the parse error.
    assert_eq!(answers[0]["id"], 1);
    let codes: Vec<&Value> = answers.iter().map(|a| &a["error"]["code"]).collect();
    assert!(codes.contains(&&json!(-32600)), "{answers:?}");
    assert!(codes.contains(&&json!(-32700)), "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|a| a["id"] == 3 && a.get("result").is_some()),
        "the session goes on: {answers:?}"
    );
    sim.stop();
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn a_sql_fetcher_is_a_tool_like_any_other(pool: sqlx::MySqlPool) {
    crate::helpers::fixtures::reminders_example(&pool).await;
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::harness::TOKEN)
        .await
        .unwrap();
    let mut s = settings(&sim);
    s.api_token = Some(TOKEN.to_string().into());
    s.database_url = Some(crate::helpers::services::mysql_url_of(&pool).into());
    s.reload_interval = Duration::from_millis(200);
    let h = Harness::start_with(sim, s, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    let (c, mut heard) = connect(&h.base, TOKEN).await;
    let tools = c.list_all_tools().await.unwrap();
    let t = tools
        .iter()
        .find(|t| t.name == "reminders_due_today")
        .expect("the sql fetcher is a tool");
    let props = &t.input_schema["properties"];
    assert!(props.get("person").is_some(), "{props}");
    assert!(
        props.get("query").is_none(),
        "the query is not an input: {props}"
    );

    let r = call(&c, "reminders_due_today", json!({"person": "ada"})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let rows = &r.structured_content.clone().unwrap()["result"];
    assert_eq!(rows[0]["title"], "Water the plants", "{rows}");
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert!(text(&r).contains("Call the plumber"), "{}", text(&r));
    // A call may not swap the query.
    let r = call(
        &c,
        "reminders_due_today",
        json!({"query": "SELECT * FROM data_fetchers"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{}", text(&r));

    // Its resource: state changes are not news to it (it reads no states);
    // a change in MySQL is, found by polling at its TTL (at least 2 s).
    sqlx::query("UPDATE data_fetchers SET ttl_seconds = 0 WHERE name = 'reminders_due_today'")
        .execute(&pool)
        .await
        .unwrap();
    crate::helpers::wait_for("the reload that zeroes the TTL", || {
        h.engine
            .fetchers()
            .get("reminders_due_today")
            .is_some_and(|d| d.ttl.is_zero())
    })
    .await;
    #[allow(deprecated)]
    c.subscribe(SubscribeRequestParams::new(
        "ha://fetcher/reminders_due_today",
    ))
    .await
    .unwrap();
    h.sim.set("light.bed_light", "off");
    h.sim.set("light.bed_light", "on");
    let quiet = tokio::time::timeout(Duration::from_millis(2600), heard.recv()).await;
    assert!(quiet.is_err(), "no update without a change: {quiet:?}");
    sqlx::query("INSERT INTO reminders (person, title, due_at) VALUES ('bob', 'Feed the cat', CURDATE() + INTERVAL 21 HOUR)")
        .execute(&pool)
        .await
        .unwrap();
    let uri = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("an update within two polls")
        .unwrap();
    assert_eq!(uri, "ha://fetcher/reminders_due_today");
    c.cancel().await.unwrap();

    // The console's listing and run (the REST API) show it like any other.
    let api = |path: &str| format!("{}{path}", h.base);
    let answer = |req: reqwest::RequestBuilder| async move {
        let r = req.bearer_auth(TOKEN).send().await.unwrap();
        r.json::<Value>().await.unwrap()
    };
    let list = answer(h.http.get(api("/api/v1/fetchers"))).await;
    let def = list["fetchers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "reminders_due_today")
        .unwrap_or_else(|| panic!("listed: {list}"));
    assert_eq!(def["source"], "sql", "{def}");
    assert_eq!(def["origin"], "mysql", "{def}");
    let run = answer(
        h.http
            .post(api("/api/v1/fetchers/reminders_due_today/run?text=true"))
            .json(&json!({"person": "bob"})),
    )
    .await;
    assert_eq!(run["result"][0]["title"], "Bins out", "{run}");
    assert!(run["text"].as_str().unwrap().contains("Bins out"), "{run}");
    h.finish().await;
}

/// Sessions are capped (`MCP_MAX_SESSIONS`): past the cap the least recently
/// used is closed, and its client gets 404 (the protocol's cue to start a new
/// one); the rest keep working. A session's subscriptions are capped too.
#[tokio::test]
async fn sessions_and_subscriptions_are_capped() {
    let sim = ha_fetchers::sim::Sim::start_demo(crate::helpers::harness::TOKEN)
        .await
        .unwrap();
    let mut s = settings(&sim);
    s.mcp_max_sessions = 8;
    let h = Harness::start_with(sim, s, TestStore::new(Kind::Memory).await).await;
    let url = format!("{}/mcp", h.base);
    let http = reqwest::Client::new();
    let post = |session: Option<&str>, body: Value| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_string());
        if let Some(id) = session {
            r = r.header("mcp-session-id", id);
        }
        r.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let mut ids = Vec::new();
    for _ in 0..20 {
        let r = post(None, init.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
        assert_eq!(
            post(Some(&id), initialized.clone()).await.unwrap().status(),
            202
        );
        ids.push(id);
    }
    let mut live = 0;
    for id in &ids {
        let status = post(Some(id), list.clone()).await.unwrap().status();
        assert!(status == 200 || status == 404, "{status}");
        live += usize::from(status == 200);
    }
    assert_eq!(
        live, 8,
        "the 8 most recent sessions answer, the rest were closed"
    );
    assert_eq!(
        post(Some(&ids[0]), list.clone()).await.unwrap().status(),
        404
    );
    assert_eq!(
        post(Some(&ids[19]), list.clone()).await.unwrap().status(),
        200
    );
    // Opened 6 at once, they still make room for each other: 8 stay.
    let opened = futures::future::join_all((0..6).map(|_| post(None, init.clone()))).await;
    for r in opened {
        ids.push(
            r.unwrap().headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut live = 0;
    for id in &ids {
        live += usize::from(post(Some(id), list.clone()).await.unwrap().status() == 200);
    }
    assert_eq!(live, 8, "concurrent initializes keep the cap");

    let id = &ids[19];
    let sub = |n: usize| {
        json!({"jsonrpc": "2.0", "id": 10 + n, "method": "resources/subscribe",
            "params": {"uri": format!("ha://entity/light.x{n}")}})
    };
    for n in 0..256 {
        let body: Value = post(Some(id), sub(n)).await.unwrap().json().await.unwrap();
        assert!(body.get("result").is_some(), "{body}");
    }
    let body: Value = post(Some(id), sub(256))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 256 subscriptions")),
        "{body}"
    );
    h.finish().await;
}

/// One bad call gets one message naming the param, through REST and
/// through MCP alike: the runner checks params for every door.
#[tokio::test]
async fn a_bad_call_gets_the_same_message_at_every_door() {
    let h = harness().await;
    let (c, _) = connect(&h.base, TOKEN).await;
    let says = "param `limit` must be integer, not string";
    for (args, says) in [
        (json!({"pattern": "light.*", "limit": "many"}), says),
        (json!({"limit": 3}), "missing required param `pattern`"),
    ] {
        let rest: Value = h
            .http
            .post(format!("{}/api/v1/fetchers/ha_search_pattern/run", h.base))
            .bearer_auth(TOKEN)
            .json(&args)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = call(&c, "ha_search_pattern", args.clone()).await;
        assert_eq!(r.is_error, Some(true));
        assert!(text(&r).contains(says), "MCP: {}", text(&r));
        assert!(rest.to_string().contains(says), "REST: {rest}");
    }
    // A param the row does not list is typed by its source all the same.
    let r = call(&c, "ha_lights_on", json!({"limit": "x"})).await;
    assert!(text(&r).contains(says), "{}", text(&r));
}
