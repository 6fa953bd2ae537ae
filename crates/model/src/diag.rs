//! Diagnostics: every problem found in a runbook, located and rendered like a compiler error.

use crate::span::Span;
use anstyle::{AnsiColor, Style};
use std::fmt::Write as _;

/// How diagnostics are styled on a terminal (and what the CLI's `error:` labels reuse).
pub const BOLD: Style = Style::new().bold();
pub const ERROR: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
pub const WARNING: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
pub const GUTTER: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Blue)));

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
            message: clip(message.into()),
            span,
            help: None,
        }
    }
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: clip(message.into()),
            span,
            help: None,
        }
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(clip(help.into()));
        self
    }
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help.map(clip);
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
        let paint = |s: Style| {
            if color {
                s.render().to_string()
            } else {
                String::new()
            }
        };
        let (bold, red, yellow, blue) = (paint(BOLD), paint(ERROR), paint(WARNING), paint(GUTTER));
        let reset = if color {
            anstyle::Reset.render().to_string()
        } else {
            String::new()
        };
        let (label, lc) = match self.severity {
            Severity::Error => ("error", red),
            Severity::Warning => ("warning", yellow),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{lc}{label}{reset}{bold}: {}{reset}",
            escape_controls(&self.message)
        );
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
            let col = (self.span.col.max(1) - 1) as usize;
            let (text, col) = excerpt(text, col);
            let text = text.replace('\t', " ");
            // Control characters of the file are shown escaped, the caret moved past them.
            let col = escape_controls(&text.chars().take(col).collect::<String>())
                .chars()
                .count();
            let text = escape_controls(&text);
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
            let help = escape_controls(help);
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}help{reset}: {help}");
        }
        out
    }
}

/// Text from a step, a value or a file, made safe for a terminal: control characters other
/// than newline and tab are shown escaped (`\u{1b}`), so an escape sequence cannot retitle,
/// clear or rewrite what the operator reads. Every terminal output of Cairn goes through it.
pub fn escape_controls(s: &str) -> String {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(unsafe_char) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Characters of a source line shown under a diagnostic; a longer line is cut around the column.
const LINE_SHOWN: usize = 120;
/// Characters of a value quoted in a message (between backticks) before it is cut.
const QUOTE_SHOWN: usize = 60;
/// Characters of a whole message or help text before it is cut.
const MESSAGE_SHOWN: usize = 1000;

/// At most [`LINE_SHOWN`] characters of `line` around the 0-based char column `col`, with `…`
/// where it was cut, and the column within the excerpt.
fn excerpt(line: &str, col: usize) -> (String, usize) {
    let total = line.chars().count();
    if total <= LINE_SHOWN {
        return (line.to_string(), col);
    }
    let to = (col.saturating_sub(LINE_SHOWN / 4) + LINE_SHOWN).min(total);
    let from = to - LINE_SHOWN;
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(line.chars().skip(from).take(to - from));
    if to < total {
        out.push('…');
    }
    (out, col - from + usize::from(from > 0))
}

/// A message with long quoted values (`` `…` ``) shortened, and at most [`MESSAGE_SHOWN`]
/// characters in all: a 5 MB line of YAML must not come back whole in an error.
fn clip(message: String) -> String {
    if message.len() <= QUOTE_SHOWN {
        return message;
    }
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let n = part.chars().count();
        if i % 2 == 1 && n > QUOTE_SHOWN {
            out.extend(part.chars().take(QUOTE_SHOWN));
            out.push_str(&format!("… ({n} characters)"));
        } else {
            out.push_str(part);
        }
    }
    if out.chars().count() > MESSAGE_SHOWN {
        let n = out.chars().count();
        out = out.chars().take(MESSAGE_SHOWN).collect();
        out.push_str(&format!("… ({n} characters)"));
    }
    out
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
