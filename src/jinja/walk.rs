//! A walk over a parsed template that tells a visitor about every call and
//! filter, and whether some render may skip it (it sits under an `if`, a
//! loop, a macro, a ternary or after a short-circuit `and`/`or`). Comments
//! and raw blocks are not in the tree. Used to find the `fetch()` calls a
//! render can start early and to lint templates.

use minijinja::machinery::ast::{self, Spanned};

/// What the walk reports.
pub trait Visit {
    /// A call; `cond`: whether some render may skip it.
    fn call(&mut self, _call: &Spanned<ast::Call<'_>>, _cond: bool) {}
    /// A filter applied to a value.
    fn filter(&mut self, _filter: &Spanned<ast::Filter<'_>>) {}
}

/// Walks `tree`, telling `visit` what it finds.
pub fn walk(tree: &ast::Stmt<'_>, visit: &mut impl Visit) {
    Walk { visit }.stmt(tree, false);
}

/// The walk's position: only the visitor.
struct Walk<'v, V> {
    visit: &'v mut V,
}

impl<V: Visit> Walk<'_, V> {
    fn stmts(&mut self, list: &[ast::Stmt<'_>], cond: bool) {
        for s in list {
            self.stmt(s, cond);
        }
    }

    /// `cond`: whether some render may skip this statement.
    fn stmt(&mut self, s: &ast::Stmt<'_>, cond: bool) {
        use ast::Stmt as S;
        match s {
            S::Template(t) => self.stmts(&t.children, cond),
            S::EmitExpr(e) => self.expr(&e.expr, cond),
            S::EmitRaw(_) => {}
            S::ForLoop(f) => {
                self.expr(&f.iter, cond);
                self.opt(f.filter_expr.as_ref(), true);
                self.stmts(&f.body, true);
                self.stmts(&f.else_body, true);
            }
            S::IfCond(i) => {
                self.expr(&i.expr, cond);
                self.stmts(&i.true_body, true);
                self.stmts(&i.false_body, true);
            }
            S::WithBlock(w) => {
                for (_, value) in &w.assignments {
                    self.expr(value, cond);
                }
                self.stmts(&w.body, cond);
            }
            S::Set(s) => self.expr(&s.expr, cond),
            S::SetBlock(s) => {
                self.opt(s.filter.as_ref(), cond);
                self.stmts(&s.body, cond);
            }
            S::AutoEscape(a) => {
                self.expr(&a.enabled, cond);
                self.stmts(&a.body, cond);
            }
            S::FilterBlock(f) => {
                self.expr(&f.filter, cond);
                self.stmts(&f.body, cond);
            }
            S::Block(b) => self.stmts(&b.body, cond),
            S::Import(i) => self.expr(&i.expr, cond),
            S::FromImport(i) => self.expr(&i.expr, cond),
            S::Extends(e) => self.expr(&e.name, cond),
            S::Include(i) => self.expr(&i.name, cond),
            S::Macro(m) => {
                for d in &m.defaults {
                    self.expr(d, true);
                }
                self.stmts(&m.body, true);
            }
            S::CallBlock(c) => {
                self.call(&c.call, cond);
                self.stmts(&c.macro_decl.body, true);
            }
            S::Do(d) => self.call(&d.call, cond),
        }
    }

    fn opt(&mut self, e: Option<&ast::Expr<'_>>, cond: bool) {
        if let Some(e) = e {
            self.expr(e, cond);
        }
    }

    fn expr(&mut self, e: &ast::Expr<'_>, cond: bool) {
        use ast::Expr as E;
        match e {
            E::Var(_) | E::Const(_) => {}
            E::Slice(s) => {
                self.expr(&s.expr, cond);
                self.opt(s.start.as_ref(), cond);
                self.opt(s.stop.as_ref(), cond);
                self.opt(s.step.as_ref(), cond);
            }
            E::UnaryOp(u) => self.expr(&u.expr, cond),
            E::BinOp(b) => {
                self.expr(&b.left, cond);
                let short = matches!(b.op, ast::BinOpKind::ScAnd | ast::BinOpKind::ScOr);
                self.expr(&b.right, cond || short);
            }
            E::Compare(c) => {
                self.expr(&c.expr, cond);
                for op in &c.ops {
                    self.expr(&op.expr, cond);
                }
            }
            E::IfExpr(i) => {
                self.expr(&i.test_expr, cond);
                self.expr(&i.true_expr, true);
                self.opt(i.false_expr.as_ref(), true);
            }
            E::Filter(f) => {
                self.visit.filter(f);
                self.opt(f.expr.as_ref(), cond);
                self.args(&f.args, cond);
            }
            E::Test(t) => {
                self.expr(&t.expr, cond);
                self.args(&t.args, cond);
            }
            E::GetAttr(g) => self.expr(&g.expr, cond),
            E::GetItem(g) => {
                self.expr(&g.expr, cond);
                self.expr(&g.subscript_expr, cond);
            }
            E::Call(c) => self.call(c, cond),
            E::List(l) => {
                for item in &l.items {
                    self.expr(item, cond);
                }
            }
            E::Map(m) => {
                for item in m.keys.iter().chain(&m.values) {
                    self.expr(item, cond);
                }
            }
        }
    }

    fn args(&mut self, args: &[ast::CallArg<'_>], cond: bool) {
        for a in args {
            match a {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.expr(e, cond),
            }
        }
    }

    fn call(&mut self, c: &Spanned<ast::Call<'_>>, cond: bool) {
        self.visit.call(c, cond);
        self.expr(&c.expr, cond);
        self.args(&c.args, cond);
    }
}

/// The line and column (1-based) where a node starts, for authors.
pub fn at<T>(node: &Spanned<T>) -> String {
    let span = node.span();
    format!("line {}, column {}", span.start_line, span.start_col + 1)
}
