//! Static analysis for `cairn validate`: which names a template reads, where, and which
//! filters, functions and tests it uses that do not exist.
//!
//! This walks minijinja's own AST (the `unstable_machinery` feature), so offsets come from the
//! parser's spans and agree with what rendering would do; scoping follows minijinja's runtime
//! (`for` and `with` bodies, macros and `set` blocks are scopes; `if` bodies are not).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{self, Span};

use crate::error::TemplateError;
use crate::names::{BUILTIN_FILTERS, CAIRN_FILTERS, FUNCTIONS, TESTS};
use crate::shell_lex::ShellLexer;
use crate::shell_refusal::{ARITHMETIC, ARITHMETIC_HELP, Refusal as ShellRefusal, ShellContext};
use crate::sql_lex::{Dialect, SqlLexer};

/// What a source string holds, for [`crate::Templates::analyze`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text rendered with [`crate::Templates::render_text`] or `render_value`.
    Text,
    /// An SQL query rendered with [`crate::Templates::render_sql`] for a dialect.
    Sql(Dialect),
    /// A shell command rendered with [`crate::Templates::render_shell`].
    Shell,
    /// A bare expression (`when`, `until`), optionally wrapped in `{{ }}`.
    Expr,
}

/// A name, filter or function used at `offset..offset + len` in the analysed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRef {
    /// The path read: `["steps", "db_ready", "outputs", "ok"]`. It stops before the first part
    /// that is not a constant (`rows[i]` gives `["rows"]`); constant subscripts are kept
    /// (`rows[0]` gives `["rows", "0"]`). For filters and functions it is just the name.
    pub path: Vec<String>,
    /// Byte offset of the name in the source.
    pub offset: usize,
    /// Byte length of the whole path as written (`steps.db_ready.outputs.ok`).
    pub len: usize,
}

/// The result of [`crate::Templates::analyze`]; every list is in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Every read of a name that the template does not bind itself (each occurrence).
    pub names: Vec<NameRef>,
    /// Byte offsets of the name `raw` in each `| raw`.
    pub raw_uses: Vec<usize>,
    /// Filters used that do not exist (the path is the filter name).
    pub unknown_filters: Vec<NameRef>,
    /// Functions called that do not exist (`strftme(...)`).
    pub unknown_functions: Vec<NameRef>,
    /// Tests used that do not exist (`x is fooo`).
    pub unknown_tests: Vec<NameRef>,
    /// Every `x if condition` written without `else`: it gives an undefined value when the
    /// condition is false, which strict rendering refuses (byte ranges of the whole expression).
    pub if_without_else: Vec<Range<usize>>,
    /// The names that decide what is rendered: read by an `{% if %}` or `x if y else z`
    /// condition, or by the list a `{% for %}` walks, directly or through a variable the
    /// template set from them. A dry run cannot decide these on a placeholder.
    pub decisions: Vec<NameRef>,
    /// `{{ }}` expressions written where their value could not be kept data: in SQL inside a
    /// literal, a quoted identifier, a dollar-quoted body or a comment
    /// (`WHERE name = '{{ x }}'`); in shell inside single quotes, a quoted here-document,
    /// `${ }`, or arithmetic (unless an integer). Rendering refuses them too.
    pub refused: Vec<Refusal>,
}

/// A `{{ }}` written where its value cannot be kept data, found by [`crate::Templates::analyze`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Byte offset of the expression inside the `{{ }}`.
    pub offset: usize,
    /// Byte length of the expression.
    pub len: usize,
    /// What is wrong, one line (`a `{{ }}` value is inside a quoted SQL string`).
    pub message: String,
    /// What to write instead.
    pub help: String,
    /// For a shell hole in arithmetic that reads exactly `inputs.NAME`: `NAME`. The refusal
    /// does not apply if that input is declared `type: int` (the caller knows the inputs).
    pub unless_int_input: Option<String>,
    /// For a shell hole: why the scanner refused it (`None` for a non-integer in arithmetic).
    pub shell: Option<ShellRefusal>,
    /// For a shell hole refused because of a construct the scanner does not model: the byte
    /// offset in the source where that construct starts.
    pub construct_at: Option<usize>,
}

/// Parses `src` and collects its [`Analysis`].
pub(crate) fn analyze(src: &str, kind: Kind) -> Result<Analysis, TemplateError> {
    let mut walker = Walker {
        src,
        scopes: vec![HashSet::new()],
        out: Analysis::default(),
        collecting: Vec::new(),
        taint: HashMap::new(),
        sql: match kind {
            Kind::Sql(dialect) => Some(SqlLexer::new(dialect)),
            _ => None,
        },
        shell: (kind == Kind::Shell).then(ShellLexer::new),
        shell_holes: Vec::new(),
    };
    let parse_error = |e: minijinja::Error| TemplateError::from_minijinja(&e, src);
    if kind == Kind::Expr && !src.trim_start().starts_with("{{") {
        let expr = machinery::parse_expr(src).map_err(parse_error)?;
        walker.expr(&expr);
    } else {
        let syntax = crate::env::syntax();
        let stmt = machinery::parse(src, "<template>", syntax).map_err(parse_error)?;
        walker.stmt(&stmt);
    }
    let mut out = walker.out;
    if let Some(lexer) = walker.shell {
        for (context, hole) in lexer.finish().into_iter().zip(walker.shell_holes) {
            let (message, help, shell) = match context {
                ShellContext::Refused(why) => (why.describe(), why.help(), Some(why)),
                ShellContext::Arithmetic if !hole.int_filter => {
                    (ARITHMETIC.to_string(), ARITHMETIC_HELP, None)
                }
                _ => continue,
            };
            out.refused.push(Refusal {
                offset: hole.offset,
                len: hole.len,
                message: format!("a `{{{{ }}}}` value is {message}"),
                help: help.to_string(),
                unless_int_input: match context {
                    ShellContext::Arithmetic => hole.input,
                    _ => None,
                },
                shell,
                construct_at: shell.and_then(ShellRefusal::construct_at),
            });
        }
    }
    out.names.sort_by_key(|n| n.offset);
    out.raw_uses.sort_unstable();
    out.unknown_filters.sort_by_key(|n| n.offset);
    out.unknown_functions.sort_by_key(|n| n.offset);
    out.unknown_tests.sort_by_key(|n| n.offset);
    out.if_without_else.sort_by_key(|r| r.start);
    out.decisions.sort_by_key(|n| n.offset);
    out.decisions.dedup();
    out.refused.sort_by_key(|r| r.offset);
    Ok(out)
}

struct Walker<'a> {
    src: &'a str,
    /// Names bound by the template itself, innermost scope last.
    scopes: Vec<HashSet<&'a str>>,
    out: Analysis,
    /// For SQL: where the literal text seen so far leaves off (in code, in quotes...).
    sql: Option<SqlLexer>,
    /// The free names read while walking an expression whose reads are wanted (a condition,
    /// the value of a `set`), innermost last.
    collecting: Vec<Vec<NameRef>>,
    /// For a variable the template binds: the free names its value was computed from.
    taint: HashMap<&'a str, Vec<NameRef>>,
    /// For shell: the same, and each hole's place and type hints, in order.
    shell: Option<ShellLexer>,
    shell_holes: Vec<ShellHole>,
}

struct ShellHole {
    offset: usize,
    len: usize,
    /// The expression ends in `| int`.
    int_filter: bool,
    /// The expression is exactly `inputs.NAME`.
    input: Option<String>,
}

/// Where an emitted expression starts and ends: a filter's span starts at its name, so start
/// at what it filters.
fn emit_span(expr: &Expr<'_>) -> (u32, u32) {
    let end = expr.span().end_offset;
    let start = match expr {
        Expr::Filter(f) => f.expr.as_ref().map_or(f.span(), |x| x.span()),
        other => other.span(),
    }
    .start_offset;
    (start, end)
}

fn name_ref(name: &str, span: Span) -> NameRef {
    NameRef {
        path: vec![name.to_string()],
        offset: span.start_offset as usize,
        len: name.len(),
    }
}

impl<'a> Walker<'a> {
    fn is_bound(&self, name: &str) -> bool {
        FUNCTIONS.contains(&name) || self.scopes.iter().any(|s| s.contains(name))
    }

    /// Walks `expr` and returns the free names it read (through bound variables too).
    fn reads(&mut self, expr: &Expr<'a>) -> Vec<NameRef> {
        self.collecting.push(Vec::new());
        self.expr(expr);
        let read = self.collecting.pop().unwrap_or_default();
        if let Some(outer) = self.collecting.last_mut() {
            outer.extend(read.iter().cloned());
        }
        read
    }

    /// Walks a condition: what it reads decides what is rendered.
    fn decision(&mut self, expr: &Expr<'a>) -> Vec<NameRef> {
        let read = self.reads(expr);
        self.out.decisions.extend(read.iter().cloned());
        read
    }

    /// Binds `target` to a value computed from `read`.
    fn bind_from(&mut self, target: &Expr<'a>, read: &[NameRef]) {
        self.bind(target);
        let mut names = Vec::new();
        target_names(target, &mut names);
        for name in names {
            self.taint
                .entry(name)
                .or_default()
                .extend(read.iter().cloned());
        }
    }

    fn bind(&mut self, target: &Expr<'a>) {
        match target {
            Expr::Var(var) => {
                if let Some(scope) = self.scopes.last_mut() {
                    scope.insert(var.id);
                }
            }
            Expr::List(list) => list.items.iter().for_each(|x| self.bind(x)),
            Expr::Tuple(tuple) => tuple.items.iter().for_each(|x| self.bind(x)),
            // `{% set ns.count = 1 %}` reads `ns`.
            other => self.expr(other),
        }
    }

    fn scoped(&mut self, bound: &[&'a str], f: impl FnOnce(&mut Self)) {
        self.scopes.push(bound.iter().copied().collect());
        f(self);
        self.scopes.pop();
    }

    fn body(&mut self, body: &[Stmt<'a>]) {
        body.iter().for_each(|s| self.stmt(s));
    }

    fn stmt(&mut self, stmt: &Stmt<'a>) {
        match stmt {
            Stmt::Template(t) => self.body(&t.children),
            Stmt::EmitExpr(e) => {
                if let Some(sql) = &mut self.sql {
                    let is_ident = matches!(&e.expr, Expr::Filter(f) if f.name == "ident");
                    let what = if is_ident {
                        "an `| ident` name"
                    } else {
                        "a `{{ }}` value"
                    };
                    if let Some((message, help)) = sql.refusal(what) {
                        let (start, end) = emit_span(&e.expr);
                        self.out.refused.push(Refusal {
                            offset: start as usize,
                            len: end.saturating_sub(start) as usize,
                            message,
                            help: help.to_string(),
                            unless_int_input: None,
                            shell: None,
                            construct_at: None,
                        });
                    }
                    // Stands for the parameter or the quoted identifier: one word of code.
                    sql.hole();
                }
                if let Some(shell) = &mut self.shell {
                    shell.hole();
                    let (start, end) = emit_span(&e.expr);
                    let input = match &e.expr {
                        Expr::GetAttr(a) => match &a.expr {
                            Expr::Var(v) if v.id == "inputs" => Some(a.name.to_string()),
                            _ => None,
                        },
                        _ => None,
                    };
                    self.shell_holes.push(ShellHole {
                        offset: start as usize,
                        len: end.saturating_sub(start) as usize,
                        int_filter: matches!(&e.expr, Expr::Filter(f) if f.name == "int"),
                        input,
                    });
                }
                self.expr(&e.expr);
            }
            Stmt::EmitRaw(raw) => {
                if let Some(sql) = &mut self.sql {
                    sql.feed(raw.raw);
                }
                if let Some(shell) = &mut self.shell {
                    // Positions in the source: the raw text starts where its span does, less
                    // any whitespace a `{%-` trimmed.
                    let span = raw.span();
                    let (start, end) = (span.start_offset as usize, span.end_offset as usize);
                    let origin = self
                        .src
                        .get(start..end)
                        .and_then(|s| s.find(raw.raw))
                        .map_or(start, |at| start + at);
                    shell.feed_at(raw.raw, origin);
                }
            }
            Stmt::ForLoop(f) => {
                let read = self.decision(&f.iter);
                self.scoped(&["loop"], |w| {
                    w.bind_from(&f.target, &read);
                    if let Some(filter) = &f.filter_expr {
                        w.decision(filter);
                    }
                    w.body(&f.body);
                });
                self.scoped(&[], |w| w.body(&f.else_body));
            }
            Stmt::IfCond(i) => {
                self.decision(&i.expr);
                self.body(&i.true_body);
                self.body(&i.false_body);
            }
            Stmt::WithBlock(w) => self.scoped(&[], |w2| {
                for (target, value) in &w.assignments {
                    let read = w2.reads(value);
                    w2.bind_from(target, &read);
                }
                w2.body(&w.body);
            }),
            Stmt::Set(s) => {
                let read = self.reads(&s.expr);
                self.bind_from(&s.target, &read);
            }
            Stmt::SetBlock(s) => {
                if let Some(filter) = &s.filter {
                    self.expr(filter);
                }
                self.scoped(&[], |w| w.body(&s.body));
                self.bind(&s.target);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.body(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.body(&f.body);
            }
            Stmt::Block(b) => self.scoped(&["super"], |w| w.body(&b.body)),
            Stmt::Extends(e) => self.expr(&e.name),
            Stmt::Include(i) => self.expr(&i.name),
            Stmt::Import(i) => {
                self.expr(&i.expr);
                self.bind(&i.name);
            }
            Stmt::FromImport(i) => {
                self.expr(&i.expr);
                for (name, alias) in &i.names {
                    self.bind(alias.as_ref().unwrap_or(name));
                }
            }
            Stmt::Macro(m) => {
                self.bind_name(m.name);
                self.macro_decl(m);
            }
            Stmt::CallBlock(c) => {
                self.call(&c.call);
                self.macro_decl(&c.macro_decl);
            }
            Stmt::Do(d) => self.call(&d.call),
            #[allow(unreachable_patterns)] // `break`/`continue` exist with `loop_controls` only
            _ => {}
        }
    }

    fn bind_name(&mut self, name: &'a str) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name);
        }
    }

    fn macro_decl(&mut self, m: &ast::Macro<'a>) {
        m.defaults.iter().for_each(|d| self.expr(d));
        self.scoped(&["caller", "varargs", "kwargs"], |w| {
            m.args.iter().for_each(|a| w.bind(a));
            w.body(&m.body);
        });
    }

    fn args(&mut self, args: &[CallArg<'a>]) {
        for arg in args {
            match arg {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn call(&mut self, call: &ast::Call<'a>) {
        match &call.expr {
            Expr::Var(var) if !self.is_bound(var.id) => {
                self.out
                    .unknown_functions
                    .push(name_ref(var.id, var.span()));
            }
            Expr::Var(_) => {}
            // `x.upper()`: a method call reads `x`, not `x.upper`.
            Expr::GetAttr(method) => self.expr(&method.expr),
            other => self.expr(other),
        }
        self.args(&call.args);
    }

    fn expr(&mut self, expr: &Expr<'a>) {
        match expr {
            Expr::Var(_) | Expr::GetAttr(_) | Expr::GetItem(_) => self.path(expr),
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr);
                [&s.start, &s.stop, &s.step]
                    .into_iter()
                    .flatten()
                    .for_each(|e| self.expr(e));
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(i) => {
                self.decision(&i.test_expr);
                self.expr(&i.true_expr);
                match &i.false_expr {
                    Some(e) => self.expr(e),
                    None => {
                        let start = i.true_expr.span().start_offset as usize;
                        let end = i.test_expr.span().end_offset as usize;
                        self.out.if_without_else.push(start..end.max(start));
                    }
                }
            }
            Expr::Filter(f) => {
                let span = f.span();
                if f.name == "raw" {
                    self.out.raw_uses.push(span.start_offset as usize);
                }
                if !BUILTIN_FILTERS.contains(&f.name) && !CAIRN_FILTERS.contains(&f.name) {
                    self.out.unknown_filters.push(name_ref(f.name, span));
                }
                if let Some(e) = &f.expr {
                    self.expr(e);
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                if !TESTS.contains(&t.name) {
                    self.out.unknown_tests.push(name_ref(t.name, t.span()));
                }
                self.expr(&t.expr);
                self.args(&t.args);
            }
            Expr::Call(c) => self.call(c),
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| self.expr(e)),
            Expr::Map(m) => m.keys.iter().chain(&m.values).for_each(|e| self.expr(e)),
        }
    }

    /// A chain of attribute and item lookups: records the longest constant path from its root
    /// variable, and walks whatever is dynamic in it.
    fn path(&mut self, expr: &Expr<'a>) {
        // Segments from the outside in; cleared at each dynamic part.
        let mut segments: Vec<String> = Vec::new();
        let mut end: Option<u32> = None;
        let mut node = expr;
        loop {
            match node {
                Expr::GetAttr(a) => {
                    end.get_or_insert(a.span().end_offset);
                    segments.push(a.name.to_string());
                    node = &a.expr;
                }
                Expr::GetItem(i) => {
                    match &i.subscript_expr {
                        Expr::Const(c) if c.value.as_str().is_some() || c.value.is_integer() => {
                            end.get_or_insert(i.span().end_offset);
                            let key = c
                                .value
                                .as_str()
                                .map_or_else(|| c.value.to_string(), str::to_string);
                            segments.push(key);
                        }
                        dynamic => {
                            self.expr(dynamic);
                            segments.clear();
                            end = None;
                        }
                    }
                    node = &i.expr;
                }
                Expr::Var(var) => {
                    if !self.is_bound(var.id) {
                        let span = var.span();
                        let start = span.start_offset as usize;
                        let end = end.unwrap_or(span.end_offset) as usize;
                        let mut path = vec![var.id.to_string()];
                        path.extend(segments.into_iter().rev());
                        let name = NameRef {
                            path,
                            offset: start,
                            len: end.saturating_sub(start),
                        };
                        if let Some(c) = self.collecting.last_mut() {
                            c.push(name.clone());
                        }
                        self.out.names.push(name);
                    } else if let Some(c) = self.collecting.last_mut()
                        && let Some(from) = self.taint.get(var.id)
                    {
                        c.extend(from.iter().cloned());
                    }
                    return;
                }
                other => {
                    self.expr(other);
                    return;
                }
            }
        }
    }
}

/// The variables a binding target names (`x`, `(a, b)`, `[a, b]`).
fn target_names<'a>(target: &Expr<'a>, out: &mut Vec<&'a str>) {
    match target {
        Expr::Var(var) => out.push(var.id),
        Expr::List(list) => list.items.iter().for_each(|x| target_names(x, out)),
        Expr::Tuple(tuple) => tuple.items.iter().for_each(|x| target_names(x, out)),
        _ => {}
    }
}
