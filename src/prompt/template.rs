//! A prompt template as stored: its fields and the rule its name follows.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One stored template.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PromptTemplate {
    /// Unique name, what API callers ask for.
    pub name: String,
    /// The minijinja source.
    pub body: String,
    /// One line for listings.
    pub description: String,
    /// Disabled templates are listed but not rendered.
    pub enabled: bool,
    /// Last change in MySQL; `None` for files.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Template names follow fetcher names: identifiers, so they are safe in URLs and logs.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
