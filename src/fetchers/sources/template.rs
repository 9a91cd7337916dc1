//! `template`: an author's template in the one template language
//! ([`crate::jinja`], Home Assistant's functions with HA's meanings), given
//! the call's `params`. Output that parses as JSON is the result as JSON,
//! anything else is a string. Compiled when its row loads, so a broken one
//! is refused then, with line and column; sandboxed like every template: no
//! loader, fuel, recursion and output limits, and the engine's memory and
//! time budget ([`bounds::spawn`], the path prompts render on too).

use std::sync::Arc;

use async_trait::async_trait;
use minijinja::value::Value as JValue;
use serde_json::{Map, Value};

use super::{Context, Kind, Source};
use crate::bounds::{self, Budget, Stop};
use crate::fetchers::FetchError;
use crate::jinja::{self, reads, Compiled};
use crate::state::Read;

/// The kind.
pub struct Template;

impl Kind for Template {
    fn name(&self) -> &'static str {
        "template"
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
        let mut problems = Vec::new();
        let compiled = Compiled::new(name, source, |tree| problems = jinja::lint(tree))
            .map_err(|e| ("template", e))?;
        if !problems.is_empty() {
            return Err(("template", problems.join("; ")));
        }
        Ok(Arc::new(Ready(compiled)))
    }
}

/// A template that compiled and passed the lint, under its fetcher's name.
#[derive(Debug, Clone)]
struct Ready(Compiled);

#[async_trait]
impl Source for Ready {
    fn kind(&self) -> &'static str {
        Template.name()
    }

    /// The engine's timeout can still answer while the render runs on its
    /// thread, and the budget stops the render itself at the same deadline.
    async fn run(
        &self,
        cx: &Context,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        let (this, env) = (self.0.clone(), cx.env.clone());
        let ctx = minijinja::context! { params => JValue::from_serialize(params) };
        let budget = Budget::new(cx.render_memory, cx.timeout);
        let ran = bounds::spawn(budget, move || {
            let (out, reads) = reads::recording(|| this.render(&env, ctx));
            out.map(|text| (text, reads))
                .map_err(|f| format!("template failed: {}", this.describe(&f)))
        })
        .await;
        let (text, reads) = match ran {
            Ok(rendered) => rendered.map_err(FetchError::Failed)?,
            Err(Stop::Deadline(t)) => return Err(FetchError::Timeout(t.as_millis() as u64)),
            Err(stop) => return Err(FetchError::Failed(format!("template stopped: {stop}"))),
        };
        let text = text.trim();
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
        Ok((value, reads))
    }
}
