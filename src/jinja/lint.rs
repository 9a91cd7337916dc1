//! Forms of the old fetcher-template dialect, each with its fix. Fetcher
//! templates once had their own functions; they now speak Home Assistant's
//! template language like prompts do, where some of the same words mean
//! something else. A row that still uses them is reported (and not loaded)
//! rather than silently rendered with the new meaning.

use minijinja::machinery::ast::{self, Spanned};

use super::walk::{self, at, Visit};

/// What is wrong with a parsed template, one line per use, naming where and
/// the fix (the tree [`super::Compiled::new`] hands its caller).
pub fn lint(tree: &ast::Stmt<'_>) -> Vec<String> {
    let mut found = Found::default();
    walk::walk(tree, &mut found);
    found.0
}

/// The problems so far.
#[derive(Default)]
struct Found(Vec<String>);

impl Visit for Found {
    fn call(&mut self, c: &Spanned<ast::Call<'_>>, _cond: bool) {
        let ast::Expr::Var(callee) = &c.expr else {
            return;
        };
        let first = match c.args.first() {
            Some(ast::CallArg::Pos(ast::Expr::Const(k))) => k.value.as_str(),
            _ => None,
        };
        match (callee.id, first) {
            ("states", Some(domain)) if !domain.contains('.') => self.0.push(format!(
                "{}: states(\"{domain}\") is the state of an entity called {domain:?} (as in Home Assistant), \
                 not the {domain} domain: use states.{domain}",
                at(c)
            )),
            ("state", _) => self.0.push(format!(
                "{}: state() is gone: use states.light.kitchen for the entity, or \
                 states(\"light.kitchen\") for its state text",
                at(c)
            )),
            ("compact", _) => self.0.push(format!(
                "{}: compact() is gone: compact is a filter that writes prompt text \
                 (x | compact); to return JSON, build the objects and finish with tojson",
                at(c)
            )),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_src(src: &str) -> Vec<String> {
        let mut found = Vec::new();
        super::super::Compiled::new("t", src, |tree| found = lint(tree)).unwrap();
        found
    }

    #[test]
    fn old_fetcher_forms_are_named_with_their_fix() {
        let src = "{% for c in states(\"climate\") %}{{ state('light.a') }}{% endfor %}\n{{ compact(x) }}";
        let found = lint_src(src);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("line 1, column 13: states(\"climate\")"),
            "{}",
            found[0]
        );
        assert!(found[0].ends_with("use states.climate"));
        assert!(found[1].contains("state() is gone"));
        assert!(found[2].starts_with("line 2"), "{}", found[2]);
    }

    #[test]
    fn home_assistant_forms_pass() {
        let src = "{{ states('light.kitchen') }}{% for c in states.climate %}{{ c | compact }}{% endfor %}{{ states.light.kitchen.state }}";
        assert_eq!(lint_src(src), Vec::<String>::new());
    }
}
