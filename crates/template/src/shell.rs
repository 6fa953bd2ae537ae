//! Shell mode: every `{{ value }}` is one single-quoted bash word (a list: one word per
//! item); `| raw` opts out.

use minijinja::value::ValueKind;
use minijinja::{Error, Output, State, Value};

use crate::error::refuse;
use crate::filters::Raw;
use crate::json::display;

/// Quotes `text` as one bash word: `'...'`, with each `'` written as `'\''`.
///
/// Bash arguments are C strings, so a NUL byte cannot be passed at all: that is an error
/// rather than a silent truncation.
pub fn shell_quote(text: &str) -> Result<String, String> {
    if text.contains('\0') {
        return Err(format!(
            "a value holds a NUL byte, which bash cannot carry in a command argument: {:?}",
            preview(text)
        ));
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

fn preview(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// The formatter of the shell environment.
pub(crate) fn formatter(
    out: &mut Output<'_>,
    _: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if let Some(raw) = value.downcast_object_ref::<Raw>() {
        // Verbatim; a list as its items separated by spaces, as if typed.
        let text = match raw.0.kind() {
            ValueKind::Seq | ValueKind::Iterable => {
                let mut words = Vec::new();
                for item in raw.0.try_iter()? {
                    words.push(display(&item).map_err(refuse)?);
                }
                words.join(" ")
            }
            _ => display(&raw.0).map_err(refuse)?,
        };
        return out.write_str(&text).map_err(Error::from);
    }
    let quoted = match value.kind() {
        // One word per item; an empty list gives no word at all.
        ValueKind::Seq | ValueKind::Iterable => {
            let mut words = Vec::new();
            for item in value.try_iter()? {
                words.push(shell_quote(&display(&item).map_err(refuse)?).map_err(refuse)?);
            }
            words.join(" ")
        }
        // Anything else is one word; a map is its compact JSON.
        _ => shell_quote(&display(value).map_err(refuse)?).map_err(refuse)?,
    };
    out.write_str(&quoted).map_err(Error::from)
}
