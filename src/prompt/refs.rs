//! Finds the `fetch("name", k=v)` calls in a parsed template, so the ones
//! every render reaches can run up front and concurrently. Comments are not
//! in the tree, and calls under an `if`, a loop, a macro, a ternary or a
//! short-circuit `and`/`or` may never run, so they are left to the lazy path
//! at render time (and still named, so `check` can flag an unknown fetcher).

use std::collections::HashMap;

use minijinja::machinery::ast::{self, Spanned};
use serde_json::{Map, Value};

use crate::jinja::walk::{self, Visit};

/// Distinct `fetch()` calls one template may make, written or at render time:
/// a home prompt names a handful; this stops a template that would start
/// thousands of fetcher runs.
pub const MAX_FETCH_CALLS: usize = 64;

/// One literal `fetch(...)` call.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchCall {
    /// The fetcher name.
    pub name: String,
    /// Its literal keyword arguments; `None` when some were not literals.
    pub params: Option<Map<String, Value>>,
    /// Whether every render reaches it (not inside a branch, loop or macro).
    pub upfront: bool,
}

/// A template makes more than [`MAX_FETCH_CALLS`] distinct calls.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("more than {MAX_FETCH_CALLS} distinct fetch() calls")]
pub struct TooManyCalls;

/// Every `fetch("…", …)` call in a parsed template whose name is a string
/// literal, once per name and literal params, in the order they first appear.
pub fn fetch_calls(tree: &ast::Stmt<'_>) -> Result<Vec<FetchCall>, TooManyCalls> {
    let mut found = Calls::default();
    walk::walk(tree, &mut found);
    match found.over {
        true => Err(TooManyCalls),
        false => Ok(found.calls),
    }
}

/// The walk's findings; `seen` maps a call's key to its index, so duplicates
/// cost one hash lookup, not a scan.
#[derive(Default)]
struct Calls {
    calls: Vec<FetchCall>,
    seen: HashMap<String, usize>,
    over: bool,
}

impl Calls {
    fn add(&mut self, call: FetchCall) {
        let key = match &call.params {
            Some(p) => format!("{}?{}", call.name, Value::Object(p.clone())),
            None => format!("{}?*", call.name),
        };
        if let Some(&i) = self.seen.get(&key) {
            self.calls[i].upfront |= call.upfront;
        } else if self.calls.len() == MAX_FETCH_CALLS {
            self.over = true;
        } else {
            self.seen.insert(key, self.calls.len());
            self.calls.push(call);
        }
    }
}

impl Visit for Calls {
    fn call(&mut self, c: &Spanned<ast::Call<'_>>, cond: bool) {
        if let Some(name) = fetch_name(c) {
            self.add(FetchCall {
                name,
                params: literal_kwargs(&c.args[1..]),
                upfront: !cond,
            });
        }
    }
}

/// The name of a `fetch("literal", …)` call.
fn fetch_name(c: &ast::Call<'_>) -> Option<String> {
    let ast::Expr::Var(callee) = &c.expr else {
        return None;
    };
    let Some(ast::CallArg::Pos(ast::Expr::Const(name))) = c.args.first() else {
        return None;
    };
    (callee.id == "fetch")
        .then(|| name.value.as_str().map(str::to_string))
        .flatten()
}

/// `k=literal, …`; `None` at anything else.
fn literal_kwargs(args: &[ast::CallArg<'_>]) -> Option<Map<String, Value>> {
    let mut map = Map::new();
    for a in args {
        let ast::CallArg::Kwarg(key, ast::Expr::Const(v)) = a else {
            return None;
        };
        map.insert(key.to_string(), serde_json::to_value(&v.value).ok()?);
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls_of(src: &str) -> Result<Vec<FetchCall>, TooManyCalls> {
        let mut calls = Ok(Vec::new());
        crate::jinja::Compiled::new("t", src, |tree| calls = fetch_calls(tree)).unwrap();
        calls
    }

    fn calls(src: &str) -> Vec<FetchCall> {
        calls_of(src).unwrap()
    }

    #[test]
    fn finds_literal_calls_and_their_kwargs() {
        let src = r#"{{ fetch("ha_search_pattern", pattern='light.*', limit=5) | compact }}
{% set x = fetch('ha_lights_on') %}{{ prefetch("no") }}{{ fetch(name) }}{{ fetch("a", p=var) }}"#;
        let calls = calls(src);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].name, "ha_search_pattern");
        let p = calls[0].params.as_ref().unwrap();
        assert_eq!(p["pattern"], "light.*");
        assert_eq!(p["limit"], 5);
        assert_eq!(calls[1].params, Some(Map::new()));
        assert_eq!(calls[2].name, "a");
        assert_eq!(calls[2].params, None);
        assert!(calls.iter().all(|c| c.upfront));
    }

    #[test]
    fn comments_do_not_count_and_branches_are_not_up_front() {
        let src = r#"{# fetch("in_comment") #}{% raw %}{{ fetch("in_raw") }}{% endraw %}
{% if x %}{{ fetch("in_if") }}{% endif %}{% for i in y %}{{ fetch("in_for") }}{% endfor %}
{{ a and fetch("in_and") }}{{ fetch("in_ternary") if b }}{% macro m() %}{{ fetch("in_macro") }}{% endmacro %}
{{ fetch("top") }}{% if fetch("in_test") %}{% endif %}{% if z %}{{ fetch("top") }}{% endif %}"#;
        let got: Vec<(String, bool)> = calls(src)
            .into_iter()
            .map(|c| (c.name, c.upfront))
            .collect();
        let want = [
            ("in_if", false),
            ("in_for", false),
            ("in_and", false),
            ("in_ternary", false),
            ("in_macro", false),
            ("top", true),
            ("in_test", true),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(n, u)| (n.to_string(), *u)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn duplicates_collapse_in_linear_time_and_distinct_calls_are_capped() {
        // 40,000 identical calls: one entry, found quickly.
        let body = "{{ fetch(\"ha_lights_on\") }}".repeat(40_000);
        let started = std::time::Instant::now();
        assert_eq!(calls(&body).len(), 1);
        assert!(started.elapsed().as_secs_f64() < 2.0);
        let many: String = (0..=MAX_FETCH_CALLS)
            .map(|i| format!("{{{{ fetch(\"f\", n={i}) }}}}"))
            .collect();
        assert_eq!(calls_of(&many), Err(TooManyCalls));
        let exact: String = (0..MAX_FETCH_CALLS)
            .map(|i| format!("{{{{ fetch(\"f\", n={i}) }}}}"))
            .collect();
        assert_eq!(calls(&exact).len(), MAX_FETCH_CALLS);
    }
}
