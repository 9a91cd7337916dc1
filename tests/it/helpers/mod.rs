//! What the test modules share.
//!
//! - [`harness`]: the real application against a simulated Home Assistant, on
//!   a memory or Redis store; `both!` runs a case on each.
//! - [`api`]: the router in-process, one request at a time.
//! - [`fixtures`]: recorded HA houses, the fetcher tests' states, the shipped fetchers.
//! - [`wait`]: bounded polling.
//! - [`logs`]: log capture.
//! - [`serial`]: one at a time for the tests that measure time, CPU or memory.
//! - [`services`]: where Redis, MySQL and a real Home Assistant run.
//! - [`real`]: a real Home Assistant for the conformance tests.
//! - [`ingress`]: a path-prefix proxy, as Home Assistant's ingress is.
//! - [`tls`]: a CA made by the run, and TLS endpoints (socat, Redis, MariaDB) it signed.

pub mod api;
pub mod fixtures;
pub mod harness;
pub mod ingress;
pub mod logs;
pub mod mcp;
pub mod proc;
pub mod real;
pub mod serial;
pub mod services;
pub mod tls;
pub mod wait;

pub(crate) use harness::both;
pub use harness::{settings, Harness, Kind, TestStore, TOKEN};
pub use logs::Logs;
pub use wait::{wait_for, wait_for_async};
