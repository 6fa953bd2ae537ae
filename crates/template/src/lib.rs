//! Cairn's templates: minijinja with the runbook contract's safety rules built into rendering.
//!
//! * **Strict**: an undefined name is an error naming it (`undefined value `inputs.bakup_dir``).
//! * **SQL** ([`Templates::render_sql`]): every `{{ value }}` becomes a bind parameter (`$1` or
//!   `?`); only `{{ name | ident }}` writes into the SQL text, as a double-quoted identifier.
//! * **Shell** ([`Templates::render_shell`]): every `{{ value }}` is a reference to an
//!   environment variable carrying it (`"$CAIRN_V1"`), placed by a context scanner; holes where
//!   no reference is safe are refused; `{{ x | raw }}` opts out.
//! * **Types survive** ([`Templates::render_value`]): a template that is one `{{ expression }}`
//!   keeps the expression's type.
//! * **Dry runs**: [`placeholder`] stands for values not known yet; it renders as `<path>` and
//!   makes [`Templates::eval_expr`] answer [`ErrorKind::Undecided`].
//! * **Static checks** ([`Templates::analyze`]): the names a template reads, with byte offsets.
//!
//! Beside minijinja's builtin filters (`default`, `length`, `join`, `int`, `tojson`,
//! `urlencode`...) there are `strftime(fmt)`, `from_json`, `to_json`, `duration`, `ident`, `raw`,
//! `b64encode`, `b64decode`, `basename`, `dirname`, and the function `now()`.
//!
//! ```
//! use cairn_template::{Dialect, Templates, Value, from_json};
//!
//! let t = Templates::new();
//! let ctx = from_json(&serde_json::json!({
//!     "inputs": { "actor": "client_1'; DROP TABLE x; --", "table": "memory entities", "n": 3 }
//! }));
//!
//! let q = t.render_sql(
//!     "SELECT * FROM {{ inputs.table | ident }} WHERE actor = {{ inputs.actor }} LIMIT {{ inputs.n }}",
//!     &ctx,
//!     Dialect::Postgres,
//! )?;
//! assert_eq!(q.sql, r#"SELECT * FROM "memory entities" WHERE actor = $1 LIMIT $2"#);
//! assert_eq!(q.params, vec![serde_json::json!("client_1'; DROP TABLE x; --"), serde_json::json!(3)]);
//!
//! let sh = t.render_shell("echo {{ inputs.actor }}", &ctx)?;
//! assert_eq!(sh.script, r#"echo "$CAIRN_V1""#);
//! assert_eq!(sh.vars, vec![("CAIRN_V1".to_string(), "client_1'; DROP TABLE x; --".to_string())]);
//! assert_eq!(t.render_value("{{ inputs.n * 2 }}", &ctx)?, Value::from(6));
//! # Ok::<(), cairn_template::TemplateError>(())
//! ```

#![warn(missing_docs)]

mod analyze;
mod env;
mod error;
mod filters;
mod json;
mod marks;
mod names;
mod placeholder;
mod shell;
mod shell_lex;
mod shell_refusal;
mod shell_words;
mod sql;
mod sql_lex;
mod sql_script;
mod url;

use minijinja::Environment;
use minijinja::machinery::{self, ast};

pub use analyze::{Analysis, Kind, NameRef, Refusal};
pub use error::{ErrorKind, TemplateError};
pub use json::{from_json, to_json, value_map};
pub use minijinja::Value;
pub use placeholder::{MASK, is_placeholder, masked, placeholder};
pub use shell::{CHUNK, ShellScript, VAR_PREFIX, shell_quote};
pub use shell_lex::ShellLexer;
pub use shell_refusal::{Construct, Refusal as ShellRefusal, ShellContext};
pub use shell_words::{ArgvRefusal, argv_refusals, shell_script_index};
pub use sql::BoundSql;
pub use sql_lex::{Dialect, SqlContext, SqlLexer, Unmodelled};
pub use sql_script::{LoneStatement, outside_transaction};
pub use url::encode_component;

use env::Mode;

/// The outcome of a `when`/`until` condition, see [`Templates::eval_condition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The condition depends on a dry-run placeholder (named by `path`): it cannot be decided
    /// before the run.
    Undecided {
        /// The placeholder's path, e.g. `steps.verify_dump.result.exit_code`.
        path: String,
    },
}

/// The template engine: one minijinja environment per rendering mode, built once.
///
/// Cheap to share by reference across threads (`Send + Sync`); rendering never mutates it.
#[derive(Debug)]
pub struct Templates {
    text: Environment<'static>,
    sql: Environment<'static>,
    shell: Environment<'static>,
    capture: Environment<'static>,
    url: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Builds the environments. Cheap, but there is no reason to do it more than once: share it.
    pub fn new() -> Self {
        let inner = env::inner();
        Self {
            text: env::build(Mode::Text, &inner),
            sql: env::build(Mode::Sql, &inner),
            shell: env::build(Mode::Shell, &inner),
            capture: env::build(Mode::Capture, &inner),
            url: env::build(Mode::Url, &inner),
        }
    }

    /// Renders plain text (URLs, headers, file paths, messages). Strict undefined. A string is
    /// written as it is, any other value as compact JSON (`true`, `null`, `[1,"a"]`), a
    /// placeholder as `<path>`.
    ///
    /// In every `render_*` method, a type error caused by a dry-run placeholder
    /// (`{{ steps.q.outputs.n + 1 }}`) is reported as [`ErrorKind::Undecided`].
    pub fn render_text(&self, src: &str, ctx: &Value) -> Result<String, TemplateError> {
        unknown_yet(src, Kind::Text, ctx, || {
            self.text
                .render_str(src, ctx.clone())
                .map_err(|e| TemplateError::from_minijinja(&e, src))
        })
    }

    /// Renders keeping types: when `src` (trimmed) is exactly one `{{ expr }}`, the value of
    /// `expr` is returned as is (number, string, bool, list, map, null, or a placeholder);
    /// otherwise `src` is rendered as text and returned as a string. A string without `{{`,
    /// `{%` or `{#` is returned unchanged.
    pub fn render_value(&self, src: &str, ctx: &Value) -> Result<Value, TemplateError> {
        if !has_template_syntax(src) {
            return Ok(Value::from(src));
        }
        if !is_single_expression(src)? {
            return self.render_text(src, ctx).map(Value::from);
        }
        let values = unknown_yet(src, Kind::Text, ctx, || {
            env::capture(|| self.capture.render_str(src, ctx.clone()))
                .map_err(|e| TemplateError::from_minijinja(&e, src))
        })?;
        Ok(values
            .into_iter()
            .next()
            .map_or(Value::from(()), filters::unmark))
    }

    /// Renders SQL for `dialect`: every `{{ value }}` becomes a placeholder (`$1`... or `?`)
    /// and its value, typed, is pushed to `params` (a list is one JSON-array parameter: write a
    /// `for` loop for `IN (...)`); the same value used twice is bound twice. `{{ x | ident }}`
    /// writes a quoted identifier (`"a""b"`, MySQL `` `a``b` ``; empty or control characters
    /// refused). Nothing else from a value ever reaches the SQL text. A value or identifier
    /// that the dialect's lexer finds inside a string, a quoted identifier, a dollar-quoted body
    /// or a comment is an error, since it would not be code there.
    pub fn render_sql(
        &self,
        src: &str,
        ctx: &Value,
        dialect: Dialect,
    ) -> Result<BoundSql, TemplateError> {
        if let Some(at) = src.find(sql::SENTINEL) {
            return Err(TemplateError::new(
                ErrorKind::InvalidValue,
                "an SQL template cannot contain the control character U+0001",
            )
            .at(src, at, 1));
        }
        let (rendered, holes) = unknown_yet(src, Kind::Sql(dialect), ctx, || {
            sql::collect(|| self.sql.render_str(src, ctx.clone()))
                .map_err(|e| TemplateError::from_minijinja(&e, src))
        })?;
        sql::finish(&rendered, holes, dialect)
    }

    /// Renders a bash script: every `{{ value }}` becomes a reference to an environment
    /// variable that carries it (`"$CAIRN_V1"` in a plain word, `${CAIRN_V1}` inside double
    /// quotes or an unquoted here-document body, and, for an integer only, in arithmetic), so
    /// the shell never parses a value. A list in a plain word is one word per item; elsewhere
    /// its items joined by a space; a map is its compact JSON. A hole where no reference can
    /// be safe (single quotes, a quoted here-document, `${ }`, arithmetic for a non-integer...)
    /// is an error. `{{ x | raw }}` is inserted verbatim. A value holding a NUL byte is an
    /// error: no environment variable can carry it.
    pub fn render_shell(&self, src: &str, ctx: &Value) -> Result<ShellScript, TemplateError> {
        if let Some(at) = src.find(sql::SENTINEL) {
            return Err(TemplateError::new(
                ErrorKind::InvalidValue,
                "a shell template cannot contain the control character U+0001",
            )
            .at(src, at, 1));
        }
        let (rendered, holes) = unknown_yet(src, Kind::Shell, ctx, || {
            shell::collect(|| self.shell.render_str(src, ctx.clone()))
                .map_err(|e| TemplateError::from_minijinja(&e, src))
        })?;
        shell::finish(&rendered, holes)
    }

    /// Renders a target-relative URL (`items/{{ inputs.id }}?q={{ inputs.q }}`): every
    /// `{{ value }}` is percent-encoded as one component (see [`encode_component`]), so a value
    /// cannot add a segment, a `..`, a query, a fragment or a host; the text around the values is
    /// the author's. `{{ x | raw }}` is inserted verbatim; a dry-run placeholder stays `<path>`.
    pub fn render_url(&self, src: &str, ctx: &Value) -> Result<String, TemplateError> {
        unknown_yet(src, Kind::Text, ctx, || {
            self.url
                .render_str(src, ctx.clone())
                .map_err(|e| TemplateError::from_minijinja(&e, src))
        })
    }

    /// Evaluates a bare expression (`inputs.incremental`, `steps.q.result.rows | length > 0`),
    /// or one wrapped in `{{ }}`, keeping its type.
    ///
    /// If the evaluation touched a dry-run [`placeholder`] (or yields one), the value is not
    /// known before the run and the result is an error of kind [`ErrorKind::Undecided`] naming
    /// the placeholder's path. Short-circuits are respected: `true or steps.x.result.ok` is
    /// `true`.
    pub fn eval_expr(&self, expr: &str, ctx: &Value) -> Result<Value, TemplateError> {
        let (result, touched) = placeholder::track(|| self.eval_untracked(expr, ctx));
        let value = result?;
        match touched.or_else(|| is_placeholder(&value)) {
            Some(path) => Err(undecided(path, None)),
            None => Ok(value),
        }
    }

    /// Evaluates a `when`/`until` condition: [`Decision::Undecided`] when it depends on a
    /// dry-run placeholder, otherwise the truth of [`Templates::eval_expr`]'s value.
    pub fn eval_condition(&self, expr: &str, ctx: &Value) -> Result<Decision, TemplateError> {
        match self.eval_expr(expr, ctx) {
            Ok(value) if value.is_true() => Ok(Decision::True),
            Ok(_) => Ok(Decision::False),
            Err(TemplateError {
                kind: ErrorKind::Undecided { path },
                ..
            }) => Ok(Decision::Undecided { path }),
            Err(e) => Err(e),
        }
    }

    fn eval_untracked(&self, expr: &str, ctx: &Value) -> Result<Value, TemplateError> {
        if expr.trim_start().starts_with("{{") {
            if !is_single_expression(expr)? {
                return Err(TemplateError::new(
                    ErrorKind::Syntax,
                    "syntax error: an expression wrapped in `{{ }}` must be exactly one `{{ ... }}`",
                )
                .at(expr, 0, expr.len()));
            }
            return self.render_value(expr, ctx);
        }
        // Parse as an expression first, for errors that speak of expressions...
        self.text
            .compile_expression_owned(expr.to_string())
            .map_err(|e| TemplateError::from_minijinja(&e, expr))?;
        // ...then evaluate it as `{{ expr }}`, where strictness also covers the final value
        // (an expression that is just an undefined name evaluates to undefined, silently).
        let wrapped = format!("{{{{ {expr} }}}}");
        self.render_value(&wrapped, ctx)
            .map_err(|e| e.shifted_back(3, expr))
    }

    /// Parses `src` without rendering it and reports the names it reads (with byte offsets,
    /// excluding names it binds itself), its `| raw` uses, and the filters, functions and tests
    /// it uses that do not exist. Syntax errors come back located in `src`.
    pub fn analyze(&self, src: &str, kind: Kind) -> Result<Analysis, TemplateError> {
        analyze::analyze(src, kind)
    }

    /// Every filter name, sorted (for "did you mean" hints).
    pub fn filter_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = names::BUILTIN_FILTERS
            .iter()
            .chain(names::CAIRN_FILTERS)
            .copied()
            .collect();
        names.sort_unstable();
        names
    }

    /// Every global function name, sorted (`now`, `range`...).
    pub fn function_names(&self) -> Vec<&'static str> {
        names::FUNCTIONS.to_vec()
    }

    /// Every test name, sorted (`defined`, `number`...).
    pub fn test_names(&self) -> Vec<&'static str> {
        names::TESTS.to_vec()
    }
}

/// Runs a render of `src`; if it touched a dry-run placeholder, it may not stand for what a
/// run would render, and is reported as [`ErrorKind::Undecided`] so that a dry run can show
/// "not known before the run" instead of a guess or a failure:
/// * a type error caused by the placeholder (`{{ steps.q.outputs.n + 1 }}`);
/// * an `{% if %}`, `x if y else z` or `{% for %}` decided on a placeholder, which a render
///   would decide as if the unknown value were true (or an empty list).
///
/// Other errors (undefined names, syntax, refused values) stay what they are. A real run has
/// no placeholders, so it never pays for the second look.
fn unknown_yet<T>(
    src: &str,
    kind: Kind,
    ctx: &Value,
    render: impl FnOnce() -> Result<T, TemplateError>,
) -> Result<T, TemplateError> {
    match placeholder::track(render) {
        (Err(e), Some(path)) if e.kind == ErrorKind::Render => Err(TemplateError {
            offset: e.offset,
            len: e.len,
            line: e.line,
            ..undecided(path, Some(&e.message))
        }),
        (Ok(out), Some(_)) => match undecided_branch(src, kind, ctx) {
            Some((path, at)) => {
                let e = undecided(path, Some("a condition or loop depends on it"));
                Err(e.at(src, at.offset, at.len))
            }
            None => Ok(out),
        },
        (result, _) => result,
    }
}

/// The first name that decides a branch or loop of `src` and is a placeholder in `ctx`.
fn undecided_branch(src: &str, kind: Kind, ctx: &Value) -> Option<(String, NameRef)> {
    let analysis = analyze::analyze(src, kind).ok()?;
    analysis.decisions.into_iter().find_map(|name| {
        // Follow the path as far as it goes: a placeholder grows with it
        // (`steps.a` -> `steps.a.outputs.n`), and names the deepest part known.
        let mut value = ctx.clone();
        let mut found = None;
        for (k, segment) in name.path.iter().enumerate() {
            let next = match segment.parse::<i64>() {
                Ok(i) if k > 0 => value.get_item(&Value::from(i)),
                _ => value.get_attr(segment),
            };
            match next {
                Ok(v) if !v.is_undefined() => value = v,
                _ => break,
            }
            if let Some(path) = is_placeholder(&value) {
                found = Some(path);
            }
        }
        found.map(|path| (path, name))
    })
}

fn undecided(path: String, cause: Option<&str>) -> TemplateError {
    let message = match cause {
        Some(cause) => format!("depends on `{path}`, which is not known before the run ({cause})"),
        None => format!("depends on `{path}`, which is not known before the run"),
    };
    TemplateError::new(ErrorKind::Undecided { path }, message)
}

fn has_template_syntax(src: &str) -> bool {
    src.contains("{{") || src.contains("{%") || src.contains("{#")
}

/// Whether `src`, trimmed, is exactly one `{{ expression }}` (whitespace around it aside).
fn is_single_expression(src: &str) -> Result<bool, TemplateError> {
    let trimmed = src.trim();
    if !trimmed.starts_with("{{") || !trimmed.ends_with("}}") {
        return Ok(false);
    }
    let syntax = crate::env::syntax();
    let root = machinery::parse(src, "<template>", syntax)
        .map_err(|e| TemplateError::from_minijinja(&e, src))?;
    let ast::Stmt::Template(t) = &root else {
        return Ok(false);
    };
    let mut emitted = t.children.iter().filter(|s| match s {
        ast::Stmt::EmitRaw(raw) => !raw.raw.trim().is_empty(),
        _ => true,
    });
    Ok(matches!(
        (emitted.next(), emitted.next()),
        (Some(ast::Stmt::EmitExpr(_)), None)
    ))
}
