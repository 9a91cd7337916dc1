//! Prompt templates: the one template language ([`crate::jinja`]) plus
//! `fetch()`, fed by the fetchers a template names, under a memory and time
//! budget ([`crate::bounds`]).
//!
//! - [`Renderer`]: the environment, built once; finds and runs the fetchers a
//!   template uses, then renders.
//! - [`FetcherSource`]: what the renderer needs from the fetcher engine.
//! - [`Prompts`]: the stored templates (MySQL with hot reload, else files).
//! - `check`: the validator behind `ha-fetchers check` ([`Prompts::check`]).

mod check;
mod fetch;
mod refs;
mod render;
mod source;
mod store;
mod template;

use check::check;
pub use fetch::{FetchFailure, FetchRun};
pub use refs::{fetch_calls, FetchCall, TooManyCalls, MAX_FETCH_CALLS};
pub use render::{prepare, Prepared, References, RenderOptions, Rendered, Renderer};
pub use source::{FetcherSource, NoFetchers};
pub use store::{
    load_db, load_dir, seed, Prompts, TemplateStoreError, INLINE_NAME, PROMPTS_SUBDIR,
};
pub use template::PromptTemplate;

/// Why a render failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("no prompt template named {0}")]
    NotFound(String),
    #[error("template {template} has a syntax error: {message}")]
    Syntax { template: String, message: String },
    #[error("template {template} refers to unknown fetcher {name}")]
    UnknownFetcher { template: String, name: String },
    #[error("template {template}: fetcher {fetcher} failed ({reason}) and strict mode is on")]
    FetcherFailed {
        template: String,
        fetcher: String,
        reason: String,
    },
    #[error("template {template} ran out of fuel: it did more than {fuel} steps (endless loop or runaway recursion?)")]
    OutOfFuel { template: String, fuel: u64 },
    #[error("template {template} was stopped: {stop}")]
    Stopped {
        template: String,
        stop: crate::bounds::Stop,
    },
    #[error("template {template} makes more than {limit} distinct fetch() calls")]
    TooManyFetches { template: String, limit: usize },
    #[error("template {template} produced more than {limit} bytes of output")]
    TooLarge { template: String, limit: usize },
    #[error("template {template} failed to render: {message}")]
    Render { template: String, message: String },
    #[error("render failed: {0}")]
    Internal(String),
}
