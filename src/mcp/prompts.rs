//! Prompt templates as MCP prompts: each enabled template by name, its
//! arguments the variables it uses that no fetcher answers, and `prompts/get`
//! rendering it live.

use rmcp::model::{GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role};
use rmcp::ErrorData;

use crate::engine::Engine;
use crate::prompt::{PromptTemplate, RenderError, RenderOptions};

/// Every enabled template, by name.
pub fn list(app: &Engine) -> Vec<Prompt> {
    let mut templates = app.prompt_list();
    templates.retain(|t| t.enabled);
    templates
        .into_iter()
        .map(|t| {
            let args = arguments(app, &t);
            let description = (!t.description.trim().is_empty()).then_some(t.description);
            Prompt::new(t.name, description, Some(args))
        })
        .collect()
}

/// The variables `t` reads that are neither fetchers nor functions: what a
/// caller may pass. Optional: an unset one renders empty, as in the REST API.
fn arguments(app: &Engine, t: &PromptTemplate) -> Vec<PromptArgument> {
    app.prompts()
        .references(&t.name)
        .map(|r| r.unknown)
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            PromptArgument::new(name)
                .with_description("A template variable")
                .with_required(false)
        })
        .collect()
}

/// Renders the template `name` with `arguments` as its variables.
pub async fn get(
    app: &Engine,
    name: &str,
    arguments: JsonObject,
) -> Result<GetPromptResult, ErrorData> {
    let opts = RenderOptions {
        variables: arguments,
        strict: false,
    };
    match app.render(name, opts).await {
        Ok(r) => {
            let mut out = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, r.text)]);
            if let Some(t) = app.prompts().get(name) {
                if !t.description.trim().is_empty() {
                    out = out.with_description(t.description);
                }
            }
            Ok(out)
        }
        Err(RenderError::NotFound(_)) => Err(ErrorData::invalid_params(
            format!("no prompt {name:?}; prompts/list names them"),
            None,
        )),
        // The author's mistake or a limit: say which, as the REST API does.
        Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
    }
}
