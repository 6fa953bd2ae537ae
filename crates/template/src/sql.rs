//! SQL mode: every `{{ value }}` becomes a bind parameter; only `| ident` writes into the SQL.
//!
//! The formatter cannot see the text around it, so it writes a sentinel (`\x01<n>\x01`) and
//! pushes the value; after the render, [`finish`] scans the SQL, refuses sentinels that ended up
//! inside a quoted literal, a quoted identifier or a comment (where a placeholder would not be a
//! parameter) and replaces the others with `$n` or `?`.

use std::cell::RefCell;

use minijinja::{Error, Output, State, Value};

use crate::error::{ErrorKind, TemplateError, refuse};
use crate::filters::Ident;
use crate::json::to_json;

/// Marks where the formatter put a parameter; refused in SQL sources and identifiers.
pub(crate) const SENTINEL: char = '\u{1}';

/// Bind-parameter syntax of the target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlStyle {
    /// `$1`, `$2`, ... (PostgreSQL).
    Dollar,
    /// `?` (SQLite, MySQL).
    Question,
}

/// SQL text with its bind parameters, in order (`params[0]` is `$1`).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundSql {
    /// The SQL with placeholders.
    pub sql: String,
    /// The values to bind, JSON-typed (numbers stay numbers, lists are JSON arrays).
    pub params: Vec<serde_json::Value>,
}

thread_local! {
    // One parameter list per `render_sql` in progress on this thread (innermost last).
    static PARAMS: RefCell<Vec<Vec<serde_json::Value>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `render` with a fresh parameter list and returns what it rendered with the parameters.
/// The list is removed even if `render` panics, so renders can nest.
pub(crate) fn collect<E>(
    render: impl FnOnce() -> Result<String, E>,
) -> Result<(String, Vec<serde_json::Value>), E> {
    struct Frame;
    impl Drop for Frame {
        fn drop(&mut self) {
            PARAMS.with(|p| p.borrow_mut().pop());
        }
    }
    PARAMS.with(|p| p.borrow_mut().push(Vec::new()));
    let frame = Frame;
    let out = render();
    let params = PARAMS.with(|p| p.borrow_mut().last_mut().map(std::mem::take));
    drop(frame);
    Ok((out?, params.unwrap_or_default()))
}

/// The formatter of the SQL environment.
pub(crate) fn formatter(
    out: &mut Output<'_>,
    _: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if let Some(ident) = value.downcast_object_ref::<Ident>() {
        return out.write_str(&ident.0).map_err(Error::from);
    }
    let json = to_json(value).map_err(|e| refuse(format!("cannot bind this value: {e}")))?;
    let n = PARAMS.with(|p| {
        p.borrow_mut().last_mut().map(|params| {
            params.push(json);
            params.len()
        })
    });
    let n = n.ok_or_else(|| refuse("internal: SQL rendered outside of render_sql"))?;
    write!(out, "{SENTINEL}{n}{SENTINEL}").map_err(Error::from)
}

/// Replaces the formatter's sentinels with placeholders, refusing those in quotes or comments.
pub(crate) fn finish(rendered: &str, style: SqlStyle) -> Result<String, TemplateError> {
    let mut sql = String::with_capacity(rendered.len());
    let mut scanner = Scanner::new(style);
    // Sentinels come in pairs around the parameter number: text, n, text, n, ..., text.
    for (i, part) in rendered.split(SENTINEL).enumerate() {
        if i % 2 == 0 {
            scanner.feed(part);
            sql.push_str(part);
            continue;
        }
        if let Some(place) = scanner.quoted() {
            return Err(TemplateError::new(
                ErrorKind::InvalidValue,
                format!(
                    "a `{{{{ }}}}` value (parameter {part}) is inside {place}, where a bind parameter \
                     cannot go: remove the quotes around it (the value is bound, no quoting needed)"
                ),
            ));
        }
        match style {
            SqlStyle::Dollar => {
                sql.push('$');
                sql.push_str(part);
            }
            SqlStyle::Question => sql.push('?'),
        }
        scanner.after_placeholder();
    }
    Ok(sql)
}

/// Where an SQL scanner is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Code,
    /// In `'...'`, `"..."` or `` `...` ``.
    Quoted(char),
    LineComment,
    /// In `/* ... */`; `true` right after a `*`.
    BlockComment(bool),
    /// In a PostgreSQL dollar-quoted string; holds the tag (`$$` or `$body$`).
    Dollar(String),
}

/// Tells, for SQL text fed piece by piece, whether the current position is code or inside a
/// quoted literal, a quoted identifier or a comment. Backslash escapes are not followed (they
/// are not standard SQL); a `''` or `""` inside quotes is.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    style: SqlStyle,
    state: Lex,
    /// The last character fed, for `--`, `/*` and `word$` across calls.
    prev: Option<char>,
}

impl Scanner {
    pub(crate) fn new(style: SqlStyle) -> Self {
        Self {
            style,
            state: Lex::Code,
            prev: None,
        }
    }

    /// `None` in code, otherwise a description of where the position is.
    pub(crate) fn quoted(&self) -> Option<&'static str> {
        match self.state {
            Lex::Code => None,
            Lex::Quoted('\'') => Some("a quoted SQL string ('...')"),
            Lex::Quoted(_) => Some("a quoted SQL identifier or string"),
            Lex::LineComment | Lex::BlockComment(_) => Some("an SQL comment"),
            Lex::Dollar(_) => Some("a dollar-quoted SQL string ($$...$$)"),
        }
    }

    /// A placeholder was written: it is a word, not an operator or quote.
    pub(crate) fn after_placeholder(&mut self) {
        self.prev = Some('0');
    }

    pub(crate) fn feed(&mut self, text: &str) {
        let mut skip = 0;
        for (i, c) in text.char_indices() {
            if skip > 0 {
                skip -= 1;
                self.prev = Some(c);
                continue;
            }
            let prev = self.prev.replace(c);
            self.state = match std::mem::replace(&mut self.state, Lex::Code) {
                Lex::Code => match (prev, c) {
                    (_, '\'' | '"' | '`') => Lex::Quoted(c),
                    (Some('-'), '-') => Lex::LineComment,
                    (Some('/'), '*') => {
                        // `/*/` does not close: the `*` that opened cannot also close.
                        self.prev = None;
                        Lex::BlockComment(false)
                    }
                    (_, '$') if self.style == SqlStyle::Dollar => {
                        match dollar_tag(&text[i..], prev) {
                            Some(tag) => {
                                skip = tag.chars().count() - 1;
                                Lex::Dollar(tag)
                            }
                            None => Lex::Code,
                        }
                    }
                    _ => Lex::Code,
                },
                // A doubled quote closes and reopens at once, which comes to the same.
                Lex::Quoted(q) if c == q => Lex::Code,
                Lex::LineComment if c == '\n' => Lex::Code,
                Lex::BlockComment(true) if c == '/' => Lex::Code,
                Lex::BlockComment(_) => Lex::BlockComment(c == '*'),
                Lex::Dollar(tag) if c == '$' && text[i..].starts_with(tag.as_str()) => {
                    skip = tag.chars().count() - 1;
                    Lex::Code
                }
                other => other,
            };
        }
    }
}

/// The dollar-quote tag starting at `rest` (`$$`, `$tag$`), unless the `$` is part of a
/// word (`a$b`) or a positional parameter (`$1`).
fn dollar_tag(rest: &str, prev: Option<char>) -> Option<String> {
    if prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$') {
        return None;
    }
    let body = rest.get(1..)?;
    let end = body.find('$')?;
    let tag = &body[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    valid.then(|| format!("${tag}$"))
}
