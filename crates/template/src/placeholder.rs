//! Dry-run placeholders: values that are not known before a run (outputs of steps that have
//! not run) and the bookkeeping that lets [`crate::Templates::eval_expr`] tell that a decision
//! depended on one.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Error, State, Value};

/// What secrets render as in a dry run (and what masking replaces them with everywhere).
pub const MASK: &str = "***";

/// The value to put in a dry-run context in place of a secret: the string `***`.
pub fn masked() -> Value {
    Value::from(MASK)
}

/// A value that is not known yet, named by the path it would be read from
/// (e.g. `steps.verify_dump`).
///
/// * any attribute, item or method access gives a placeholder with the longer path
///   (`steps.verify_dump.result.exit_code`, `steps.q.result.rows[0]`, `steps.q.outputs.name.upper()`);
/// * it renders as `<path>`; [`crate::Templates::render_sql`] binds it as the string `"<path>"`,
///   [`crate::Templates::render_shell`] quotes it like any other value;
/// * it is truthy, it iterates as an empty sequence and its length is 0;
/// * a filter applied to it gives a placeholder for the filtered value
///   (`<steps.q.result.rows | length>`), except `default`, `raw`, `ident`, `string`, `safe`,
///   `tojson` and `to_json`, which see the placeholder itself (so `x | default(1)` stays `<x>`);
/// * an expression that touches it cannot be decided: [`crate::Templates::eval_expr`] returns
///   [`crate::ErrorKind::Undecided`].
pub fn placeholder(path: &str) -> Value {
    Value::from_object(Placeholder {
        path: path.to_string(),
    })
}

/// The path of `value` if it is a [`placeholder`].
pub fn is_placeholder(value: &Value) -> Option<String> {
    value
        .downcast_object_ref::<Placeholder>()
        .map(|p| p.path.clone())
}

/// Filters that handle a placeholder input themselves instead of yielding a new placeholder.
pub(crate) const PLACEHOLDER_AWARE_FILTERS: &[&str] = &[
    "default", "d", "raw", "ident", "string", "tojson", "to_json", "safe",
];

#[derive(Debug)]
pub(crate) struct Placeholder {
    path: String,
}

impl Placeholder {
    fn child(&self, suffix: &str) -> Value {
        let path = if self.path.contains(" | ") {
            // `(rows | first).n`, not `rows | first.n`.
            format!("({}){suffix}", self.path)
        } else {
            format!("{}{suffix}", self.path)
        };
        touch(&path);
        placeholder(&path)
    }
}

impl Object for Placeholder {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        touch(&self.path);
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let suffix = match key.as_str() {
            Some(name) if is_identifier(name) => format!(".{name}"),
            Some(other) => format!("[{}]", serde_json::Value::from(other)),
            None => format!("[{key}]"),
        };
        Some(self.child(&suffix))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        touch(&self.path);
        Enumerator::Empty
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        touch(&self.path);
        Some(0)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        touch(&self.path);
        true
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, _args: &[Value]) -> Result<Value, Error> {
        Ok(self.child("()"))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        Ok(self.child(&format!(".{method}()")))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        touch(&self.path);
        write!(f, "<{}>", self.path)
    }
}

/// The placeholder a filter named `filter` gives when applied to `value`, if `value` is one.
pub(crate) fn filtered(value: Option<&Value>, filter: &str) -> Option<Value> {
    let path = is_placeholder(value?)?;
    let path = format!("{path} | {filter}");
    touch(&path);
    Some(placeholder(&path))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

thread_local! {
    // One slot per active `track` call on this thread (innermost last), holding the deepest
    // placeholder path touched while it ran.
    static TOUCHED: RefCell<Vec<Option<String>>> = const { RefCell::new(Vec::new()) };
}

fn touch(path: &str) {
    TOUCHED.with(|slots| {
        if let Some(slot) = slots.borrow_mut().last_mut() {
            // Keep the first placeholder touched, but follow it as it grows
            // (`steps.x` -> `steps.x.result` -> `steps.x.result.exit_code`).
            let grows = |seen: &str| {
                path.starts_with(seen)
                    || path.strip_prefix('(').is_some_and(|p| p.starts_with(seen))
            };
            match slot {
                Some(seen) if !grows(seen) => {}
                _ => *slot = Some(path.to_string()),
            }
        }
    });
}

/// Runs `f` and reports the placeholder path it touched, if any. A nested call sees only its
/// own touches and passes them on to the enclosing call; its slot is removed even if `f` panics.
pub(crate) fn track<R>(f: impl FnOnce() -> R) -> (R, Option<String>) {
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            TOUCHED.with(|slots| slots.borrow_mut().pop());
        }
    }
    TOUCHED.with(|slots| slots.borrow_mut().push(None));
    let slot = Slot;
    let result = f();
    let touched = TOUCHED.with(|slots| slots.borrow_mut().last_mut().and_then(Option::take));
    drop(slot);
    if let Some(path) = &touched {
        touch(path);
    }
    (result, touched)
}
