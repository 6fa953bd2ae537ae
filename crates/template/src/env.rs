//! The minijinja environments: one per rendering mode, all configured by the same code.

use std::cell::RefCell;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, Error, Output, State, UndefinedBehavior, Value};

use crate::error::refuse;
use crate::filters;
use crate::{shell, sql, url};

/// How `{{ }}` outputs are written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// As text: strings as they are, other values as compact JSON.
    Text,
    /// As bind parameters.
    Sql,
    /// As single-quoted bash words.
    Shell,
    /// Not written: each value is kept, with its type, for [`crate::Templates::render_value`].
    Capture,
    /// As percent-encoded URL components.
    Url,
}

/// Settings shared by every environment, inner or not.
fn base() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Keeps error spans, which TemplateError turns into offsets.
    env.set_debug(true);
    env.set_syntax(syntax());
    env
}

/// The syntax: minijinja's defaults, except that a runbook's text is rendered as written,
/// final newline included.
pub(crate) fn syntax() -> minijinja::syntax::SyntaxConfig {
    let mut builder = minijinja::syntax::SyntaxConfig::builder();
    builder.keep_trailing_newline(true);
    // With the default delimiters `build` cannot fail; fall back to the defaults regardless.
    builder.build().unwrap_or_default()
}

/// The environment the wrapped filters delegate to: builtins plus Cairn's filters, unwrapped.
pub(crate) fn inner() -> Arc<Environment<'static>> {
    let mut env = base();
    filters::register_plain(&mut env);
    Arc::new(env)
}

/// A rendering environment for `mode`.
pub(crate) fn build(mode: Mode, inner: &Arc<Environment<'static>>) -> Environment<'static> {
    let mut env = base();
    filters::register_wrapped(&mut env, inner);
    match mode {
        Mode::Text => env.set_formatter(text_formatter),
        Mode::Sql => env.set_formatter(sql::formatter),
        Mode::Shell => env.set_formatter(shell::formatter),
        Mode::Capture => env.set_formatter(capture_formatter),
        Mode::Url => env.set_formatter(url::formatter),
    }
    env
}

/// Writes values as [`crate::json::display`] spells them (`true`, `null`, `[1,"a"]`).
fn text_formatter(out: &mut Output<'_>, _: &mut State<'_, '_>, value: &Value) -> Result<(), Error> {
    let text = crate::json::display(value).map_err(refuse)?;
    out.write_str(&text).map_err(Error::from)
}

thread_local! {
    // One list of captured values per `capture` in progress on this thread (innermost last).
    static CAPTURED: RefCell<Vec<Vec<Value>>> = const { RefCell::new(Vec::new()) };
}

fn capture_formatter(
    _: &mut Output<'_>,
    _: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    CAPTURED.with(|c| {
        c.borrow_mut()
            .last_mut()
            .map(|values| values.push(value.clone()))
            .ok_or_else(|| refuse("internal: value captured outside of render_value"))
    })
}

/// Runs `render` (a render in the capture environment) and returns the values it output.
/// The list is removed even if `render` panics, so captures can nest.
pub(crate) fn capture<T, E>(render: impl FnOnce() -> Result<T, E>) -> Result<Vec<Value>, E> {
    struct Frame;
    impl Drop for Frame {
        fn drop(&mut self) {
            CAPTURED.with(|c| c.borrow_mut().pop());
        }
    }
    CAPTURED.with(|c| c.borrow_mut().push(Vec::new()));
    let frame = Frame;
    let out = render();
    let values = CAPTURED.with(|c| c.borrow_mut().last_mut().map(std::mem::take));
    drop(frame);
    out.map(|_| values.unwrap_or_default())
}
