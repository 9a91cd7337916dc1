//! The integration tests, one binary: each module is one area, [`helpers`]
//! holds what they share.

mod helpers;

mod abuse;
mod api;
mod big_frame;
mod cli_check;
mod cli_demo;
mod cli_settings;
mod console;
mod console_ingress;
mod events;
mod fetchers_engine;
mod fetchers_mysql;
mod fetchers_sql;
mod fuzz;
mod fuzz_hostile;
mod fuzz_templates;
mod mcp;
mod mcp_python;
mod openapi;
mod prompt;
mod real_ha;
mod real_ha_exposure;
mod real_ha_history;
mod real_ha_restarts;
mod real_ha_templates;
mod redis_outage;
mod render_bounds;
mod resilience;
mod scopes;
mod sim_cache_modes;
mod sim_exposure;
mod sim_history;
mod sim_link;
mod sim_mirror;
mod sim_protocol;
mod tls;
