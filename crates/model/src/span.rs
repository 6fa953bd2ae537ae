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
///
/// Linear in the source overall: a 200,000-item flow list on one line asks for 400,000 offsets
/// in that line, so an offset is found in O(1) on an ASCII line and, on other lines, by walking
/// on from the last offset asked for (the parser asks in source order).
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
    /// Per line: every byte is ASCII, so a char column is a byte column.
    ascii: Vec<bool>,
    /// The last (line, col, byte offset) found on a non-ASCII line.
    cursor: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        let ascii = (0..starts.len())
            .map(|l| {
                let end = starts.get(l + 1).copied().unwrap_or(source.len());
                source.as_bytes()[starts[l]..end].is_ascii()
            })
            .collect();
        LineIndex {
            source,
            starts,
            ascii,
            cursor: std::cell::Cell::new((0, 0, 0)),
        }
    }

    /// Byte range of `line` (1-based), without its newline.
    fn line_range(&self, line: usize) -> Option<(usize, usize)> {
        let start = *self.starts.get(line.checked_sub(1)?)?;
        let end = match self.starts.get(line) {
            Some(&next) => next - 1,
            None => self.source.len(),
        };
        Some((start, end))
    }

    /// Byte offset of the `col`-th character (0-based) of `line` (1-based), clamped to the line.
    pub(crate) fn offset(&self, line: usize, col: usize) -> usize {
        let Some((start, end)) = self.line_range(line) else {
            return self.source.len();
        };
        if self.ascii[line - 1] {
            return (start + col).min(end);
        }
        let (c_line, c_col, c_off) = self.cursor.get();
        let (mut at_col, mut at) = if c_line == line && c_col <= col {
            (c_col, c_off)
        } else {
            (0, start)
        };
        let text = &self.source[at..end];
        let mut chars = text.char_indices();
        while at_col < col {
            match chars.next() {
                Some(_) => at_col += 1,
                None => break,
            }
        }
        at = match chars.next() {
            Some((i, _)) => at + i,
            None => end,
        };
        if at_col == col {
            self.cursor.set((line, col, at));
        }
        at
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
