//! The values a runbook's keys hold, each keeping where it was written: templates, durations,
//! inputs, secrets, targets, defaults, retries, expectations. Steps, notifiers and the runbook
//! are made of them.

use crate::span::{Span, Spanned};
use crate::yaml::Style;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;
use std::borrow::Cow;

/// A template string as written in the YAML (`"{{ inputs.dir }}/x"`), with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Tmpl {
    pub src: String,
    pub span: Span,
    pub style: Style,
}

impl Tmpl {
    /// The line of the runbook file where line `line` (1-based) of the template is written:
    /// exact for one-line values and literal blocks (`|`); for a folded block (`>`) it counts
    /// the template's lines from the block's first line; a quoted or plain value gives the line
    /// where it starts (its line breaks are escapes or folding, not lines of the file).
    pub fn file_line(&self, line: usize) -> u32 {
        let extra = u32::try_from(line.saturating_sub(1)).unwrap_or(u32::MAX);
        match self.style {
            // A block's span starts at its first line of text.
            Style::Block => self.span.line.saturating_add(extra),
            Style::Plain | Style::Quoted => self.span.line,
        }
    }
}

impl Serialize for Tmpl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.src.serialize(s)
    }
}

impl JsonSchema for Tmpl {
    fn schema_name() -> Cow<'static, str> {
        "Template".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "number", "boolean"],
            "description": "Text; `{{ expression }}` parts are minijinja templates."
        })
    }
}

/// A YAML value whose strings are templates: SQL-free data such as an HTTP JSON body, Chroma
/// parameters, `with:` inputs, outputs and `for_each` lists.
#[derive(Clone, Debug, PartialEq)]
pub enum TValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Tmpl),
    Seq(Vec<Spanned<TValue>>),
    Map(Vec<(Spanned<String>, Spanned<TValue>)>),
}

impl Serialize for TValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            TValue::Null => s.serialize_unit(),
            TValue::Bool(b) => s.serialize_bool(*b),
            TValue::Int(i) => s.serialize_i64(*i),
            TValue::Float(f) => s.serialize_f64(*f),
            TValue::Str(t) => t.serialize(s),
            TValue::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&i.value)?;
                }
                seq.end()
            }
            TValue::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(&k.value, &v.value)?;
                }
                map.end()
            }
        }
    }
}

impl JsonSchema for TValue {
    fn schema_name() -> Cow<'static, str> {
        "TemplatedValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "description": "Any YAML value; strings in it are templates." })
    }
}

/// A duration written like `30s`, `10m`, `4h`, `1h30m` (humantime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub std::time::Duration);

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// The schema of a duration that may also be written as a template, rendered when the step
/// starts (a step's `timeout`, a `wait`'s `duration`, `interval` and `timeout`).
pub struct DurOrTemplate;

impl JsonSchema for DurOrTemplate {
    fn schema_name() -> Cow<'static, str> {
        "DurationOrTemplate".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let fixed = generator.subschema_for::<Dur>();
        schemars::json_schema!({
            "anyOf": [fixed, { "type": "string", "pattern": "\\{[{%]" }],
            "description": "A duration (`30s`, `10m`), or a template giving one when the step starts (`\"{{ inputs.grace }}\"`)"
        })
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*([0-9]+\\s*(ns|us|ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|week|weeks)\\s*)+$",
            "description": "A duration such as `30s`, `10m`, `4h` or `1h30m`."
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    String,
    Int,
    Number,
    Bool,
    List,
    Map,
}

impl InputType {
    pub const NAMES: &'static [&'static str] = &["string", "int", "number", "bool", "list", "map"];
}

/// An input, given with `--set key=value` or `--inputs file.yaml`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(rename = "type", default)]
    pub ty: InputType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// A regular expression the whole value must match (strings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values accepted.
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// A secret, read at run time from the environment or a file; never written anywhere.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A missing variable or file gives an empty secret instead of refusing to run
    /// (e.g. a database password under trust authentication).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Sqlite,
    Mysql,
    Chroma,
    Http,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Postgres,
        TargetKind::Sqlite,
        TargetKind::Mysql,
        TargetKind::Chroma,
        TargetKind::Http,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Postgres => "postgres",
            TargetKind::Sqlite => "sqlite",
            TargetKind::Mysql => "mysql",
            TargetKind::Chroma => "chroma",
            TargetKind::Http => "http",
        }
    }
    pub fn is_sql(self) -> bool {
        self.sql_dialect().is_some()
    }
    /// The SQL dialect of an SQL target: how its queries are lexed, bound and quoted.
    pub fn sql_dialect(self) -> Option<cairn_template::Dialect> {
        use cairn_template::Dialect;
        match self {
            TargetKind::Postgres => Some(Dialect::Postgres),
            TargetKind::Sqlite => Some(Dialect::Sqlite),
            TargetKind::Mysql => Some(Dialect::Mysql),
            TargetKind::Chroma | TargetKind::Http => None,
        }
    }
}

/// A named connection. Exactly one of `postgres`, `sqlite`, `mysql`, `chroma`, `http` gives its
/// kind and URL; the other keys add credentials and options.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chroma: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Tmpl>,
    /// SQL password (kept out of the URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Tmpl>,
    /// Bearer token for `http` and `chroma` targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, Tmpl>,
    /// Accept self-signed TLS certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Chroma tenant (default `default_tenant`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Tmpl>,
    /// Chroma database (default `default_database`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

impl Target {
    /// The kind and URL template (the parser guarantees exactly one).
    pub fn kind(&self) -> (TargetKind, &Tmpl) {
        let all = [
            &self.postgres,
            &self.sqlite,
            &self.mysql,
            &self.chroma,
            &self.http,
        ];
        for (kind, url) in TargetKind::ALL.into_iter().zip(all) {
            if let Some(u) = url {
                return (kind, u);
            }
        }
        unreachable!("the parser refuses a target without a kind")
    }
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: Tmpl,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Tmpl>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Dur>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Where `shell` and `argv` steps run when they say nothing (as a step's `runs_on`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<RunsOn>,
}

/// `runs_on: { host: db1 }`: the labels a worker must have (each with the same value) to run
/// the step; the run's other steps go on where the run runs. `{}` runs the step where the run
/// runs (it overrides a default).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct RunsOn {
    /// Label names: letters, digits, `-`, `_` or `.`; values: text.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The `runs_on` key, where errors about it point.
    #[serde(skip)]
    #[schemars(skip)]
    pub span: crate::span::Span,
}

impl RunsOn {
    /// Whether the step is sent to a worker (`{}` is not).
    pub fn routes(&self) -> bool {
        !self.labels.is_empty()
    }
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, including the first (1 = no retry).
    #[schemars(range(min = 1))]
    pub attempts: u32,
    /// Wait before the second attempt (default 1s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Dur>,
    /// Multiplier applied to the delay after each attempt (default 1.0), from 1.0 to 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub backoff: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Dur>,
    /// Randomise each delay by up to ±50 % (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Abort,
    Continue,
}

/// Assertions on a step's `result`: a map of result paths to expected values (a list = any of
/// them), or a list of expressions that must all be true.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Expect {
    Fields(IndexMap<String, Spanned<TValue>>),
    Exprs(Vec<Tmpl>),
}
