//! The Model Context Protocol front door, on the official Rust SDK (`rmcp`):
//! the same fetchers, prompts and live house the REST API serves, in the
//! protocol every LLM client speaks.
//!
//! - [`handler`]: the [`Mcp`] server: capabilities and dispatch.
//! - [`tools`]: one tool per enabled fetcher, then `live_context`,
//!   `search_entities` and `get_entity` ([`live`] renders those).
//! - [`args`]: checks a call's arguments against a tool's input schema, so a
//!   mistake is named before anything runs.
//! - [`reply`]: a result as a tool result: `crate::fetchers::lean`'s text
//!   beside the JSON, or a failure.
//! - [`prompts`]: prompt templates as MCP prompts.
//! - [`resources`]: `ha://entity/…`, `ha://domain/…`, `ha://fetcher/…`.
//! - [`session`]: per-client watcher: resource updates and list changes.
//! - [`sessions`]: the `/mcp` sessions kept: a cap, least recently used first out, an idle timeout.
//! - [`stdio`]: the stdio transport's line check: a bad or oversized line gets a JSON-RPC error.
//! - [`wire`]: what one JSON-RPC message is, and the error for what is not.
//! - [`http`]: `/mcp` (Streamable HTTP) with its Host check and plain JSON
//!   answers; `ha-fetchers mcp` serves the same over stdio (`crate::cli`).

mod handler;
mod http;
mod live;
mod prompts;
mod reply;
mod resources;
mod session;
mod sessions;
pub mod stdio;
mod tools;
mod wire;

pub use handler::Mcp;
pub use http::{router, PATH};
pub use session::{lists, Lists};
pub use sessions::SESSION_IDLE;
