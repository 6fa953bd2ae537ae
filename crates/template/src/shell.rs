//! Shell mode: every `{{ value }}` becomes a reference to an environment variable that carries
//! the value (`"$CAIRN_V1"`, or `${CAIRN_V1}` inside double quotes and here-documents), so the
//! shell never parses a value and no value is in the command line; `| raw` opts out.
//!
//! Like SQL mode, the formatter cannot see the text around it: it writes a sentinel
//! (`\x01<n>\x01`) and keeps the value; [`finish`] scans the script with the
//! [`ShellLexer`], refuses holes where no reference can be safe, and writes the references.

use std::cell::RefCell;

use minijinja::value::ValueKind;
use minijinja::{Error, Output, State, Value};

use crate::error::{ErrorKind, TemplateError, refuse};
use crate::json::display;
use crate::marks::Raw;
use crate::placeholder::is_placeholder;
use crate::shell_lex::ShellLexer;
use crate::shell_refusal::{ARITHMETIC, ARITHMETIC_HELP, Refusal, ShellContext};
use crate::sql::SENTINEL;

/// The prefix of the environment variables that carry a script's values.
pub const VAR_PREFIX: &str = "CAIRN_V";

/// Longest piece of a value in one environment variable. Linux refuses a single `NAME=value`
/// string over 128 KiB (`MAX_ARG_STRLEN`), so a longer value is split over several variables
/// and its reference joins them (`"${CAIRN_V1_1}${CAIRN_V1_2}"`).
pub const CHUNK: usize = 100_000;

/// A rendered shell script and the environment variables its references read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShellScript {
    /// The script, with `"$CAIRN_V1"`/`${CAIRN_V1}` where the template had values.
    pub script: String,
    /// The variables to add to the environment of the process that runs the script, in order.
    pub vars: Vec<(String, String)>,
}

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

/// What the formatter kept for one hole.
#[derive(Debug)]
pub(crate) struct Hole {
    /// The value's text (a list: its items joined by a space).
    text: String,
    /// For a list: its items, one word each in a plain word.
    items: Option<Vec<String>>,
    /// An integer, or a dry-run placeholder (which stands for one in a plan).
    int: bool,
}

thread_local! {
    // One hole list per `render_shell` in progress on this thread (innermost last).
    static HOLES: RefCell<Vec<Vec<Hole>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `render` with a fresh hole list and returns what it rendered with the holes.
pub(crate) fn collect<E>(
    render: impl FnOnce() -> Result<String, E>,
) -> Result<(String, Vec<Hole>), E> {
    crate::sql::collect_in(&HOLES, render)
}

fn no_nul(text: String) -> Result<String, Error> {
    if text.contains('\0') {
        return Err(refuse(format!(
            "a value holds a NUL byte, which no environment variable or argument can carry: {:?}",
            preview(&text)
        )));
    }
    Ok(text)
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
        if text.contains(SENTINEL) {
            return Err(refuse(
                "a `| raw` value cannot hold the control character U+0001",
            ));
        }
        return out.write_str(&text).map_err(Error::from);
    }
    let hole = match value.kind() {
        ValueKind::Seq | ValueKind::Iterable if is_placeholder(value).is_none() => {
            let mut items = Vec::new();
            for item in value.try_iter()? {
                items.push(no_nul(display(&item).map_err(refuse)?)?);
            }
            Hole {
                text: items.join(" "),
                items: Some(items),
                int: false,
            }
        }
        // Anything else is one value; a map is its compact JSON.
        _ => Hole {
            text: no_nul(display(value).map_err(refuse)?)?,
            items: None,
            int: value.is_integer() || is_placeholder(value).is_some(),
        },
    };
    let n = HOLES.with(|h| {
        h.borrow_mut().last_mut().map(|holes| {
            holes.push(hole);
            holes.len() - 1
        })
    });
    let n = n.ok_or_else(|| refuse("internal: shell rendered outside of render_shell"))?;
    write!(out, "{SENTINEL}{n}{SENTINEL}").map_err(Error::from)
}

/// The variables of one script: each distinct value bound once, however often it is used
/// (a large value repeated would otherwise multiply the environment's size).
#[derive(Default)]
struct Binder {
    vars: Vec<(String, String)>,
    seen: std::collections::HashMap<String, Vec<String>>,
}

impl Binder {
    /// The names of the variables that carry `text`, bound now if new.
    fn bind(&mut self, text: &str) -> Vec<String> {
        if let Some(names) = self.seen.get(text) {
            return names.clone();
        }
        let n = self.seen.len() + 1;
        let names = split(text, n, &mut self.vars);
        self.seen.insert(text.to_string(), names.clone());
        names
    }
}

/// Binds `text` to the variables of value number `n` and returns their names.
fn split(text: &str, n: usize, vars: &mut Vec<(String, String)>) -> Vec<String> {
    if text.len() <= CHUNK {
        let name = format!("{VAR_PREFIX}{n}");
        vars.push((name.clone(), text.to_string()));
        return vec![name];
    }
    let mut names = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = CHUNK.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = format!("{VAR_PREFIX}{n}_{}", names.len() + 1);
        vars.push((name.clone(), rest[..cut].to_string()));
        names.push(name);
        rest = &rest[cut..];
    }
    names
}

fn braced(names: &[String]) -> String {
    names.iter().map(|n| format!("${{{n}}}")).collect()
}

/// Replaces the formatter's sentinels with references, refusing holes that cannot be safe.
pub(crate) fn finish(rendered: &str, holes: Vec<Hole>) -> Result<ShellScript, TemplateError> {
    let parts: Vec<&str> = rendered.split(SENTINEL).collect();
    let mut lexer = ShellLexer::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            lexer.feed(part);
        } else {
            lexer.hole();
        }
    }
    let contexts = lexer.finish();
    // The text the scanner read, for the place of an unmodelled construct.
    let fed: String = parts.iter().step_by(2).copied().collect();
    let mut holes: Vec<Option<Hole>> = holes.into_iter().map(Some).collect();
    let mut script = String::with_capacity(rendered.len());
    let mut binder = Binder::default();
    let missing = || {
        TemplateError::new(
            ErrorKind::InvalidValue,
            "internal: a shell hole went missing",
        )
    };
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            script.push_str(part);
            continue;
        }
        let hole = part
            .parse::<usize>()
            .ok()
            .and_then(|n| holes.get_mut(n))
            .and_then(Option::take)
            .ok_or_else(missing)?;
        let context = contexts.get(i / 2).copied().ok_or_else(missing)?;
        let reference = match context {
            ShellContext::Refused(why) => {
                return Err(TemplateError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "a `{{{{ }}}}` value is {}{}: {}",
                        why.describe(),
                        where_in(&fed, why),
                        why.help()
                    ),
                ));
            }
            ShellContext::Arithmetic if !hole.int || hole.items.is_some() => {
                return Err(TemplateError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "a `{{{{ }}}}` value that is not an integer is {ARITHMETIC}: {ARITHMETIC_HELP}"
                    ),
                ));
            }
            // An integer: expanded bare, it is a number to the arithmetic.
            ShellContext::Arithmetic => braced(&binder.bind(&hole.text)),
            ShellContext::Word => match &hole.items {
                Some(items) => items
                    .iter()
                    .map(|item| format!("\"{}\"", word(binder.bind(item))))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => format!("\"{}\"", word(binder.bind(&hole.text))),
            },
            ShellContext::DoubleQuoted | ShellContext::Heredoc => braced(&binder.bind(&hole.text)),
        };
        script.push_str(&reference);
    }
    Ok(ShellScript {
        script,
        vars: binder.vars,
    })
}

/// ` (it starts at line L, column C of the script)` for an unmodelled construct.
fn where_in(script: &str, why: Refusal) -> String {
    let Some(at) = why.construct_at() else {
        return String::new();
    };
    let before = script.get(..at).unwrap_or(script);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!(" (it starts at line {line}, column {column} of the script)")
}

/// `$CAIRN_V1` for one variable (the form a reader expects), `${A}${B}` for a split value.
fn word(names: Vec<String>) -> String {
    match names.as_slice() {
        [one] => format!("${one}"),
        many => braced(many),
    }
}
