//! A template compiled once, when it loads. Its source is parsed one time:
//! the caller reads that tree (a prompt's `fetch()` calls, a template
//! fetcher's lint), the names it leaves undeclared are listed from it, and
//! the same tree is compiled. A render makes a handle over the compiled form
//! in the environment it runs in, so nothing is parsed per render.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use minijinja::machinery::{ast, find_undeclared, CompiledTemplate};
use minijinja::value::Value;
use minijinja::Environment;
use self_cell::self_cell;

use super::{configure, located, render, Failure};
use crate::bounds::{self, Budget};

/// The name and text a compiled template borrows from.
struct Text {
    /// The template's name, in its errors.
    name: Box<str>,
    /// Its source.
    source: Box<str>,
}

self_cell!(
    /// The text and what was compiled from it, kept together.
    struct Cell {
        owner: Text,
        #[covariant]
        dependent: CompiledTemplate,
    }
);

/// A template parsed and compiled once; clones share it.
#[derive(Clone)]
pub struct Compiled(Arc<Inner>);

/// What a compiled template holds.
struct Inner {
    /// The text and its instructions.
    cell: Cell,
    /// Names it reads without setting them, sorted: its fetchers and variables.
    undeclared: Vec<String>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// An environment with only the syntax and whitespace settings every
/// template is compiled with: compiling needs no states, so a row or a
/// template is compiled where it loads.
fn syntax() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        configure(&mut env);
        env
    })
}

/// What constant folding may allocate while a template compiles. Folding
/// (`"a" * 10**8`) computes at compile time what a render would, so it runs
/// under a budget of its own: a fold past it is refused and compiles as an
/// ordinary operation, run (and bounded) by each render instead of held for
/// the template's life. A home template folds a few short strings.
const FOLD_MEMORY: usize = 1024 * 1024;
/// The time folding may take; past it, the remaining folds are refused too.
const FOLD_TIMEOUT: Duration = Duration::from_secs(1);

impl Compiled {
    /// Parses `source` (called `name` in errors), hands the tree to
    /// `inspect`, and compiles it. `Err` is the syntax error, with line and
    /// column.
    pub fn new(
        name: &str,
        source: &str,
        inspect: impl FnOnce(&ast::Stmt<'_>),
    ) -> Result<Self, String> {
        let mut compiled = None;
        let budget = Budget::new(FOLD_MEMORY, FOLD_TIMEOUT);
        // A stop only refused folds; what compiled is whole.
        let _ = bounds::run_alone(budget, || {
            compiled = Some(Self::compile(name, source, inspect));
        });
        compiled.unwrap_or_else(|| Err("the compile was stopped".into()))
    }

    fn compile(
        name: &str,
        source: &str,
        inspect: impl FnOnce(&ast::Stmt<'_>),
    ) -> Result<Self, String> {
        let text = Text {
            name: name.into(),
            source: source.into(),
        };
        let mut undeclared = Vec::new();
        let cell = Cell::try_new(text, |t| {
            syntax().compile_inspected(&t.name, &t.source, |tree| {
                inspect(tree);
                undeclared = find_undeclared(tree, false).into_iter().collect();
            })
        })
        .map_err(|e| located(&e, name, source))?;
        undeclared.sort();
        Ok(Self(Arc::new(Inner { cell, undeclared })))
    }

    /// The name it was compiled under.
    pub fn name(&self) -> &str {
        &self.0.cell.borrow_owner().name
    }

    /// Its source.
    pub fn source(&self) -> &str {
        &self.0.cell.borrow_owner().source
    }

    /// The names it reads without setting them, sorted.
    pub fn undeclared(&self) -> &[String] {
        &self.0.undeclared
    }

    /// Renders it in `env` with `ctx`, capped as [`render`] caps.
    pub fn render(&self, env: &Environment<'static>, ctx: Value) -> Result<String, Failure> {
        let tmpl = env.template_from_compiled(self.0.cell.borrow_dependent());
        render(&tmpl, ctx)
    }

    /// What `failure` means for its author, with line and column: the one
    /// wording prompts and template fetchers share.
    pub fn describe(&self, failure: &Failure) -> String {
        match failure {
            Failure::OutOfFuel => format!(
                "ran out of fuel: it did more than {} steps (endless loop or runaway recursion?)",
                super::FUEL
            ),
            Failure::TooLarge => {
                format!(
                    "it produced more than {} bytes of output",
                    super::MAX_OUTPUT
                )
            }
            Failure::Error(e) => located(e, self.name(), self.source()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parse_gives_the_tree_the_names_and_the_program() {
        let mut seen = 0;
        let c = Compiled::new(
            "t",
            "{% set x = 1 %}{{ y }}{{ x }}\n{{ z | upper }}",
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!(seen, 1);
        assert_eq!(c.undeclared(), ["y", "z"]);
        let env = syntax();
        let out = c
            .render(
                env,
                Value::from_serialize(serde_json::json!({"y": 2, "z": "a"})),
            )
            .unwrap();
        assert_eq!(out, "21\nA");
    }

    #[test]
    fn a_large_fold_is_left_to_the_render_and_its_budget() {
        // Folded at compile time, this would be a 100 MB string held for good.
        let c = Compiled::new("t", "{% set s = 'a' * 10**8 %}{{ s | length }}", |_| {}).unwrap();
        let held_before = crate::memory::thread_balance();
        let ran = bounds::run(Budget::new(16 << 20, Duration::from_secs(5)), || {
            c.render(syntax(), Value::UNDEFINED)
        });
        assert!(matches!(ran, Err(bounds::Stop::Memory(_))), "{ran:?}");
        assert!(crate::memory::thread_balance() - held_before < 16 << 20);
        // A small fold stays folded, and renders.
        let c = Compiled::new("t", "{{ 'ab' * 3 }}", |_| {}).unwrap();
        assert_eq!(c.render(syntax(), Value::UNDEFINED).unwrap(), "ababab");
    }

    #[test]
    fn many_small_folds_share_one_budget() {
        // Each fold under the budget, 180 MB together if all were kept.
        let src = "{{ ('a' * 900000) | length }}".repeat(200);
        let before = crate::memory::thread_balance();
        let c = Compiled::new("t", &src, |_| {}).unwrap();
        let held = crate::memory::thread_balance() - before;
        assert!(held < 4 << 20, "the compiled template holds {held} bytes");
        let out = c.render(syntax(), Value::UNDEFINED).unwrap();
        assert_eq!(out, "900000".repeat(200));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = Compiled::new("t", "ok\n{{ 1 + }}", |_| {}).unwrap_err();
        assert!(err.contains("(line 2, column"), "{err}");
        let c = Compiled::new("t", "a\n  {{ nope() }}", |_| {}).unwrap();
        let Err(f) = c.render(syntax(), Value::UNDEFINED) else {
            panic!("rendered")
        };
        let said = c.describe(&f);
        assert!(said.contains("(line 2, column 6)"), "{said}");
    }
}
