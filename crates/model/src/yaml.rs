//! YAML text -> a small node tree that keeps the position of every node.
//!
//! We walk saphyr's event stream ourselves instead of going through serde: serde stops at the
//! first error and drops positions, and validation must report every problem at its place.

use crate::diag::Diagnostic;
use crate::span::{LineIndex, Span};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// How a scalar was written; decides whether `true`/`12`/`null` are typed or text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

/// A scalar's YAML 1.2 core-schema type.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        let NodeKind::Scalar(text, style) = &self.kind else {
            return None;
        };
        if *style != Style::Plain {
            return Some(Scalar::Str(text));
        }
        Some(match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
            "true" | "True" | "TRUE" => Scalar::Bool(true),
            "false" | "False" | "FALSE" => Scalar::Bool(false),
            t => {
                if let Some(i) = parse_int(t) {
                    Scalar::Int(i)
                } else if let Some(f) = parse_float(t) {
                    Scalar::Float(f)
                } else {
                    Scalar::Str(t)
                }
            }
        })
    }

    /// What the node is, for "expected a list, found a map" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
            NodeKind::Scalar(..) => match self.scalar() {
                Some(Scalar::Null) => "nothing (null)",
                Some(Scalar::Bool(_)) => "a boolean",
                Some(Scalar::Int(_)) => "an integer",
                Some(Scalar::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar of any type (`12` -> "12"), for keys and templated strings.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(t, _) => Some(t),
            _ => None,
        }
    }

    pub fn style(&self) -> Option<Style> {
        match &self.kind {
            NodeKind::Scalar(_, s) => Some(*s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }
}

fn parse_int(t: &str) -> Option<i64> {
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn parse_float(t: &str) -> Option<f64> {
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let ok = t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if ok { t.parse().ok() } else { None }
}

/// Anchored nodes, kept for their aliases, which are expanded into copies. Anchors of aliases
/// of anchors grow exponentially (a few hundred bytes can ask for 10^9 nodes, the "billion
/// laughs"), so the nodes copied, for anchors and for aliases, are capped.
#[derive(Default)]
struct Anchors {
    nodes: HashMap<usize, (Node, usize)>,
    copied: usize,
}

impl Anchors {
    const MAX_COPIED: usize = 1_000_000;

    /// Keeps a copy of an anchored node; false past the cap.
    fn keep(&mut self, id: usize, node: &Node) -> bool {
        let size = size(node);
        self.copied += size;
        if self.copied > Self::MAX_COPIED {
            return false;
        }
        self.nodes.insert(id, (node.clone(), size));
        true
    }

    /// A copy of the anchored node, placed at `span`; `Ok(None)` for an unknown anchor.
    fn copy(&mut self, id: usize, span: Span) -> Result<Option<Node>, ()> {
        let Some((node, size)) = self.nodes.get(&id) else {
            return Ok(None);
        };
        self.copied += size;
        if self.copied > Self::MAX_COPIED {
            return Err(());
        }
        let kind = node.kind.clone();
        Ok(Some(Node { kind, span }))
    }

    fn too_many(diags: &mut Vec<Diagnostic>, span: Span) {
        diags.push(
            Diagnostic::error(
                span,
                format!(
                    "anchors and aliases expand to more than {} YAML nodes",
                    Self::MAX_COPIED
                ),
            )
            .with_help(
                "aliases of anchors that hold aliases grow exponentially: write the values out",
            ),
        );
    }
}

/// The number of nodes in a tree.
fn size(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Scalar(..) => 0,
        NodeKind::Seq(items) => items.iter().map(size).sum(),
        NodeKind::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
    }
}

enum Frame {
    Seq(Span, Vec<Node>, usize),
    /// Entries, the key waiting for its value, the line of each key seen (duplicates are found
    /// by hashing: a flow map of 200,000 keys must not compare every pair), the anchor.
    Map(
        Span,
        Vec<(Node, Node)>,
        Option<Node>,
        HashMap<String, u32>,
        usize,
    ),
}

/// Parse one YAML document. Syntax errors, aliases to unknown anchors, duplicate keys and
/// further documents are reported as diagnostics; `None` when no tree could be built.
pub fn parse(source: &str, diags: &mut Vec<Diagnostic>) -> Option<Node> {
    let index = LineIndex::new(source);
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors = Anchors::default();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    // Caps nesting so a hostile file cannot exhaust the stack of later recursive passes.
    const MAX_DEPTH: usize = 64;

    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let m = e.marker();
                let at = index.span((m.line(), m.col()), (m.line(), m.col() + 1));
                diags.push(
                    Diagnostic::error(at, format!("invalid YAML: {}", e.info())).with_help(
                        "check indentation, unclosed quotes and brackets, and `key: value` spacing",
                    ),
                );
                return None;
            }
        };
        let sp = index.span(
            (span.start.line(), span.start.col()),
            (span.end.line(), span.end.col()),
        );
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    diags.push(
                        Diagnostic::error(sp, "a runbook file holds exactly one YAML document")
                            .with_help("put each runbook in its own file"),
                    );
                    return root;
                }
                continue;
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let node = Node {
                    kind: NodeKind::Scalar(text.into_owned(), style),
                    span: sp,
                };
                if anchor > 0 && !anchors.keep(anchor, &node) {
                    Anchors::too_many(diags, sp);
                    return None;
                }
                node
            }
            Event::Alias(id) => match anchors.copy(id, sp) {
                Ok(Some(node)) => node,
                Err(()) => {
                    Anchors::too_many(diags, sp);
                    return None;
                }
                Ok(None) => {
                    diags.push(Diagnostic::error(sp, "alias to an unknown anchor"));
                    Node {
                        kind: NodeKind::Scalar(String::new(), Style::Plain),
                        span: sp,
                    }
                }
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _)
                if stack.len() >= MAX_DEPTH =>
            {
                let _ = anchor;
                diags.push(Diagnostic::error(
                    sp,
                    format!("nesting deeper than {MAX_DEPTH} levels"),
                ));
                return None;
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(sp, Vec::new(), anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(sp, Vec::new(), None, HashMap::new(), anchor));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(start, items, anchor)) => {
                    let node = Node {
                        kind: NodeKind::Seq(items),
                        span: start,
                    };
                    if anchor > 0 && !anchors.keep(anchor, &node) {
                        Anchors::too_many(diags, node.span);
                        return None;
                    }
                    node
                }
                _ => return None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(start, entries, _, _, anchor)) => {
                    let node = Node {
                        kind: NodeKind::Map(entries),
                        span: start,
                    };
                    if anchor > 0 && !anchors.keep(anchor, &node) {
                        Anchors::too_many(diags, node.span);
                        return None;
                    }
                    node
                }
                _ => return None,
            },
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending, seen, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if let Some(k) = key.text() {
                        if let Some(first) = seen.get(k) {
                            diags.push(
                                Diagnostic::error(key.span, format!("duplicate key `{k}`"))
                                    .with_help(format!("`{k}` is already set on line {first}")),
                            );
                        } else {
                            seen.insert(k.to_string(), key.span.line);
                        }
                    }
                    entries.push((key, node));
                }
            },
        }
    }
    root
}
