//! A `sql` fetcher's query: parsed with sqlparser (MySQL dialect) and refused
//! unless it is one read, then rewritten from `:name` to `?` so every value
//! is bound by the server, never spliced into the text.
//!
//! The parse is the first of three walls: the read-only transaction and the
//! server's time limit ([`super::Database`]) hold even for what a parser
//! might miss.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query as AstQuery, Select, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

/// A checked query, ready to prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The author's text with each `:name` replaced by `?` (and a trailing
    /// `;` dropped): what the server prepares.
    pub text: String,
    /// The param bound to each `?`, in order; a name used twice is bound twice.
    pub binds: Vec<String>,
}

impl Query {
    /// The distinct param names the query uses, in first-use order.
    pub fn names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for b in &self.binds {
            if !out.contains(&b.as_str()) {
                out.push(b);
            }
        }
        out
    }
}

/// Functions that write, take locks, wait on replication or read the
/// server's files: refused although they sit inside a `SELECT`.
const REFUSED_FUNCTIONS: &[&str] = &[
    "LOAD_FILE",
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_USED_LOCK",
    "IS_FREE_LOCK",
    "NEXTVAL",
    "SETVAL",
    "MASTER_POS_WAIT",
    "MASTER_GTID_WAIT",
    "SOURCE_POS_WAIT",
    "WAIT_FOR_EXECUTED_GTID_SET",
    "SYS_EXEC",
    "SYS_EVAL",
];

/// What [`parse`] accepts, for error messages.
pub const RULE: &str = "only one SELECT (or WITH … SELECT) is allowed";

/// Checks `sql` and rewrites its `:name` params; `Err` says what is refused
/// and, where it can, the line and column. Long because it is the one list
/// of what a query may be, checked in order on one parse.
pub fn parse(sql: &str) -> Result<Query, String> {
    if sql.trim().is_empty() {
        return Err(format!("is empty; {RULE}"));
    }
    let tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| format!("does not parse: {}", parser_words(&e)))?;
    let mut spans = Vec::new();
    let mut end = sql.len();
    let mut i = 0;
    while i < tokens.len() {
        let at = tokens[i].span.start;
        match &tokens[i].token {
            Token::Whitespace(Whitespace::MultiLineComment(c))
                if c.starts_with('!') || c.starts_with("M!") =>
            {
                return Err(format!(
                    "executable comments (/*! … */, /*M! … */) are refused ({})",
                    place(at)
                ))
            }
            Token::Placeholder(p) => {
                return Err(format!(
                    "positional parameter {p} is refused: name it, e.g. :room ({})",
                    place(at)
                ))
            }
            Token::Assignment => {
                return Err(format!(
                    "assigning a variable (:=) is not a read ({})",
                    place(at)
                ))
            }
            Token::Colon => match tokens.get(i + 1).map(|t| &t.token) {
                Some(Token::Word(w)) if w.quote_style.is_none() && valid_param(&w.value) => {
                    let from = offset(sql, at);
                    let to = offset(sql, tokens[i + 1].span.end);
                    spans.push((from, to, w.value.clone()));
                    i += 1;
                }
                _ => {
                    return Err(format!(
                        "':' must be followed directly by a param name of a-z, 0-9 and _ ({})",
                        place(at)
                    ))
                }
            },
            Token::SemiColon => {
                let rest_blank = tokens[i + 1..]
                    .iter()
                    .all(|t| matches!(t.token, Token::Whitespace(_)));
                if !rest_blank {
                    return Err(format!("holds more than one statement; {RULE}"));
                }
                end = offset(sql, at);
            }
            _ => {}
        }
        i += 1;
    }
    let statements = Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| {
        refused_keyword(&tokens).unwrap_or_else(|| format!("does not parse: {}", parser_words(&e)))
    })?;
    let [statement] = &statements[..] else {
        return Err(format!("holds {} statements; {RULE}", statements.len()));
    };
    if !matches!(statement, Statement::Query(_)) {
        let verb = statement.to_string();
        let verb = verb.split_whitespace().next().unwrap_or("").to_uppercase();
        return Err(format!("{verb} is not a read; {RULE}"));
    }
    if let ControlFlow::Break(reason) = statement.visit(&mut ReadOnly) {
        return Err(reason);
    }
    let mut text = sql[..end].to_string();
    let mut binds = Vec::with_capacity(spans.len());
    for (from, to, name) in spans.into_iter().rev() {
        text.replace_range(from..to, "?");
        binds.push(name);
    }
    binds.reverse();
    Ok(Query { text, binds })
}

/// Param names as callers pass them: `a-z`, `0-9`, `_`, a letter first.
fn valid_param(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A clearer reason than the parser's for the writes MySQL spells in ways
/// the parser does not know (`INTO OUTFILE`, `LOCK IN SHARE MODE`).
fn refused_keyword(tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> Option<String> {
    tokens.iter().find_map(|t| match &t.token {
        Token::Word(w) if w.quote_style.is_none() => match w.value.to_uppercase().as_str() {
            "INTO" | "OUTFILE" | "DUMPFILE" => Some(format!(
                "SELECT … INTO writes a file or variables; {RULE} ({})",
                place(t.span.start)
            )),
            "LOCK" => Some(format!(
                "locking reads (LOCK IN SHARE MODE, FOR UPDATE, FOR SHARE) are refused ({})",
                place(t.span.start)
            )),
            _ => None,
        },
        _ => None,
    })
}

/// Walks every nested query and expression for what a `SELECT` may still hide.
struct ReadOnly;

impl Visitor for ReadOnly {
    type Break = String;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
        match s {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => {
                let verb = other.to_string();
                let verb = verb.split_whitespace().next().unwrap_or("").to_uppercase();
                ControlFlow::Break(format!("{verb} inside the query is not a read; {RULE}"))
            }
        }
    }

    fn pre_visit_query(&mut self, q: &AstQuery) -> ControlFlow<String> {
        if !q.locks.is_empty() {
            return ControlFlow::Break(
                "locking reads (FOR UPDATE, FOR SHARE) are refused".to_string(),
            );
        }
        match &*q.body {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break(format!("a write inside the query is not a read; {RULE}"))
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<String> {
        match s.into {
            Some(_) => {
                ControlFlow::Break(format!("SELECT … INTO writes a table or variables; {RULE}"))
            }
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_uppercase();
            let last = name.rsplit('.').next().unwrap_or(&name).trim_matches('`');
            if REFUSED_FUNCTIONS.contains(&last) {
                return ControlFlow::Break(format!(
                    "{last}() writes, locks, waits or reads the server's files; refused"
                ));
            }
        }
        ControlFlow::Continue(())
    }
}

/// The parser's message, its place said as the rest of this file says it.
fn parser_words(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let text = text
        .trim_start_matches("sql parser error: ")
        .trim_start_matches("sql tokenizer error: ");
    match text.rsplit_once(" at Line: ") {
        Some((what, at)) => match at.split_once(", Column: ") {
            Some((l, c)) => format!("{what} (line {l}, column {c})"),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

/// "line L, column C" of a token.
fn place(at: Location) -> String {
    format!("line {}, column {}", at.line, at.column)
}

/// The byte offset of a 1-based line and (character) column in `sql`.
fn offset(sql: &str, at: Location) -> usize {
    let line_start: usize = sql
        .split_inclusive('\n')
        .take((at.line as usize).saturating_sub(1))
        .map(str::len)
        .sum();
    let line = &sql[line_start..];
    line_start
        + line
            .char_indices()
            .nth((at.column as usize).saturating_sub(1))
            .map_or(line.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        parse(sql).expect_err(sql)
    }

    #[test]
    fn named_params_become_placeholders_outside_strings_and_comments() {
        let q = parse(
            "SELECT title, ':not' AS s -- :nor\nFROM reminders\nWHERE due < :until AND who = :who OR who = :until;",
        )
        .unwrap();
        assert_eq!(
            q.text,
            "SELECT title, ':not' AS s -- :nor\nFROM reminders\nWHERE due < ? AND who = ? OR who = ?"
        );
        assert_eq!(q.binds, ["until", "who", "until"]);
        assert_eq!(q.names(), ["until", "who"]);
        let q = parse("SELECT 'é', :é_not_a_name").unwrap_err();
        assert!(q.contains("':'"), "{q}");
        let q = parse("SELECT 'é' AS `ü`, :x\n , :y LIMIT :limit").unwrap();
        assert_eq!(q.text, "SELECT 'é' AS `ü`, ?\n , ? LIMIT ?");
    }

    #[test]
    fn a_with_query_is_a_read() {
        let q = parse("WITH d AS (SELECT 1 AS a) SELECT a FROM d WHERE a = :a").unwrap();
        assert_eq!(q.binds, ["a"]);
    }

    #[test]
    fn mysql_and_mariadb_reads_parse() {
        for sql in [
            "SELECT `when`, doc->>'$.title' AS t FROM notes WHERE doc->'$.tags' IS NOT NULL",
            "SELECT /*+ MAX_EXECUTION_TIME(100) */ title FROM reminders LIMIT 5, 10",
            "SELECT j.tag FROM notes, JSON_TABLE(notes.tags, '$[*]' COLUMNS (tag VARCHAR(20) PATH '$')) AS j",
            "WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < :upto) SELECT i FROM n",
            "SELECT person, ROW_NUMBER() OVER (PARTITION BY person ORDER BY due_at) AS k FROM reminders",
            "SELECT title FROM reminders WHERE due_at < NOW() + INTERVAL :days DAY GROUP BY title HAVING COUNT(*) > 1",
            "SELECT DATE_FORMAT(due_at, '%H:%i') AS at, IFNULL(priority, 0) AS p FROM reminders # a comment",
            "(SELECT title FROM reminders) UNION ALL (SELECT title FROM notes) ORDER BY title",
        ] {
            parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn every_kind_of_write_or_lock_is_refused() {
        for (sql, says) in [
            ("UPDATE reminders SET done = 1", "UPDATE is not a read"),
            ("DELETE FROM reminders", "DELETE is not a read"),
            (
                "INSERT INTO t SELECT * FROM reminders",
                "INSERT is not a read",
            ),
            ("SELECT * FROM reminders FOR UPDATE", "locking reads"),
            ("SELECT * FROM reminders FOR SHARE", "locking reads"),
            (
                "SELECT * FROM reminders LOCK IN SHARE MODE",
                "locking reads",
            ),
            (
                "SELECT * FROM reminders INTO OUTFILE '/tmp/x'",
                "INTO writes",
            ),
            (
                "SELECT * INTO OUTFILE '/tmp/x' FROM reminders",
                "INTO writes",
            ),
            (
                "SELECT * INTO DUMPFILE '/tmp/x' FROM reminders",
                "INTO writes",
            ),
            ("SELECT 1; DROP TABLE reminders", "more than one statement"),
            ("SELECT 1; SELECT 2", "more than one statement"),
            ("SELECT 1 /*! INTO OUTFILE '/tmp/x' */", "INTO writes"),
            ("SELECT 1 /*M! , SLEEP(1) */", "executable comments"),
            ("SELECT LOAD_FILE('/etc/passwd')", "LOAD_FILE() writes"),
            ("SELECT GET_LOCK('a', 1)", "GET_LOCK()"),
            ("SELECT * FROM t WHERE a = ?", "positional parameter ?"),
            ("SELECT @a := 1", "(:=) is not a read"),
            ("SELECT : a", "followed directly"),
            ("DROP TABLE reminders", "DROP is not a read"),
            ("SET @a = 1", "SET is not a read"),
            ("CALL p()", "CALL is not a read"),
            ("   ", "is empty"),
            ("SELEC 1", "does not parse"),
        ] {
            let e = refused(sql);
            assert!(e.contains(says), "{sql}: {e}");
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = refused("SELECT a\nFROM t\nWHERE b = ?");
        assert!(e.contains("line 3, column 11"), "{e}");
        let e = refused("SELECT a\nFROM t WHERE WHERE b");
        assert!(e.ends_with("found: b (line 2, column 20)"), "{e}");
    }
}
