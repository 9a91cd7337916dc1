//! User search patterns: globs matched in linear time, never handed to Redis.

use wildmatch::WildMatch;

/// The longest pattern we accept; longer ones are abuse, not search.
pub const MAX_PATTERN_LEN: usize = 256;

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
    #[error("pattern contains a control character")]
    Control,
}

/// A case-insensitive glob: `*` any run, `?` one character, everything else literal.
///
/// The matcher is iterative with no backtracking blow-up, so `*a*a*a*…b`
/// against a long name costs at most pattern × text steps.
#[derive(Debug, Clone)]
pub struct Glob {
    /// The compiled matcher.
    matcher: WildMatch,
    /// The pattern as given, for messages.
    source: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.chars().count() > MAX_PATTERN_LEN {
            return Err(GlobError::TooLong);
        }
        if pattern.chars().any(char::is_control) {
            return Err(GlobError::Control);
        }
        // Runs of `*` mean the same as one; folding them keeps the matcher small.
        let mut folded = String::with_capacity(pattern.len());
        for c in pattern.chars() {
            if !(c == '*' && folded.ends_with('*')) {
                folded.push(c);
            }
        }
        Ok(Self {
            matcher: WildMatch::new_case_insensitive(&folded),
            source: pattern.to_string(),
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        self.matcher.matches(text)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_ids_and_names() {
        let g = Glob::new("light.*kitchen*").unwrap();
        assert!(g.matches("light.kitchen_lights"));
        assert!(g.matches("LIGHT.Kitchen"));
        assert!(!g.matches("switch.kitchen"));
        assert!(Glob::new("*Bed ?ight").unwrap().matches("Bed Light"));
    }

    #[test]
    fn metacharacters_are_literal_and_hostile_patterns_are_cheap() {
        assert!(!Glob::new("[a-z]*").unwrap().matches("light.a"));
        assert!(Glob::new("a[b]c").unwrap().matches("a[b]c"));
        let evil = format!("{}b", "*a".repeat(100));
        let text = "a".repeat(10_000);
        let t = std::time::Instant::now();
        assert!(!Glob::new(&evil).unwrap().matches(&text));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(Glob::new(&"x".repeat(300)).unwrap_err(), GlobError::TooLong);
        assert_eq!(Glob::new("").unwrap_err(), GlobError::Empty);
    }
}
