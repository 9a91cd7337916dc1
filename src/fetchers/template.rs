//! The `template` source: an author's template in the one template language
//! ([`crate::jinja`], Home Assistant's functions with HA's meanings), given
//! the call's `params`. Output that parses as JSON is the result as JSON,
//! anything else is a string. Sandboxed like every template: no loader, fuel,
//! recursion and output limits, and the engine's memory and time budget.

use minijinja::value::Value as JValue;
use minijinja::Environment;
use serde_json::{Map, Value};

use crate::jinja::{self, reads, Failure};
use crate::state::Read;

/// A template that parsed and passed the lint, under its fetcher's name.
#[derive(Debug)]
pub struct Compiled {
    /// The fetcher's name, the template's name in errors.
    name: String,
    /// The source.
    source: String,
}

impl Compiled {
    /// Checks `source`: a syntax error or a form of the old fetcher dialect
    /// (`states("climate")`, …) is the reason, with line and column, for `check`.
    pub fn new(name: &str, source: &str) -> Result<Self, String> {
        let problems = jinja::lint(name, source);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Self {
            name: name.to_string(),
            source: source.to_string(),
        })
    }

    /// Renders in `env` with `params`, and lists the domains it read.
    pub fn render(
        &self,
        env: &Environment<'static>,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), String> {
        let tmpl = env
            .template_from_named_str(&self.name, &self.source)
            .map_err(|e| describe(&e))?;
        let ctx = minijinja::context! { params => JValue::from_serialize(params) };
        let (out, reads) = reads::recording(|| jinja::render(&tmpl, ctx));
        let out = out.map_err(|f| match f {
            Failure::OutOfFuel => format!(
                "ran out of fuel: more than {} steps (endless loop?)",
                jinja::FUEL
            ),
            Failure::TooLarge => format!("output is more than {} bytes", jinja::MAX_OUTPUT),
            Failure::Error(e) => describe(&e),
        })?;
        let out = out.trim();
        let value = serde_json::from_str(out).unwrap_or_else(|_| Value::String(out.to_string()));
        Ok((value, reads))
    }
}

/// One line: the error and where it is.
fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}
