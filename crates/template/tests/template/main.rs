//! Integration tests for cairn-template, by topic.

mod analyze;
mod filters;
mod placeholders;
mod safety;
mod shell_closed;
mod shell_contexts;
mod sql_contexts;
mod sql_unmodelled;
mod values;

use std::sync::OnceLock;

use cairn_template::{Templates, Value, from_json};

/// One engine for every test, shared across the test threads (it must be `Sync`).
pub fn t() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(Templates::new)
}

/// A context from JSON.
pub fn ctx(json: serde_json::Value) -> Value {
    from_json(&json)
}

/// The empty context.
pub fn empty() -> Value {
    ctx(serde_json::json!({}))
}
