//! `template`: an author's template in the one template language
//! ([`crate::jinja`], Home Assistant's functions with HA's meanings), given
//! the call's `params`. Output that parses as JSON is the result as JSON,
//! anything else is a string. Sandboxed like every template: no loader, fuel,
//! recursion and output limits, and the engine's memory and time budget.

use std::sync::Arc;

use async_trait::async_trait;
use minijinja::value::Value as JValue;
use minijinja::Environment;
use serde_json::{Map, Value};

use super::{Context, Kind, Source};
use crate::bounds::{self, Budget, Stop};
use crate::fetchers::FetchError;
use crate::jinja::{self, reads, Failure};
use crate::state::Read;

/// The kind.
pub struct Template;

impl Kind for Template {
    fn name(&self) -> &'static str {
        "template"
    }

    fn takes_template(&self) -> bool {
        true
    }

    fn build(
        &self,
        name: &str,
        _probe: &Map<String, Value>,
        template: Option<&str>,
    ) -> Result<Arc<dyn Source>, (&'static str, String)> {
        let source = template
            .filter(|t| !t.trim().is_empty())
            .ok_or(("template", "source template needs a template".to_string()))?;
        let compiled = Compiled::new(name, source).map_err(|e| ("template", e))?;
        Ok(Arc::new(compiled))
    }
}

#[async_trait]
impl Source for Compiled {
    fn kind(&self) -> &'static str {
        Template.name()
    }

    /// Rendering is synchronous; on a blocking thread the engine's timeout can
    /// still answer, and the budget stops the render itself at the same
    /// deadline, so no thread keeps burning.
    async fn run(
        &self,
        cx: &Context,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        let (this, env, params) = (self.clone(), cx.env.clone(), params.clone());
        let budget = Budget::new(cx.render_memory, cx.timeout);
        // Called from a render: its memory counts against that render's budget.
        let caller = bounds::caller();
        let ran = tokio::task::spawn_blocking(move || {
            bounds::run_for(caller, budget, || this.render(&env, &params))
        })
        .await
        .map_err(|e| FetchError::Failed(format!("template task failed: {e}")))?;
        match ran {
            Ok(rendered) => rendered.map_err(FetchError::Failed),
            Err(Stop::Deadline(t)) => Err(FetchError::Timeout(t.as_millis() as u64)),
            Err(stop) => Err(FetchError::Failed(format!("template stopped: {stop}"))),
        }
    }
}

/// A template that parsed and passed the lint, under its fetcher's name.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The fetcher's name, the template's name in errors.
    name: Arc<str>,
    /// The source.
    source: Arc<str>,
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
            name: name.into(),
            source: source.into(),
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
