//! Source positions kept from parsing onward, so every diagnostic can point into the YAML.

use std::fmt;

/// A place in one runbook file: 1-based line and column (in characters), byte offsets for slicing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub line: u32,
    pub col: u32,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset one past the last character (== start for an empty span).
    pub end: usize,
}

impl Span {
    /// Length in characters of the spanned text in `source` (at least 1, so a caret always shows).
    pub fn width(&self, source: &str) -> usize {
        source
            .get(self.start..self.end)
            .map_or(1, |s| s.chars().count().max(1))
    }
}

/// A value and where it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: serde::Serialize> serde::Serialize for Spanned<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Byte offsets of line starts, to turn the parser's (line, char column) into byte offsets.
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { source, starts }
    }

    /// Byte offset of the `col`-th character (0-based) of `line` (1-based), clamped to the line.
    pub(crate) fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return self.source.len();
        };
        let rest = &self.source[start..];
        let line_len = rest.find('\n').unwrap_or(rest.len());
        rest[..line_len]
            .char_indices()
            .nth(col)
            .map_or(start + line_len, |(i, _)| start + i)
    }

    /// Line and 0-based char column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line.saturating_sub(1).min(self.starts.len() - 1)];
        let col = self
            .source
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line.max(1), col)
    }

    pub(crate) fn span(&self, (l1, c1): (usize, usize), (l2, c2): (usize, usize)) -> Span {
        let start = self.offset(l1, c1);
        let end = self.offset(l2, c2).max(start);
        Span {
            line: l1 as u32,
            col: c1 as u32 + 1,
            start,
            end,
        }
    }

    /// A span over the byte range `start..end` of the source.
    pub(crate) fn span_bytes(&self, start: usize, end: usize) -> Span {
        let (line, col) = self.position(start);
        Span {
            line: line as u32,
            col: col as u32 + 1,
            start,
            end: end.max(start),
        }
    }
}
