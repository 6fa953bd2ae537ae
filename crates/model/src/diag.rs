//! Diagnostics: every problem found in a runbook, located and rendered like a compiler error.

use crate::span::Span;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, pointing at the YAML text that causes it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    #[serde(skip)]
    pub span: Span,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            help: None,
        }
    }
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            span,
            help: None,
        }
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Render in the house format:
    /// ```text
    /// error: step `verify` needs unknown step `restore_db`
    ///  --> runbooks/restore.yaml:7:16
    ///   |
    /// 7 |     needs: [a, restore_db]
    ///   |                ^^^^^^^^^^
    ///   = help: did you mean `restore-db`?
    /// ```
    pub fn render(&self, file: &str, source: &str, color: bool) -> String {
        let (bold, red, yellow, blue, reset) = if color {
            (
                "\x1b[1m",
                "\x1b[1;31m",
                "\x1b[1;33m",
                "\x1b[1;34m",
                "\x1b[0m",
            )
        } else {
            ("", "", "", "", "")
        };
        let (label, lc) = match self.severity {
            Severity::Error => ("error", red),
            Severity::Warning => ("warning", yellow),
        };
        let mut out = String::new();
        let _ = writeln!(out, "{lc}{label}{reset}{bold}: {}{reset}", self.message);
        let line_no = self.span.line.max(1) as usize;
        let gutter = line_no.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(
            out,
            "{pad}{blue}-->{reset} {file}:{}:{}",
            line_no,
            self.span.col.max(1)
        );
        if let Some(text) = source.lines().nth(line_no - 1) {
            let text = text.replace('\t', " ");
            let col = (self.span.col.max(1) - 1) as usize;
            let room = text.chars().count().saturating_sub(col).max(1);
            let width = self.span.width(source).min(room);
            let _ = writeln!(out, "{pad} {blue}|{reset}");
            let _ = writeln!(out, "{blue}{line_no} |{reset} {text}");
            let _ = writeln!(
                out,
                "{pad} {blue}|{reset} {}{lc}{}{reset}",
                " ".repeat(col),
                "^".repeat(width)
            );
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}help{reset}: {help}");
        }
        out
    }
}

/// The problems found in one file, in source order.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.0.push(Diagnostic::error(span, message));
        let last = self.0.len() - 1;
        &mut self.0[last]
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }
    /// Source order, errors before warnings at the same place; identical duplicates dropped.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|a| (a.span.start, a.severity));
        self.0
            .dedup_by(|a, b| a.span == b.span && a.message == b.message);
    }
}

/// `did you mean `x`?` when one candidate is close enough to be the intended one.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        let close = score > 0.8 || strsim::levenshtein(word, c) <= (word.len() / 3).max(1);
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}
