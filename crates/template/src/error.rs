//! Template errors, located in the source the caller passed in.

use std::fmt;

/// What went wrong; see [`TemplateError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The template does not parse.
    Syntax,
    /// A name or attribute that is not defined was used (templates are strict).
    Undefined,
    /// `| name` where no filter `name` exists.
    UnknownFilter,
    /// `name(...)` where no function `name` exists.
    UnknownFunction,
    /// `is name` where no test `name` exists.
    UnknownTest,
    /// A value that cannot be used where it is: a NUL byte in a shell argument, an empty
    /// SQL identifier, a `{{ }}` inside a quoted SQL literal, a bad `strftime` format...
    InvalidValue,
    /// [`crate::Templates::eval_expr`] met a dry-run [`crate::placeholder`]: the expression
    /// cannot be decided before the run. `path` names the placeholder
    /// (`steps.verify_dump.result.exit_code`).
    Undecided {
        /// The path of the placeholder the expression depended on.
        path: String,
    },
    /// Any other failure while rendering (a type error, a failing filter...).
    Render,
}

/// A template failed to parse, render or evaluate.
///
/// `Display` is one line without location (`undefined value `inputs.bakup_dir``); the location
/// is given separately so that callers can point into the YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// One line, without location.
    pub message: String,
    /// Byte offset into the template source, where known.
    pub offset: Option<usize>,
    /// Length in bytes of the offending text at `offset` (0 if unknown).
    pub len: usize,
    /// 1-based line within the template source, where known.
    pub line: Option<usize>,
}

impl TemplateError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            offset: None,
            len: 0,
            line: None,
        }
    }

    pub(crate) fn at(mut self, src: &str, offset: usize, len: usize) -> Self {
        if let Some(before) = src.get(..offset) {
            self.offset = Some(offset);
            self.len = len.min(src.len() - offset);
            self.line = Some(before.matches('\n').count() + 1);
        }
        self
    }

    /// Relocates an error found in `prefix + src + suffix`, where the prefix is `shift` bytes
    /// long, into `src`.
    pub(crate) fn shifted_back(self, shift: usize, src: &str) -> Self {
        match self.offset {
            Some(offset) => {
                let start = offset.saturating_sub(shift).min(src.len());
                let end = (offset + self.len).saturating_sub(shift).min(src.len());
                Self {
                    offset: None,
                    line: None,
                    ..self
                }
                .at(src, start, end - start)
            }
            None => self,
        }
    }

    /// The placeholder path when this is an [`ErrorKind::Undecided`] error.
    pub fn undecided(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Undecided { path } => Some(path),
            _ => None,
        }
    }

    /// Converts a minijinja error raised while parsing or rendering `src` into one located in
    /// `src`.
    pub(crate) fn from_minijinja(err: &minijinja::Error, src: &str) -> Self {
        use minijinja::ErrorKind as K;
        let mut range = err.range().filter(|r| src.get(r.clone()).is_some());
        let snippet = range.clone().and_then(|r| src.get(r)).map(str::trim);
        let detail = err.detail().map(str::to_string);
        // minijinja names the undefined value in the detail ("`inputs.x` is undefined"), while
        // its span may cover only the failing lookup (`.x.y`): point at the name instead.
        let undefined = detail.as_deref().and_then(undefined_name);
        if let (Some(name), Some(r)) = (undefined, range.clone())
            && let Some(at) = src[..r.end].rfind(name)
        {
            range = Some(at..at + name.len());
        }
        let refused = std::error::Error::source(err).and_then(|s| s.downcast_ref::<Refused>());
        let (kind, message) = if let Some(refused) = refused {
            (ErrorKind::InvalidValue, refused.0.clone())
        } else {
            match err.kind() {
                K::SyntaxError => (
                    ErrorKind::Syntax,
                    format!("syntax error: {}", detail.unwrap_or_default()),
                ),
                K::UndefinedError => (
                    ErrorKind::Undefined,
                    match undefined.or(snippet) {
                        Some(name) if !name.is_empty() => format!("undefined value `{name}`"),
                        _ => "undefined value".to_string(),
                    },
                ),
                K::UnknownFilter => (ErrorKind::UnknownFilter, named("filter", snippet)),
                K::UnknownFunction => (ErrorKind::UnknownFunction, named("function", snippet)),
                K::UnknownTest => (ErrorKind::UnknownTest, named("test", snippet)),
                other => (
                    ErrorKind::Render,
                    detail.unwrap_or_else(|| other.to_string()),
                ),
            }
        };
        // For unknown names the span may run on over the arguments: keep just the name.
        if matches!(
            kind,
            ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest
        ) && let (Some(r), Some(name)) = (range.clone(), snippet.map(name_part))
            && src[r.clone()].starts_with(name)
        {
            range = Some(r.start..r.start + name.len());
        }
        let out = Self::new(kind, message);
        match range {
            Some(r) => out.at(src, r.start, r.len()),
            None => Self {
                line: err.line(),
                ..out
            },
        }
    }
}

/// The name in a minijinja detail such as "`inputs.x` is undefined" (also found at the end of
/// operator errors: "... (`inputs.x` is undefined)").
fn undefined_name(detail: &str) -> Option<&str> {
    let end = detail.find("` is undefined")?;
    let start = detail[..end].rfind('`')? + 1;
    Some(&detail[start..end])
}

/// "unknown filter `strftme`" from the span of the name (for a function call the span covers
/// the call: keep the name before the parenthesis).
fn named(what: &str, snippet: Option<&str>) -> String {
    match snippet.map(name_part) {
        Some(name) if !name.is_empty() => format!("unknown {what} `{name}`"),
        _ => format!("unknown {what}"),
    }
}

fn name_part(snippet: &str) -> &str {
    snippet.split('(').next().unwrap_or(snippet).trim()
}

/// A value was refused by one of our filters or formatters; carried as the source of a
/// minijinja error so that the kind survives the round trip through the engine.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A minijinja error that [`TemplateError::from_minijinja`] turns into
/// [`ErrorKind::InvalidValue`] with `message`.
pub(crate) fn refuse(message: impl Into<String>) -> minijinja::Error {
    let message = message.into();
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message.clone())
        .with_source(Refused(message))
}
