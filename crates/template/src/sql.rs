//! SQL mode: every `{{ value }}` becomes a bind parameter; only `| ident` writes into the SQL.
//!
//! The formatter cannot see the text around it, so it writes a sentinel (`\x01<n>\x01`) and
//! keeps the hole (a value to bind, or an identifier); after the render, [`finish`] lexes the SQL
//! in the target's dialect, refuses holes that ended up inside a literal, a quoted identifier,
//! a dollar-quoted body or a comment (where neither a parameter nor an identifier is code), and
//! replaces the others with `$n`/`?` or the quoted identifier.

use std::cell::RefCell;

use minijinja::{Error, Output, State, Value};

use crate::error::{ErrorKind, TemplateError, refuse};
use crate::json::to_json;
use crate::marks::Ident;
use crate::sql_lex::{Dialect, SqlLexer};

/// Marks where the formatter put a parameter; refused in SQL sources and identifiers.
pub(crate) const SENTINEL: char = '\u{1}';

/// SQL text with its bind parameters, in order (`params[0]` is `$1`).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundSql {
    /// The SQL with placeholders.
    pub sql: String,
    /// The values to bind, JSON-typed (numbers stay numbers, lists are JSON arrays).
    pub params: Vec<serde_json::Value>,
    /// The lexer placed values in the text (parameters or `| ident` names): the server must
    /// read SQL as the lexer does (`standard_conforming_strings`, `sql_mode`).
    pub lexed: bool,
}

/// What the formatter wrote a sentinel for.
#[derive(Debug)]
pub(crate) enum Hole {
    Param(serde_json::Value),
    Ident(String),
}

thread_local! {
    // One hole list per `render_sql` in progress on this thread (innermost last).
    static PARAMS: RefCell<Vec<Vec<Hole>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `render` with a fresh hole list and returns what it rendered with the holes.
/// The list is removed even if `render` panics, so renders can nest.
pub(crate) fn collect<E>(
    render: impl FnOnce() -> Result<String, E>,
) -> Result<(String, Vec<Hole>), E> {
    collect_in(&PARAMS, render)
}

/// The frame discipline of `collect`, for any per-thread stack of hole lists (SQL's and shell's).
pub(crate) fn collect_in<H: 'static, E>(
    stack: &'static std::thread::LocalKey<RefCell<Vec<Vec<H>>>>,
    render: impl FnOnce() -> Result<String, E>,
) -> Result<(String, Vec<H>), E> {
    struct Frame<H: 'static>(&'static std::thread::LocalKey<RefCell<Vec<Vec<H>>>>);
    impl<H: 'static> Drop for Frame<H> {
        fn drop(&mut self) {
            self.0.with(|s| s.borrow_mut().pop());
        }
    }
    stack.with(|s| s.borrow_mut().push(Vec::new()));
    let frame = Frame(stack);
    let out = render();
    let holes = stack.with(|s| s.borrow_mut().last_mut().map(std::mem::take));
    drop(frame);
    Ok((out?, holes.unwrap_or_default()))
}

/// The formatter of the SQL environment.
pub(crate) fn formatter(
    out: &mut Output<'_>,
    _: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    let hole = match value.downcast_object_ref::<Ident>() {
        Some(ident) => Hole::Ident(ident.0.clone()),
        None => {
            Hole::Param(to_json(value).map_err(|e| refuse(format!("cannot bind this value: {e}")))?)
        }
    };
    let n = PARAMS.with(|p| {
        p.borrow_mut().last_mut().map(|holes| {
            holes.push(hole);
            holes.len() - 1
        })
    });
    let n = n.ok_or_else(|| refuse("internal: SQL rendered outside of render_sql"))?;
    write!(out, "{SENTINEL}{n}{SENTINEL}").map_err(Error::from)
}

/// Replaces the formatter's sentinels with placeholders and quoted identifiers, refusing
/// those that are not in code position. Returns the SQL and the values to bind, in order.
pub(crate) fn finish(
    rendered: &str,
    holes: Vec<Hole>,
    dialect: Dialect,
) -> Result<BoundSql, TemplateError> {
    let mut holes: Vec<Option<Hole>> = holes.into_iter().map(Some).collect();
    let mut sql = String::with_capacity(rendered.len());
    let mut params = Vec::new();
    let lexed = !holes.is_empty();
    let mut lexer = SqlLexer::new(dialect);
    // Sentinels come in pairs around the hole number: text, n, text, n, ..., text.
    for (i, part) in rendered.split(SENTINEL).enumerate() {
        if i % 2 == 0 {
            lexer.feed(part);
            sql.push_str(part);
            continue;
        }
        let hole = part
            .parse::<usize>()
            .ok()
            .and_then(|n| holes.get_mut(n))
            .and_then(Option::take)
            .ok_or_else(|| {
                TemplateError::new(
                    ErrorKind::InvalidValue,
                    "internal: an SQL hole went missing",
                )
            })?;
        let what = match hole {
            Hole::Param(_) => "a `{{ }}` value",
            Hole::Ident(_) => "an `| ident` name",
        };
        if let Some((message, help)) = lexer.refusal(what) {
            return Err(TemplateError::new(
                ErrorKind::InvalidValue,
                format!("{message}: {help}"),
            ));
        }
        match hole {
            Hole::Param(value) => {
                params.push(value);
                match dialect {
                    Dialect::Postgres => {
                        sql.push('$');
                        sql.push_str(&params.len().to_string());
                    }
                    Dialect::Mysql | Dialect::Sqlite => sql.push('?'),
                }
                lexer.hole();
            }
            Hole::Ident(name) => {
                let quoted = dialect.quote_ident(&name);
                lexer.ident(&quoted);
                sql.push_str(&quoted);
            }
        }
    }
    Ok(BoundSql { sql, params, lexed })
}
