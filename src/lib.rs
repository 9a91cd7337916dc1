//! ha-fetchers: the data layer of a home "Master Control Program".
//!
//! Data flows one way:
//!
//! ```text
//! Home Assistant ─ws─▶ ha::Session ─changes─▶ state::Writer ─batches─▶ state::Store (Redis | memory)
//!                          │                                               │
//!                          └─ ha::HaRest on a miss ◀──────────────── state::StateManager (queries)
//!                                                                          │
//!                                      jinja (the template language) ─┬──────────────┐
//!  MySQL rows / fetchers/ ─▶ fetchers::Registry ─▶ fetchers::Runner ─▶ prompt ─▶ stream (changes, reloads)
//!                                                                                  │
//!                         engine (states, fetchers, templates, stream: one handle) ◀┘
//!                           ├─▶ api (REST) · mcp (/mcp) · console (/), one error contract (door)
//!                           └─▶ cli (`render`, `fetch`, `check`, `mcp` over stdio)
//! ```
//!
//! Imports point down these layers, lowest first; a module imports only
//! lower layers (`scripts/check-cycles.py`, run by CI, holds to it):
//!
//! ```text
//! config memory telemetry periodic capped → tls bounds → state → ha jinja sim
//!   → fetchers → prompt → stream → engine → door tokens → api mcp console → app demo → cli
//! ```
//!
//! - [`config`]: typed settings from flags, environment and `.env`, checked at start.
//! - [`tls`]: rustls for the links out (HA, Redis): the platform's roots, a CA file, or an opt-out.
//! - [`ha`]: protocol types, the WebSocket session, the REST fallback.
//! - [`state`]: the store trait, its Redis and in-memory implementations, the writer and queries.
//! - [`fetchers`]: definitions from MySQL rows or `fetchers/*.toml`, the hot-reloading registry, the runner,
//!   and the `sql` source's read-only queries over the program's own MySQL data.
//! - [`jinja`]: the one template language: minijinja with HA's functions, output filters, limits.
//! - [`prompt`]: prompt templates in that language, with `fetch()`, fed by fetchers.
//! - [`engine`]: the one façade every door uses: states, fetchers, templates and
//!   the change stream, built once from settings and a store.
//! - [`door`]: what the HTTP doors share: the one error contract, `ApiError`.
//! - [`tokens`]: API tokens with scopes (`token create`), kept as hashes in MySQL or a file.
//! - [`api`]: the REST routes: the token, limits and logins of this door.
//! - [`mcp`]: the Model Context Protocol front door (rmcp): fetchers as tools,
//!   templates as prompts, live resources; mounted beside `api`.
//! - [`stream`]: the change stream (`/api/v1/events`): numbered events, a
//!   resume buffer, per-subscriber queues, and the activity figures.
//! - [`console`]: the browser console at `/`, assets embedded; beside `api`.
//! - [`app`]: `Application`: the engine behind the HTTP doors, its listener bound.
//! - [`sim`]: a simulated Home Assistant for the demo and the tests.
//! - [`demo`]: the `demo` command, the whole pipe on the simulated house.
//! - [`telemetry`]: logs and the Prometheus recorder.
//! - [`bounds`]: memory and time budgets for template renders.
//! - [`periodic`]: the one loop behind every periodic task.
//! - [`capped`]: the one buffer that stops at a size limit (render output, answers).
//! - [`memory`]: the counting allocator; hands freed memory back to the OS.
//! - [`cli`]: the commands behind the binary.

pub mod api;
pub mod app;
pub mod bounds;
pub mod capped;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod door;
pub mod engine;
pub mod fetchers;
pub mod ha;
pub mod jinja;
pub mod mcp;
pub mod memory;
pub mod periodic;
pub mod prompt;
pub mod sim;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod tokens;

pub use app::Application;
pub use config::Settings;
