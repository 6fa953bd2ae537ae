//! Typed readers over the YAML node tree: each reports a located diagnostic and returns `None`
//! on a wrong type, so parsing goes on and every problem is collected in one pass.

use crate::diag::{Diagnostic, did_you_mean};
use crate::span::{Span, Spanned};
use crate::values::{Dur, TValue, Tmpl};
use crate::yaml::{Node, NodeKind, Scalar};
use indexmap::IndexMap;

pub(crate) type Diags = Vec<Diagnostic>;

/// The entries of a YAML map being read; keys not taken are reported as unknown by `finish`.
pub(crate) struct Fields<'n> {
    pub span: Span,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    pub fn get(&mut self, key: &str) -> Option<&'n Node> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.text() == Some(key))?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.text() == Some(key))
    }

    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(k, _)| k.span)
    }

    /// Report every key not read, with a did-you-mean among `allowed`.
    pub fn finish(self, d: &mut Diags, allowed: &[&str], what: &str) {
        for ((k, _), used) in self.entries.iter().zip(self.used) {
            if used {
                continue;
            }
            match k.text() {
                Some(name) => d.push(
                    Diagnostic::error(k.span, format!("unknown key `{name}` in {what}"))
                        .maybe_help(
                            did_you_mean(name, allowed.iter().copied())
                                .or_else(|| Some(format!("{what} takes: {}", allowed.join(", ")))),
                        ),
                ),
                None => d.push(Diagnostic::error(
                    k.span,
                    format!("keys in {what} must be plain names"),
                )),
            }
        }
    }
}

pub(crate) fn map<'n>(d: &mut Diags, n: &'n Node, what: &str) -> Option<Fields<'n>> {
    match &n.kind {
        NodeKind::Map(entries) => Some(Fields {
            span: n.span,
            entries,
            used: vec![false; entries.len()],
        }),
        _ => {
            d.push(wrong(n, "a map", what));
            None
        }
    }
}

pub(crate) fn wrong(n: &Node, expected: &str, what: &str) -> Diagnostic {
    Diagnostic::error(
        n.span,
        format!("{what} must be {expected}, found {}", n.describe()),
    )
}

pub(crate) fn missing(d: &mut Diags, at: Span, key: &str, what: &str) {
    d.push(
        Diagnostic::error(at, format!("{what} is missing `{key}`"))
            .with_help(format!("add `{key}:`")),
    );
}

/// A plain string (a name, an id, a path): numbers and booleans are refused.
pub(crate) fn string(d: &mut Diags, n: &Node, what: &str) -> Option<Spanned<String>> {
    match n.scalar() {
        Some(Scalar::Str(s)) => Some(Spanned::new(s.to_string(), n.span)),
        _ => {
            d.push(wrong(n, "a string", what));
            None
        }
    }
}

/// Free text (a description): any scalar is taken as written.
pub(crate) fn text(d: &mut Diags, n: &Node, what: &str) -> Option<String> {
    match (n.text(), n.is_null()) {
        (Some(t), false) => Some(t.to_string()),
        _ => {
            d.push(wrong(n, "text", what));
            None
        }
    }
}

/// A template: any non-null scalar, kept as written.
pub(crate) fn tmpl(d: &mut Diags, n: &Node, what: &str) -> Option<Tmpl> {
    match (n.text(), n.style()) {
        (Some(t), Some(style)) if !n.is_null() => Some(Tmpl {
            src: t.to_string(),
            span: n.span,
            style,
        }),
        _ => {
            d.push(wrong(n, "text", what));
            None
        }
    }
}

pub(crate) fn boolean(d: &mut Diags, n: &Node, what: &str) -> Option<bool> {
    match n.scalar() {
        Some(Scalar::Bool(b)) => Some(b),
        _ => {
            d.push(wrong(n, "true or false", what));
            None
        }
    }
}

pub(crate) fn uint(d: &mut Diags, n: &Node, what: &str) -> Option<Spanned<u32>> {
    match n.scalar() {
        Some(Scalar::Int(i)) if (0..=u32::MAX as i64).contains(&i) => {
            Some(Spanned::new(i as u32, n.span))
        }
        Some(Scalar::Int(_)) => {
            d.push(Diagnostic::error(
                n.span,
                format!("{what} must be a whole number from 0 to {}", u32::MAX),
            ));
            None
        }
        _ => {
            d.push(wrong(n, "a whole number", what));
            None
        }
    }
}

pub(crate) fn float(d: &mut Diags, n: &Node, what: &str) -> Option<f64> {
    match n.scalar() {
        Some(Scalar::Int(i)) => Some(i as f64),
        Some(Scalar::Float(f)) if f.is_finite() => Some(f),
        _ => {
            d.push(wrong(n, "a number", what));
            None
        }
    }
}

/// A duration that may be a template, rendered when the step starts: the fixed duration, or
/// the template (never both).
pub(crate) fn duration_or_template(
    d: &mut Diags,
    n: &Node,
    what: &str,
) -> (Option<Spanned<Dur>>, Option<Tmpl>) {
    match n.scalar() {
        Some(Scalar::Str(s)) if s.contains("{{") || s.contains("{%") => (None, tmpl(d, n, what)),
        _ => (duration(d, n, what), None),
    }
}

pub(crate) fn duration(d: &mut Diags, n: &Node, what: &str) -> Option<Spanned<Dur>> {
    let help = "write durations like `30s`, `10m`, `4h` or `1h30m`";
    match n.scalar() {
        // A duration is read when the runbook is validated, before inputs or steps have values:
        // a template would be a guess now, so it is refused with the reason, not a parse error.
        Some(Scalar::Str(s)) if s.contains("{{") || s.contains("{%") => {
            d.push(
                Diagnostic::error(
                    n.span,
                    format!("{what} cannot be templated: it is fixed when the runbook is validated"),
                )
                .with_help(
                    "write a fixed duration (`30s`, `10m`); a step's `timeout` and a `wait`'s \
                     `duration`, `interval` and `timeout` may be templates, rendered when the step starts",
                ),
            );
            None
        }
        Some(Scalar::Str(s)) => match humantime::parse_duration(s.trim()) {
            Ok(v) => Some(Spanned::new(Dur(v), n.span)),
            Err(e) => {
                d.push(
                    Diagnostic::error(n.span, format!("invalid duration `{s}` for {what}: {e}"))
                        .with_help(help),
                );
                None
            }
        },
        Some(Scalar::Int(i)) => {
            d.push(
                Diagnostic::error(n.span, format!("{what} needs a unit"))
                    .with_help(format!("write `{i}s` for seconds or `{i}m` for minutes")),
            );
            None
        }
        _ => {
            d.push(wrong(n, "a duration", what).with_help(help));
            None
        }
    }
}

/// A list read item by item; `None` when the node is not a list.
pub(crate) fn list<T>(
    d: &mut Diags,
    n: &Node,
    what: &str,
    mut item: impl FnMut(&mut Diags, &Node) -> Option<T>,
) -> Option<Vec<T>> {
    match n.as_seq() {
        Some(items) => Some(items.iter().filter_map(|i| item(d, i)).collect()),
        None => {
            d.push(wrong(n, "a list", what));
            None
        }
    }
}

/// A map from names to values; `name_ok` checks each key (e.g. an identifier rule).
pub(crate) fn named<T>(
    d: &mut Diags,
    n: &Node,
    what: &str,
    mut value: impl FnMut(&mut Diags, &str, Span, &Node) -> Option<T>,
) -> IndexMap<String, T> {
    let mut out = IndexMap::new();
    if n.is_null() {
        return out;
    }
    let Some(entries) = n.as_map() else {
        d.push(wrong(n, "a map", what));
        return out;
    };
    for (k, v) in entries {
        let Some(key) = k
            .text()
            .filter(|_| k.as_map().is_none() && k.as_seq().is_none())
        else {
            d.push(Diagnostic::error(
                k.span,
                format!("keys in {what} must be plain names"),
            ));
            continue;
        };
        if let Some(t) = value(d, key, k.span, v) {
            out.insert(key.to_string(), t);
        }
    }
    out
}

/// Names usable as template attributes: `inputs.backup_dir`, `targets.db`.
pub(crate) fn check_ident(d: &mut Diags, name: &str, span: Span, what: &str) {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        d.push(
            Diagnostic::error(span, format!("invalid {what} name `{name}`"))
                .with_help("use letters, digits and `_`, starting with a letter or `_`"),
        );
    }
}

/// A templated YAML value (any shape); never fails.
pub(crate) fn tvalue(n: &Node) -> Spanned<TValue> {
    let v = match &n.kind {
        NodeKind::Seq(items) => TValue::Seq(items.iter().map(tvalue).collect()),
        NodeKind::Map(entries) => TValue::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        Spanned::new(k.text().unwrap_or_default().to_string(), k.span),
                        tvalue(v),
                    )
                })
                .collect(),
        ),
        NodeKind::Scalar(text, style) => match n.scalar() {
            Some(Scalar::Null) => TValue::Null,
            Some(Scalar::Bool(b)) => TValue::Bool(b),
            Some(Scalar::Int(i)) => TValue::Int(i),
            Some(Scalar::Float(f)) => TValue::Float(f),
            _ => TValue::Str(Tmpl {
                src: text.clone(),
                span: n.span,
                style: *style,
            }),
        },
    };
    Spanned::new(v, n.span)
}

/// A static YAML value as JSON (input defaults, `enum` lists).
pub(crate) fn json(n: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &n.kind {
        NodeKind::Seq(items) => Value::Array(items.iter().map(json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.text().unwrap_or_default().to_string(), json(v)))
                .collect(),
        ),
        NodeKind::Scalar(..) => match n.scalar() {
            Some(Scalar::Bool(b)) => Value::Bool(b),
            Some(Scalar::Int(i)) => Value::from(i),
            Some(Scalar::Float(f)) => {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            Some(Scalar::Str(s)) => Value::String(s.to_string()),
            Some(Scalar::Null) | None => Value::Null,
        },
    }
}
