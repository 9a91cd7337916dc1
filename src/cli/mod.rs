//! The command line: `serve`, `mcp`, `migrate`, `fetch`, `render`, `check`, `demo`.
//! The commands sit above the library: they may use every part of it.

mod fetchers;
mod local;
mod mcp;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{Application, Settings};

/// Mirror Home Assistant, run SQL-registered data fetchers, render LLM prompts.
#[derive(Parser, Debug)]
#[command(name = "ha-fetchers", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service: mirror HA and serve the HTTP API.
    Serve {
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Serve the Model Context Protocol over stdio (for clients that launch a
    /// command), from the same settings as `serve`.
    Mcp {
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Run the whole pipe on a built-in simulated house: no MySQL, Redis or HA
    /// needed. It reads the same settings as `serve` (BIND, API_TOKEN, limits,
    /// …) but its own house, in-memory state and fetcher files stand in for
    /// HA_URL, REDIS_URL and DATABASE_URL. A busy BIND port is swapped for a free one.
    Demo {
        /// Serve this house instead: a JSON array of states as HA's `/api/states` answers.
        #[arg(long)]
        house: Option<std::path::PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Apply mysql/schemas in order, then seed the shipped fetchers from fetchers/.
    Migrate {
        #[command(flatten)]
        settings: Settings,
    },
    /// Upsert the shipped fetchers from fetchers/ into MySQL (migrate does this too).
    Seed {
        #[command(flatten)]
        settings: Settings,
    },
    /// Run one fetcher and print its result as JSON.
    Fetch {
        /// The fetcher's name.
        name: String,
        /// A param as key=value (value parsed as JSON when it can be); repeatable.
        #[arg(long = "param", value_parser = fetchers::parse_param)]
        params: Vec<(String, serde_json::Value)>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Validate every fetcher row; exits non-zero with one line per problem.
    Check {
        #[command(flatten)]
        settings: Settings,
    },
    /// Scoped API tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
        #[command(flatten)]
        settings: Settings,
    },
    /// Render a prompt template (or an inline one) against the live house and print it.
    Render {
        /// The stored template's name.
        #[arg(required_unless_present = "inline", conflicts_with = "inline")]
        name: Option<String>,
        /// A template body to render instead of a stored one.
        #[arg(long)]
        inline: Option<String>,
        /// Fail when any fetcher fails, instead of printing a marker.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

impl Command {
    /// The settings every command takes.
    fn settings(&self) -> &Settings {
        match self {
            Command::Serve { settings }
            | Command::Mcp { settings }
            | Command::Demo { settings, .. } => settings,
            Command::Migrate { settings }
            | Command::Seed { settings }
            | Command::Fetch { settings, .. }
            | Command::Check { settings }
            | Command::Token { settings, .. }
            | Command::Render { settings, .. } => settings,
        }
    }
}

/// Loads `.env` and drops settings that are set but empty (`HA_URL=` in a
/// copied `.env.example` means "unset", not "an empty URL"). Call it before
/// any thread starts: it edits the process environment.
pub fn load_env() {
    let _ = dotenvy::dotenv();
    let cmd = <Cli as clap::CommandFactory>::command();
    for sub in cmd.get_subcommands() {
        for name in sub.get_arguments().filter_map(|a| a.get_env()) {
            if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
                std::env::remove_var(name);
            }
        }
    }
}

/// Parses arguments and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Every command reads its settings the same way and refuses, before
    // touching anything, one that can never work (the demo's links are its own).
    if !matches!(cli.command, Command::Demo { .. }) {
        cli.command.settings().validate()?;
    }
    match cli.command {
        Command::Serve { settings } => {
            let app = Application::build(*settings).await?;
            tracing::info!(port = app.port(), "Serving the API");
            let stop = app.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.cancel();
            });
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { house, settings } => {
            let stop = tokio_util::sync::CancellationToken::new();
            let signal = stop.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                signal.cancel();
            });
            crate::demo::run(*settings, house, stop).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mcp { settings } => mcp::serve(*settings).await,
        Command::Migrate { settings } => fetchers::migrate(&settings).await,
        Command::Seed { settings } => fetchers::seed_only(&settings).await,
        Command::Fetch {
            name,
            params,
            settings,
        } => fetchers::fetch(&settings, name, params).await,
        Command::Check { settings } => fetchers::check(&settings).await,
        Command::Token { command, settings } => token::run(command, &settings).await,
        Command::Render {
            name,
            inline,
            strict,
            settings,
        } => render(name, inline, strict, settings).await,
    }
}

/// Builds the engine as `serve` does (no listener), waits for HA's snapshot, renders once, and stops.
async fn render(
    name: Option<String>,
    inline: Option<String>,
    strict: bool,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    let app = local::Local::start(settings).await?;
    let opts = crate::prompt::RenderOptions {
        strict,
        ..Default::default()
    };
    let res = match (&name, &inline) {
        (_, Some(body)) => app.engine.render_inline(body, opts).await,
        (Some(n), None) => app.engine.render(n, opts).await,
        (None, None) => unreachable!("clap requires a name or --inline"),
    };
    app.stop().await;
    let out = res?;
    println!("{}", out.text);
    for e in &out.errors {
        eprintln!("warning: fetcher {} failed: {}", e.fetcher, e.message);
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("Shutting down");
}
