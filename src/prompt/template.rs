//! A prompt template as stored (its name follows `fetchers::valid_name`).

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
