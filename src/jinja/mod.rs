//! One template language for prompt templates and template fetchers:
//! minijinja with Home Assistant's functions under HA's names and meanings
//! (`states`, `states.light`, `states('light.kitchen')`, `is_state`,
//! `state_attr`, `area_entities`, …), token-lean output filters (`compact`,
//! `count_by_state`, `names`) and one set of limits. A prompt's renderer adds
//! `fetch()`; a template fetcher gets `params`; everything else is the same.
//!
//! - [`environment`]: the environment over a state manager, built once per user.
//! - [`Compiled`]: a template parsed and compiled once, when it loads.
//! - [`render`]: a template into capped text, with the limits' errors told apart.
//! - [`reads`]: which domains a render read, so a cached result knows when it is stale.
//! - [`walk`]: a visitor over a parsed template (the `fetch()` calls, the lint).
//! - [`lint`]: forms of the old fetcher dialect, each with its fix.

mod compiled;
mod entity;
mod filters;
mod ha;
mod lint;
mod marker;
pub mod reads;
mod states;
mod time;
pub mod walk;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, Template};

pub use compiled::Compiled;
pub use entity::{name_in_id, AttrCache, Attrs, Entity, EXPOSED_ATTRIBUTES};
pub use filters::entities;
pub use ha::GLOBALS;
pub use lint::lint;
pub(crate) use marker::Unavailable;
pub use states::{state_object, StateObject};
pub use time::DateTimeValue;

use crate::capped::Capped;
use crate::state::StateManager;

/// Instructions one render may execute: a home-sized template needs well
/// under a tenth of this; an endless loop stops in a fraction of a second.
pub const FUEL: u64 = 2_000_000;
/// Nesting depth of loops, macros and calls, so a recursive macro stops early.
pub const RECURSION_LIMIT: usize = 100;
/// The largest output, as Home Assistant caps template results.
pub const MAX_OUTPUT: usize = 256 * 1024;

/// The environment every template renders in: HA's functions over `states`,
/// the output filters and the limits. No loader, so no file access.
pub fn environment(states: &StateManager) -> Environment<'static> {
    let mut env = Environment::new();
    configure(&mut env);
    ha::register(&mut env, states);
    filters::register(&mut env, states);
    env.add_filter("number", number);
    env
}

/// The limits and the syntax settings: what [`Compiled`] compiles with and
/// every render runs under.
fn configure(env: &mut Environment<'static>) {
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    // Prompts are plain text; HTML escaping would mangle them.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
}

/// `x | number`: a float, or none when `x` is not numeric (HA states are
/// strings); HA's `float` fails or needs a default instead.
fn number(v: Value) -> Value {
    if let Some(s) = v.as_str() {
        return s
            .trim()
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or(Value::from(()));
    }
    f64::try_from(v).map_or(Value::from(()), Value::from)
}

/// Why a render failed.
#[derive(Debug)]
pub enum Failure {
    /// It ran out of fuel.
    OutOfFuel,
    /// Its output passed [`MAX_OUTPUT`].
    TooLarge,
    /// Anything else minijinja reported.
    Error(minijinja::Error),
}

/// A template error for its author: what is wrong, then where, as
/// `(line 2, column 7)` when it is in `src` itself (template `name`), or as
/// minijinja names it when it is elsewhere (an included template).
pub fn located(e: &minijinja::Error, name: &str, src: &str) -> String {
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let (Some(line), true) = (e.line(), e.name().is_none_or(|n| n == name)) else {
        return e.to_string();
    };
    let column = e
        .range()
        .and_then(|r| src.get(..r.start))
        .map(|before| before.rsplit('\n').next().unwrap_or("").chars().count() + 1);
    match column {
        Some(c) => format!("{what} (line {line}, column {c})"),
        None => format!("{what} (line {line})"),
    }
}

/// Renders `tmpl` with `ctx`; output past [`MAX_OUTPUT`] stops the render.
pub fn render(tmpl: &Template<'_, '_>, ctx: Value) -> Result<String, Failure> {
    let mut out = Capped::new(MAX_OUTPUT);
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.into_inner()).map_err(|e| {
            Failure::Error(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                e.to_string(),
            ))
        }),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Failure::OutOfFuel),
        Err(_) if out.over() => Err(Failure::TooLarge),
        Err(e) => Err(Failure::Error(e)),
    }
}

/// The error HA's forgiving conversions give when there is no default.
fn invalid(func: &str, v: &Value) -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{func} got invalid input {v} and no default was given"),
    )
}
