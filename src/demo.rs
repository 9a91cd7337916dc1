//! `ha-fetchers demo`: the whole pipe on embedded defaults, fed by the
//! simulated house, reached through the same WebSocket client as production.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::sim::{demo_changes, House, Sim, DEMO_TICK};
use crate::{Application, Settings};

/// The token the simulated house accepts; it guards nothing real.
const DEMO_TOKEN: &str = "demo-token";
/// The shipped prompt the demo prints.
const DEMO_PROMPT: &str = "home_status";
/// How long the demo waits for the first snapshot before it prints anyway.
const FIRST_SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// Runs the demo until `stop` is cancelled (Ctrl-C in the CLI). With
/// `house` (a `/api/states` array, e.g. a dump of one's own HA) that house is
/// served, as it is, instead of the recorded demo house and its changes.
pub async fn run(
    settings: Settings,
    house: Option<std::path::PathBuf>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let sim = start_house(house.as_deref()).await?;
    if house.is_none() {
        tokio::spawn(demo_changes(sim.clone(), DEMO_TICK, stop.clone()));
    }
    let token_set = settings.api_token.is_some();
    let (app, base) = start_app(settings, &sim).await?;
    let states = app.engine().states().clone();
    let waited = tokio::time::Instant::now();
    while states.summary().entity_count == 0 && waited.elapsed() < FIRST_SNAPSHOT_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "ha-fetchers demo: a simulated house of {} entities at {}",
        states.summary().entity_count,
        sim.url()
    );
    print_guide(&base, token_set);
    match app.engine().render(DEMO_PROMPT, Default::default()).await {
        Ok(r) => println!(
            "The \"{DEMO_PROMPT}\" prompt, rendered in {:.1} ms:\n\n{}\n",
            r.elapsed_ms,
            r.text.trim()
        ),
        Err(e) => println!("The \"{DEMO_PROMPT}\" prompt did not render: {e}\n"),
    }
    println!("Serving until Ctrl-C.");

    let app_stop = app.shutdown_token();
    tokio::spawn(async move {
        stop.cancelled().await;
        app_stop.cancel();
    });
    let res = app.run_until_stopped().await;
    sim.stop();
    res
}

/// The simulated house: the recorded demo one, or the `/api/states` dump at `house`.
async fn start_house(house: Option<&std::path::Path>) -> anyhow::Result<Sim> {
    let Some(path) = house else {
        return Sim::start_demo(DEMO_TOKEN)
            .await
            .context("could not start the simulated house");
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--house {}", path.display()))?;
    let house = House::from_json(&text)
        .with_context(|| format!("--house {}: not an /api/states array", path.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(Sim::start(listener, house, DEMO_TOKEN)?)
}

/// The application over `sim`, in memory, with its API's base URL; another
/// port when the asked one is busy.
async fn start_app(settings: Settings, sim: &Sim) -> anyhow::Result<(Application, String)> {
    let replaced: Vec<&str> = [
        ("HA_URL", settings.ha_url.is_some()),
        ("REDIS_URL", settings.redis_url.is_some()),
        ("DATABASE_URL", settings.database_url.is_some()),
        ("FETCHERS_SQL_URL", settings.fetchers_sql_url.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if !replaced.is_empty() {
        tracing::warn!(
            settings = replaced.join(", "),
            "The demo stands its own house, in-memory state and fetcher files in for these"
        );
    }
    let mut settings = settings.without_links();
    settings.ha_url = Some(sim.url());
    settings.ha_token = Some(SecretString::from(DEMO_TOKEN));
    let bind = settings.bind;
    let app = match Application::build(settings.clone()).await {
        Ok(app) => app,
        Err(e) if bind.port() != 0 => {
            tracing::warn!(error = %e, "Demo port busy, picking a free one");
            settings.bind = SocketAddr::new(bind.ip(), 0);
            Application::build(settings).await?
        }
        Err(e) => return Err(e),
    };
    let base = format!("http://{}:{}", bind.ip(), app.port());
    Ok((app, base))
}

/// What to try, against `base`.
fn print_guide(base: &str, token_set: bool) {
    println!("API: {base}");
    println!("Console: {base}/  (open it in a browser: status, fetchers, prompts, live states)");
    println!();
    println!("Try:");
    if token_set {
        println!("  (API_TOKEN is set: add -H \"authorization: Bearer $API_TOKEN\" to all but the first)");
    }
    println!("  curl -s {base}/api/health");
    println!("  curl -s '{base}/api/v1/states?domain=light&state=on'");
    println!("  curl -s {base}/api/v1/states/light.bed_light");
    println!("  curl -s '{base}/api/v1/states?q=*kitchen*'");
    println!("  curl -s {base}/api/v1/domains");
    println!();
    println!("  curl -s -XPOST {base}/api/v1/prompts/home_status/render -H 'content-type: application/json' -d '{{}}'");
    println!("  curl -s -XPOST {base}/api/v1/fetchers/ha_lights_on/run -H 'content-type: application/json' -d '{{}}'");
    println!();
    println!("  Live changes (Server-Sent Events, until Ctrl-C): curl -sN '{base}/api/v1/events?domain=light'");
    println!();
    println!("  Model Context Protocol (point an LLM client at {base}/mcp):");
    println!("  curl -s -XPOST {base}/mcp -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"curl\",\"version\":\"0\"}}}}}}'");
    println!();
}
