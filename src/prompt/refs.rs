//! Finds `fetch("name", k=v)` calls in a template's source, so they can run
//! up front and concurrently. Calls whose name or arguments are not literals
//! are left to the lazy path at render time.

use serde_json::{Map, Value};

/// One literal `fetch(...)` call.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchCall {
    /// The fetcher name.
    pub name: String,
    /// Its literal keyword arguments; `None` when some were not literals.
    pub params: Option<Map<String, Value>>,
}

/// Every `fetch("…"` call in `src` whose name is a string literal.
pub fn fetch_calls(src: &str) -> Vec<FetchCall> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = src[from..].find("fetch") {
        let start = from + pos;
        from = start + 5;
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        if !before_ok {
            continue;
        }
        let mut p = Parser { s: src, i: from };
        p.ws();
        if !p.eat(b'(') {
            continue;
        }
        p.ws();
        let Some(Value::String(name)) = p.string() else {
            continue;
        };
        out.push(FetchCall {
            params: p.kwargs(),
            name,
        });
        from = p.i;
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Option<Value> {
        let q = self.peek().filter(|b| *b == b'"' || *b == b'\'')?;
        let rest = &self.s[self.i + 1..];
        let end = rest.find(q as char)?;
        let text = &rest[..end];
        if text.contains('\\') {
            return None;
        }
        self.i += end + 2;
        Some(Value::String(text.to_string()))
    }

    fn ident(&mut self) -> Option<&str> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// A literal: string, number, true/false, none.
    fn literal(&mut self) -> Option<Value> {
        if let Some(v) = self.string() {
            return Some(v);
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            self.i += 1;
        }
        let word = &self.s[start..self.i];
        match word {
            "true" | "True" => Some(Value::Bool(true)),
            "false" | "False" => Some(Value::Bool(false)),
            "none" | "None" => Some(Value::Null),
            _ => serde_json::from_str::<serde_json::Number>(word)
                .ok()
                .map(Value::Number),
        }
    }

    /// `, k=lit, …)`; `None` at anything else.
    fn kwargs(&mut self) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Some(map);
            }
            if !self.eat(b',') {
                return None;
            }
            self.ws();
            if self.eat(b')') {
                return Some(map);
            }
            let key = self.ident()?.to_string();
            self.ws();
            if !self.eat(b'=') {
                return None;
            }
            self.ws();
            let v = self.literal()?;
            map.insert(key, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literal_calls_and_their_kwargs() {
        let src = r#"{{ fetch("ha_search_pattern", pattern='light.*', limit=5) | compact }}
{% set x = fetch('ha_lights_on') %}{{ prefetch("no") }}{{ fetch(name) }}{{ fetch("a", p=var) }}"#;
        let calls = fetch_calls(src);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].name, "ha_search_pattern");
        let p = calls[0].params.as_ref().unwrap();
        assert_eq!(p["pattern"], "light.*");
        assert_eq!(p["limit"], 5);
        assert_eq!(calls[1].params, Some(Map::new()));
        assert_eq!(calls[2].name, "a");
        assert_eq!(calls[2].params, None);
    }
}
