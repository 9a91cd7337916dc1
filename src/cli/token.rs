//! `token create|list|revoke`: scoped API tokens. A new token is printed
//! once, as the last line; only its hash is kept.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Settings;
use crate::state::{Scope, ScopeSpec};
use crate::tokens::{self, Backend, Stored};

/// What to do with tokens.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token that sees only its scope; prints it once, as the last line.
    Create {
        /// Its name (what `list` shows and `revoke` takes).
        name: String,
        /// The entities it sees: `assist` (what Home Assistant exposes to
        /// Assist), `all`, or ids, globs, `domain:x` and `area:y`, comma-separated.
        #[arg(long)]
        scope: String,
        /// The fetchers it may run, names or globs, comma-separated (default: all).
        #[arg(long, default_value = "")]
        fetchers: String,
        /// The prompt templates it may render, names or globs (default: all).
        #[arg(long, default_value = "")]
        prompts: String,
    },
    /// The tokens and their scopes (never the tokens themselves).
    List,
    /// Revoke a token by name; it stops working within RELOAD_INTERVAL.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn backend(settings: &Settings) -> anyhow::Result<Backend> {
    let pool = match settings.database_url {
        Some(_) => Some(super::fetchers::pool(settings)?),
        None => None,
    };
    Ok(tokens::backend(settings, pool))
}

/// Runs one token command.
pub async fn run(cmd: TokenCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = backend(settings)?;
    match cmd {
        TokenCommand::Create {
            name,
            scope,
            fetchers,
            prompts,
        } => {
            let spec = ScopeSpec {
                entities: tokens::parse_entities(&scope),
                fetchers: tokens::parse_list(&fetchers),
                prompts: tokens::parse_list(&prompts),
            };
            let checked =
                Scope::new(&name, spec.clone()).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let (token, hash) = tokens::mint();
            store
                .create(Stored {
                    name: name.clone(),
                    hash,
                    scope: spec,
                    created_at: chrono::Utc::now().to_rfc3339(),
                })
                .await?;
            println!("token {name}: {}", checked.describe());
            println!("it is shown once; give it to the client as `Authorization: Bearer <token>`:");
            println!("{token}");
        }
        TokenCommand::List => {
            for t in store.load().await? {
                let line = match Scope::new(&t.name, t.scope) {
                    Ok(s) => s.describe(),
                    Err(e) => format!("unusable scope: {e}"),
                };
                println!("{}\t{}\t{line}", t.name, t.created_at);
            }
        }
        TokenCommand::Revoke { name } => {
            store.revoke(&name).await?;
            println!("token {name} revoked; it stops working within RELOAD_INTERVAL");
        }
    }
    Ok(ExitCode::SUCCESS)
}
