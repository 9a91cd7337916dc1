//! Validation of stored templates: syntax, and names that are no fetcher.

use super::template::PromptTemplate;
use super::{Prepared, RenderError, Renderer};
use crate::fetchers::{valid_name, Problem, NAME_RULE};

/// Checks every template as loaded (with its compiled form or why it has
/// none): valid name, a body that compiles, and only known fetchers.
pub fn check(
    renderer: &Renderer,
    templates: &[(&PromptTemplate, Result<&Prepared, &RenderError>)],
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |t: &PromptTemplate, field: &str, reason: String| {
        out.push(Problem {
            what: "template",
            ..Problem::new(&t.name, field, reason)
        })
    };
    for (t, prepared) in templates {
        if !valid_name(&t.name) {
            problem(t, "name", NAME_RULE.into());
        }
        let refs = match prepared {
            Ok(p) => renderer.references(p, &Default::default()),
            Err(e) => {
                problem(t, "body", e.to_string());
                continue;
            }
        };
        for name in refs.unknown {
            problem(
                t,
                "body",
                format!("{name} is not a fetcher or a template function"),
            );
        }
        for call in refs.calls.iter() {
            if !renderer.source().exists(&call.name) {
                problem(
                    t,
                    "body",
                    format!("fetch(\"{}\") names no fetcher", call.name),
                );
            }
        }
    }
    out
}
