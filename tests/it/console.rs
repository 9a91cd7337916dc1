//! The console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/browser.sh`) driven through
//! WebDriver (fantoccini) against `ha-fetchers demo`. Each view loads with no
//! browser console errors; a change in the simulated house reaches the
//! states view within 2 s; a fetcher run shows its result; the preview
//! follows edits and shows a broken template's line; with `API_TOKEN` the
//! console asks for the token and the API refuses without it. Screenshots of
//! each view go to `target/console-*.png`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long any one thing may take to appear in the page.
const APPEAR: Duration = Duration::from_secs(15);

/// A child process in a process group of its own, killed with the whole
/// group on drop: chromedriver's browsers die with it, even when a test fails.
pub(crate) struct Running(Child);

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        Self(cmd.process_group(0).spawn().expect("the program runs"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill only signals; a negative pid names the group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// chromedriver's path, or `None` (a skip) unless `BROWSER_REQUIRED` is set.
pub(crate) fn chromedriver() -> Option<PathBuf> {
    let found = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")))
        .filter(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("BROWSER_REQUIRED").is_err(),
            "BROWSER_REQUIRED is set but chromedriver is missing (run scripts/browser.sh)"
        );
        eprintln!("skipped: no chromedriver (run scripts/browser.sh, or scripts/test.sh)");
    }
    found
}

/// `ha-fetchers demo` on a free port; its API address.
pub(crate) fn demo(env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ha-fetchers"));
    cmd.args(["demo", "--bind", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .env_remove("API_TOKEN")
        .env_remove("INGRESS_PROXY")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut running = Running::spawn(&mut cmd);
    let out = BufReader::new(running.0.stdout.take().unwrap());
    let mut base = None;
    for line in out.lines().map_while(Result::ok) {
        if let Some(b) = line.strip_prefix("API: ") {
            base = Some(b.to_string());
        }
        if line.contains("Serving until Ctrl-C") {
            break;
        }
    }
    (running, base.expect("the demo prints its address"))
}

/// chromedriver on a free port, and a headless Chromium session through it.
pub(crate) async fn browser(driver: &PathBuf) -> (Running, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let running = Running::spawn(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "browserName": "chrome",
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            // Without the background-networking flags Chromium calls out to
            // Google at start, which a closed network refuses noisily.
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.keep().display()),
            ],
        },
    });
    let caps = caps.as_object().unwrap().clone();
    let started = Instant::now();
    let client = loop {
        let builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match builder {
            Ok(c) => break c,
            Err(e) if started.elapsed() < APPEAR => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    };
    (running, client)
}

/// chromedriver's `POST /session/{id}/se/log`: the browser console since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.into()),
        )
    }
}

/// Console errors logged since the last call, except those matching `allowed`.
pub(crate) async fn console_errors(c: &Client, allowed: &[&str]) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .filter(|m| !allowed.iter().any(|a| m.contains(a)))
        .collect()
}

/// Saves a screenshot under `target/`.
pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

/// Polls `f` until it returns `Some`, or fails naming `what`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of `css`, when present.
async fn text(c: &Client, css: &str) -> Option<String> {
    let e = c.find(Locator::Css(css)).await.ok()?;
    e.text().await.ok()
}

/// Whether `css` is displayed.
async fn shown(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Clicks `css`.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Replaces a field's value by typing, as a user would.
async fn type_into(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// The status view, open, shows the link up and the demo's 108 entities.
pub(crate) async fn status_shows_the_house(c: &Client) {
    let link = until("the link status", APPEAR, || async {
        text(c, "#status-link")
            .await
            .filter(|t| t.contains("connected"))
    })
    .await;
    assert!(!link.contains("disconnected"), "{link}");
    until("the entity count", APPEAR, || async {
        text(c, "#status-entities")
            .await
            .filter(|t| t.contains("108"))
    })
    .await;
    // The first snapshot is a resync; every value a person reads is a value.
    let resyncs = until("the first resync", APPEAR, || async {
        text(c, "#resyncs")
            .await
            .filter(|t| t.contains("108 entities"))
    })
    .await;
    assert!(resyncs.contains("0 removed"), "{resyncs}");
    let view = text(c, "#view-status").await.unwrap_or_default();
    for word in ["undefined", "NaN", "null", "[object"] {
        assert!(!view.contains(word), "{word} in the status view: {view}");
    }
}

/// The states view fills, then shows the next change the change stream at
/// `base` carries within 2 s.
pub(crate) async fn states_follow_the_house(c: &Client, base: &str) {
    click(c, "#nav-states").await;
    until("the states table", APPEAR, || async {
        text(c, "#states-count").await.filter(|t| t.contains("108"))
    })
    .await;
    let (id, state) = next_change(base).await;
    let seen = Instant::now();
    let row = format!("#states-table tr[data-entity-id='{id}'] td.state");
    until(
        "the change in the states view",
        Duration::from_secs(2),
        || async { text(c, &row).await.filter(|t| t.starts_with(&state)) },
    )
    .await;
    eprintln!(
        "{base}: {id} → {state} shown {:?} after the stream carried it",
        seen.elapsed()
    );
}

/// The next `state` event of the demo's change stream: entity id and new state.
async fn next_change(base: &str) -> (String, String) {
    let mut resp = reqwest::get(format!("{base}/api/v1/events")).await.unwrap();
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout(APPEAR, resp.chunk())
            .await
            .expect("the demo house changes every second")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        for frame in buf.split("\n\n") {
            if frame.contains("event: state") {
                let data = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                let v: Value = serde_json::from_str(data).unwrap();
                return (
                    v["entity_id"].as_str().unwrap().into(),
                    v["new_state"].as_str().unwrap().into(),
                );
            }
        }
    }
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let Some(driver) = chromedriver() else {
        return;
    };
    let (_demo, base) = demo(&[]);
    let (_driver, c) = browser(&driver).await;

    // Status.
    c.goto(&format!("{base}/#/status")).await.unwrap();
    status_shows_the_house(&c).await;
    assert!(shown(&c, "#chart-events").await);
    shot(&c, "status").await;
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());

    // Fetchers: list, run one, see JSON and compact text.
    click(&c, "#nav-fetchers").await;
    until("the fetcher table", APPEAR, || async {
        c.find(Locator::Css("#fetchers-table tr[data-name='ha_lights_on']"))
            .await
            .ok()
    })
    .await;
    c.find(Locator::Css("#run-name"))
        .await
        .unwrap()
        .select_by_value("ha_lights_on")
        .await
        .unwrap();
    click(&c, "#run-button").await;
    let json_out = until("the run's JSON", APPEAR, || async {
        text(&c, "#run-json")
            .await
            .filter(|t| t.contains("entity_id"))
    })
    .await;
    assert!(json_out.contains("light."), "{json_out}");
    let lean = until("the run's compact text", APPEAR, || async {
        text(&c, "#run-text").await.filter(|t| !t.is_empty())
    })
    .await;
    assert!(lean.contains("count: "), "{lean}");
    let meta = text(&c, "#run-meta").await.unwrap();
    assert!(meta.contains("ms"), "elapsed time shown: {meta}");
    shot(&c, "fetchers").await;
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());

    // Prompts: a stored template renders; edits re-render; a broken one shows its line.
    click(&c, "#nav-prompts").await;
    until("the template list", APPEAR, || async {
        c.find(Locator::Css("#prompt-pick option[value='home_status']"))
            .await
            .ok()
    })
    .await;
    c.find(Locator::Css("#prompt-pick"))
        .await
        .unwrap()
        .select_by_value("home_status")
        .await
        .unwrap();
    until("the stored template's preview", APPEAR, || async {
        text(&c, "#preview-text")
            .await
            .filter(|t| t.contains("Home status at"))
    })
    .await;
    let chars = text(&c, "#preview-chars").await.unwrap();
    assert!(chars.contains("characters"), "{chars}");
    assert!(text(&c, "#preview-tokens")
        .await
        .unwrap()
        .contains("tokens"));
    until("the fetchers that ran", APPEAR, || async {
        text(&c, "#preview-fetchers")
            .await
            .filter(|t| t.contains("ha_"))
    })
    .await;
    shot(&c, "prompts").await;
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());
    type_into(&c, "#prompt-editor", "Lights on: {{ ha_lights_on.count }}").await;
    until("the preview of the edit", APPEAR, || async {
        text(&c, "#preview-text")
            .await
            .filter(|t| t.starts_with("Lights on: "))
    })
    .await;
    type_into(&c, "#prompt-editor", "Fine\n{{ 1 + }}").await;
    let err = until("the broken template's error", APPEAR, || async {
        text(&c, "#preview-error").await.filter(|t| !t.is_empty())
    })
    .await;
    assert!(err.contains("line 2"), "the error names its line: {err}");
    shot(&c, "prompts-error").await;
    // The refused render is a 422, which Chromium logs; nothing else may be.
    assert_eq!(
        console_errors(&c, &["status of 422"]).await,
        Vec::<String>::new()
    );

    // States: the table fills, then follows the house live.
    states_follow_the_house(&c, &base).await;
    type_into(&c, "#states-search", "kitchen").await;
    until("the search", APPEAR, || async {
        text(&c, "#states-count")
            .await
            .filter(|t| !t.starts_with("108 of"))
    })
    .await;
    shot(&c, "states").await;
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());

    // The keyboard reaches the views: Enter on a focused nav link switches.
    let nav = c.find(Locator::Css("#nav-status")).await.unwrap();
    nav.send_keys("\u{E007}").await.unwrap();
    until("the status view by keyboard", APPEAR, || async {
        shown(&c, "#view-status").await.then_some(())
    })
    .await;
    let focused = c.active_element().await.unwrap().attr("id").await.unwrap();
    assert_eq!(
        focused.as_deref(),
        Some("nav-status"),
        "focus stays where it was"
    );

    // Every field has a label, and a phone-sized window needs no sideways scroll.
    let unlabelled = c
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]\
             .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "inputs without a label");
    c.set_window_size(390, 844).await.unwrap();
    for view in ["status", "fetchers", "prompts", "states"] {
        click(&c, &format!("#nav-{view}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let overflow = c
            .execute(
                "const w = document.documentElement.clientWidth;\
                 return [...document.querySelectorAll('body *')]\
                 .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.table-wrap, pre, textarea'))\
                 .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(overflow, json!([]), "{view}: wider than a phone");
        let scroll = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            scroll.as_i64().unwrap_or(0) <= 0,
            "{view}: sideways scroll on a phone: {scroll}"
        );
    }
    shot(&c, "phone").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn with_a_token_the_console_asks_for_it_and_the_api_refuses_without() {
    let Some(driver) = chromedriver() else {
        return;
    };
    const TOKEN: &str = "console-test-token";
    let (_demo, base) = demo(&[("API_TOKEN", TOKEN)]);
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    let without = http
        .get(format!("{base}/api/v1/states"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(without), 401);
    let events = http
        .get(format!("{base}/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(events), 401, "the stream needs it too");
    let with = http
        .get(format!("{base}/api/v1/states"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(status(with), 200, "the bearer header still works");

    let (_driver, c) = browser(&driver).await;
    c.goto(&base).await.unwrap();
    until("the login form", APPEAR, || async {
        shown(&c, "#login-form").await.then_some(())
    })
    .await;
    assert!(
        !shown(&c, "#view-status").await,
        "nothing shows before a login"
    );
    type_into(&c, "#login-token", "wrong").await;
    click(&c, "#login-submit").await;
    until("the refusal", APPEAR, || async {
        text(&c, "#login-error")
            .await
            .filter(|t| t.contains("wrong token"))
    })
    .await;
    shot(&c, "login").await;
    type_into(&c, "#login-token", TOKEN).await;
    click(&c, "#login-submit").await;
    until("the status view after login", APPEAR, || async {
        text(&c, "#status-link")
            .await
            .filter(|t| t.contains("connected"))
    })
    .await;
    // The session is a cookie the page's script cannot read.
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, json!(""), "HttpOnly");
    let jar = c.get_all_cookies().await.unwrap();
    let session = jar
        .iter()
        .find(|k| k.name() == "hf_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(
        format!("{:?}", session.same_site()),
        "Some(Strict)",
        "SameSite=Strict"
    );
    click(&c, "#logout").await;
    until("the login form after logout", APPEAR, || async {
        shown(&c, "#login-form").await.then_some(())
    })
    .await;
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_scoped_login_shows_its_scope_and_only_its_entities() {
    let Some(driver) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (token, hash) = ha_fetchers::tokens::mint();
    let scope = ha_fetchers::state::ScopeSpec {
        entities: ha_fetchers::state::Entities::Only(vec!["domain:switch".into()]),
        fetchers: vec![],
        prompts: vec![],
    };
    let row = ha_fetchers::tokens::Stored {
        name: "switches".into(),
        hash,
        scope,
        created_at: String::new(),
    };
    ha_fetchers::tokens::Backend::File(file.clone())
        .create(row)
        .await
        .unwrap();
    let file = file.to_str().unwrap().to_string();
    let (_demo, base) = demo(&[("API_TOKEN", "console-admin-token"), ("TOKENS_FILE", &file)]);
    let (_driver, c) = browser(&driver).await;
    c.goto(&base).await.unwrap();
    until("the login form", APPEAR, || async {
        shown(&c, "#login-form").await.then_some(())
    })
    .await;
    type_into(&c, "#login-token", &token).await;
    click(&c, "#login-submit").await;
    until("the scope beside Log out", APPEAR, || async {
        text(&c, "#scope")
            .await
            .filter(|t| t.contains("Scoped: entities domain:switch"))
    })
    .await;
    until("the scope's count on the status view", APPEAR, || async {
        text(&c, "#status-entities")
            .await
            .filter(|t| t.trim().starts_with('2'))
    })
    .await;
    shot(&c, "scoped").await;
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());
    c.close().await.unwrap();
}
