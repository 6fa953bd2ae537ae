//! Steps and their kinds.

use crate::span::{Span, Spanned};
use crate::values::{Dur, Expect, OnFailure, Retry, TValue, TargetKind, Tmpl};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;
use std::borrow::Cow;

/// One node of the DAG: the common keys, plus exactly one kind
/// (`shell`, `argv`, `sql`, `http`, `chroma`, `check`, `approval`, `wait`, `report`, `uses`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_kind)]
pub struct Step {
    /// `[a-z0-9_][a-z0-9_-]*`, unique in the runbook (steps and finally together).
    #[schemars(regex(pattern = r"^[a-z0-9_][a-z0-9_-]*$"))]
    pub id: Spanned<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steps this one waits for; `[]` starts at once. Without it: the step written before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<Spanned<String>>>,
    /// The step cannot change anything: `plan --probe` may run it for real.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// An expression; false = the step is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Tmpl>,
    /// A list, or a template giving a list; `item` and `index` are in scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Spanned<TValue>>,
    /// How many `for_each` items run at once (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<Spanned<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::values::DurOrTemplate>")]
    pub timeout: Option<Spanned<Dur>>,
    /// `timeout` written as a template: rendered when each attempt starts.
    #[serde(rename = "timeout", skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub timeout_template: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Named templates over `result`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, Spanned<TValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Safe to run again after a crash interrupted it (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Tmpl>,
    /// `shell`/`argv` only: when the command exits 0, what it left running runs on after the
    /// step and the run (released, not stopped), with only a few of Cairn's environment
    /// variables (PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TZ, TMPDIR) plus `env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detach: Option<bool>,
    /// `finally` only: held back (skipped) while the run has failed or was interrupted, so that
    /// a resume finds what it would remove; runs in the attempt that ends the run succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_for_resume: Option<Spanned<bool>>,
    /// A named lock held while the step runs, shared across runbooks and runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<Spanned<String>>,
    /// `shell`/`argv` only: run the step on a worker whose labels match (`{ host: db1 }`);
    /// `{}` runs it where the run runs, whatever `defaults.runs_on` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<crate::values::RunsOn>,

    /// What the step does: exactly one kind (its key and value are written beside the
    /// common keys, so a step serializes as it is written).
    #[serde(flatten)]
    #[schemars(with = "KindKeys")]
    pub kind: StepKind,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// The step kinds a step or a `wait` can hold.
pub const ACTION_KEYS: &[&str] = &[
    "shell", "argv", "sql", "http", "chroma", "check", "approval", "wait", "report", "uses",
];
/// The kinds a `wait` may poll.
pub const POLL_KEYS: &[&str] = &["shell", "argv", "sql", "http", "chroma"];

/// What a step does: exactly one kind, owning its data. The parser builds it from the one kind
/// key the step has; a step with none or two is refused there, so no other state exists.
#[derive(Clone, Debug)]
pub enum StepKind {
    Shell(Tmpl),
    Argv(Vec<Tmpl>),
    Sql(SqlStep),
    // Boxed: the request is much larger than the other kinds.
    Http(Box<HttpStep>),
    Chroma(ChromaStep),
    Check(CheckStep),
    Approval(ApprovalStep),
    Wait(WaitStep),
    Report(ReportStep),
    Uses(UsesStep),
}

impl StepKind {
    /// The key the kind is written with (`shell`, `sql`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Shell(_) => "shell",
            StepKind::Argv(_) => "argv",
            StepKind::Sql(_) => "sql",
            StepKind::Http(_) => "http",
            StepKind::Chroma(_) => "chroma",
            StepKind::Check(_) => "check",
            StepKind::Approval(_) => "approval",
            StepKind::Wait(_) => "wait",
            StepKind::Report(_) => "report",
            StepKind::Uses(_) => "uses",
        }
    }
}

/// Written as the step writes it: the kind's key and its value (`uses` also `with`, when it
/// has inputs), in the step's own map. This keeps a step's JSON, and so its definition hash,
/// the same as when each kind was a key of its own.
impl Serialize for StepKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        match self {
            StepKind::Shell(t) => map.serialize_entry("shell", t)?,
            StepKind::Argv(a) => map.serialize_entry("argv", a)?,
            StepKind::Sql(q) => map.serialize_entry("sql", q)?,
            StepKind::Http(h) => map.serialize_entry("http", h)?,
            StepKind::Chroma(c) => map.serialize_entry("chroma", c)?,
            StepKind::Check(c) => map.serialize_entry("check", c)?,
            StepKind::Approval(a) => map.serialize_entry("approval", a)?,
            StepKind::Wait(w) => map.serialize_entry("wait", w)?,
            StepKind::Report(r) => map.serialize_entry("report", r)?,
            StepKind::Uses(u) => {
                map.serialize_entry("uses", &u.path)?;
                if !u.with.is_empty() {
                    map.serialize_entry("with", &u.with)?;
                }
            }
        }
        map.end()
    }
}

/// Run another runbook as a sub-run.
#[derive(Clone, Debug)]
pub struct UsesStep {
    /// Path of the runbook, relative to this file.
    pub path: Spanned<String>,
    /// Its inputs.
    pub with: IndexMap<String, Spanned<TValue>>,
}

/// The keys of the kinds as the schema shows them; [`one_kind`] adds that exactly one is
/// present, and that `with` comes with `uses`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct KindKeys {
    shell: Option<Tmpl>,
    argv: Option<Vec<Tmpl>>,
    sql: Option<SqlStep>,
    http: Option<HttpStep>,
    chroma: Option<ChromaStep>,
    check: Option<CheckStep>,
    approval: Option<ApprovalStep>,
    wait: Option<WaitStep>,
    report: Option<ReportStep>,
    /// Path of another runbook (relative to this file) run as a sub-run.
    uses: Option<String>,
    /// Inputs for the `uses` runbook.
    #[serde(rename = "with")]
    with: Option<IndexMap<String, TValue>>,
}

/// A step has exactly one kind: the schema says so, so that an editor flags a step with none
/// or two as the parser does.
fn one_kind(schema: &mut schemars::Schema) {
    let one_of: Vec<serde_json::Value> = ACTION_KEYS
        .iter()
        .map(|k| serde_json::json!({ "required": [k] }))
        .collect();
    schema.insert("oneOf".into(), one_of.into());
    schema.insert(
        "dependencies".into(),
        serde_json::json!({ "with": ["uses"] }),
    );
}

impl Step {
    /// Whether this `finally` step waits for the run to succeed (`keep_for_resume: true`).
    pub fn keep_for_resume(&self) -> bool {
        self.keep_for_resume.as_ref().is_some_and(|k| k.value)
    }

    /// Whether what the command leaves running is released (`detach: true`).
    pub fn detach(&self) -> bool {
        self.detach.unwrap_or(false)
    }

    pub fn idempotent(&self) -> bool {
        self.idempotent.unwrap_or(true)
    }

    /// The labels a worker must have to run this step: its own `runs_on`, else the runbook's
    /// default for `shell` and `argv` steps. `None`: it runs where the run runs.
    pub fn routed_to<'a>(
        &'a self,
        defaults: Option<&'a crate::values::Defaults>,
    ) -> Option<&'a crate::values::RunsOn> {
        let routable = matches!(self.kind, StepKind::Shell(_) | StepKind::Argv(_));
        self.runs_on
            .as_ref()
            .or_else(|| defaults.and_then(|d| d.runs_on.as_ref()))
            .filter(|r| routable && r.routes())
    }
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStep {
    /// A `postgres`, `sqlite` or `mysql` target.
    pub target: Spanned<String>,
    /// Every `{{ value }}` becomes a bind parameter; `{{ name | ident }}` quotes an identifier.
    pub query: Tmpl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl Method {
    pub const KEYS: [(&'static str, Method); 6] = [
        ("get", Method::Get),
        ("post", Method::Post),
        ("put", Method::Put),
        ("patch", Method::Patch),
        ("delete", Method::Delete),
        ("head", Method::Head),
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

/// An HTTP request: exactly one of `get`/`post`/`put`/`patch`/`delete`/`head` holds the URL
/// (absolute, or a path joined to the `target`'s URL).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub get: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub put: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<Tmpl>,
    /// An `http` target: base URL, auth, headers and TLS options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Spanned<TValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// Same as the step's `expect`; default: status < 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

impl HttpStep {
    pub fn method(&self) -> (Method, &Tmpl) {
        let urls = [
            &self.get,
            &self.post,
            &self.put,
            &self.patch,
            &self.delete,
            &self.head,
        ];
        for ((_, m), url) in Method::KEYS.into_iter().zip(urls) {
            if let Some(u) = url {
                return (m, u);
            }
        }
        unreachable!("the parser refuses an http step without a method")
    }
}

/// A Chroma call: `target` plus exactly one action key whose value holds its parameters.
#[derive(Clone, Debug)]
pub struct ChromaStep {
    pub target: Spanned<String>,
    /// The action's key (`count`, `export`, ...) and its parameters (a map, or null).
    pub action: (Spanned<String>, Spanned<TValue>),
}

impl Serialize for ChromaStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("target", &self.target)?;
        map.serialize_entry(&self.action.0.value, &self.action.1)?;
        map.end()
    }
}

impl JsonSchema for ChromaStep {
    fn schema_name() -> Cow<'static, str> {
        "ChromaStep".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut props = serde_json::Map::new();
        props.insert("target".into(), serde_json::json!({ "type": "string" }));
        let mut one_of = Vec::new();
        for (action, params) in CHROMA_ACTIONS {
            let keys: Vec<&str> = params.iter().map(|p| p.trim_end_matches('?')).collect();
            let required: Vec<&str> = params
                .iter()
                .filter(|p| !p.ends_with('?'))
                .copied()
                .collect();
            props.insert(
                (*action).into(),
                if keys.is_empty() {
                    serde_json::json!({ "type": ["object", "null"], "additionalProperties": false })
                } else {
                    let mut p = serde_json::Map::new();
                    for k in &keys {
                        p.insert((*k).into(), serde_json::json!({}));
                    }
                    serde_json::json!({ "type": "object", "properties": p, "required": required, "additionalProperties": false })
                },
            );
            one_of.push(serde_json::json!({ "required": [action] }));
        }
        schemars::json_schema!({
            "type": "object",
            "description": "A Chroma call: `target` plus exactly one action.",
            "properties": props,
            "required": ["target"],
            "oneOf": one_of,
            "additionalProperties": false
        })
    }
}

/// Chroma actions and the parameters each takes (`?` = optional).
pub const CHROMA_ACTIONS: &[(&str, &[&str])] = &[
    ("heartbeat", &[]),
    ("version", &[]),
    ("list", &[]),
    ("count", &["collection"]),
    ("create", &["name", "metadata?", "hnsw?", "get_or_create?"]),
    ("delete", &["name", "missing_ok?"]),
    (
        "add",
        &[
            "collection",
            "ids",
            "embeddings",
            "metadatas?",
            "documents?",
        ],
    ),
    (
        "upsert",
        &[
            "collection",
            "ids",
            "embeddings",
            "metadatas?",
            "documents?",
        ],
    ),
    (
        "get",
        &[
            "collection",
            "ids?",
            "where?",
            "limit?",
            "offset?",
            "include?",
        ],
    ),
    (
        "query",
        &[
            "collection",
            "query_embeddings",
            "n_results?",
            "where?",
            "include?",
        ],
    ),
    ("export", &["collections", "to", "batch_size?"]),
    (
        "import",
        &["from", "collections?", "replace?", "batch_size?"],
    ),
];

/// Chroma actions that only read, which `plan --probe` may run for real.
pub const CHROMA_READ_ACTIONS: &[&str] = &["heartbeat", "version", "list", "count", "get", "query"];

/// Compare a number with thresholds: `warning: "> 1000"`, `critical: ">= 0.95"` (a bare number
/// means `>`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckStep {
    pub value: Tmpl,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The state from which the step fails: `critical` (default), `warning`, or `never`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<CheckState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// A state, not a `fail_on` choice.
    #[schemars(skip)]
    Ok,
    Warning,
    Critical,
    Never,
}

/// A threshold as written: fixed (`"> 80"`, checked by validation), or a template
/// (`"> {{ inputs.pool_warning_pct }}"`) rendered when the step is prepared and parsed then.
#[derive(Clone, Debug)]
pub enum Limit {
    Fixed(Spanned<Threshold>),
    Templated(Tmpl),
}

impl Limit {
    /// The threshold when it is written as one; a template is only known once rendered.
    pub fn fixed(&self) -> Option<Threshold> {
        match self {
            Limit::Fixed(t) => Some(t.value),
            Limit::Templated(_) => None,
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Fixed(t) => s.collect_str(&t.value),
            Limit::Templated(t) => s.serialize_str(&t.src),
        }
    }
}

impl JsonSchema for Limit {
    fn schema_name() -> Cow<'static, str> {
        "Limit".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let fixed = generator.subschema_for::<Threshold>();
        schemars::json_schema!({
            "anyOf": [
                fixed,
                {
                    "type": "string",
                    "pattern": "\\{\\{",
                    "description": "A template giving a threshold when the step runs: `> {{ inputs.warn }}`."
                }
            ]
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub op: CmpOp,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

impl Threshold {
    /// `"> 1000"`, `">=0.95"`, `"< 10"`, `"== 0"`, `"!= 0"`, or a bare number (meaning `>`).
    pub fn parse(text: &str) -> Option<Threshold> {
        let t = text.trim();
        let (op, rest) = [
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ]
        .into_iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (op, r)))
        .unwrap_or((CmpOp::Gt, t));
        let value: f64 = rest.trim().replace('_', "").parse().ok()?;
        value.is_finite().then_some(Threshold { op, value })
    }

    /// Whether `v` crosses this threshold.
    pub fn crossed(&self, v: f64) -> bool {
        match self.op {
            CmpOp::Gt => v > self.value,
            CmpOp::Ge => v >= self.value,
            CmpOp::Lt => v < self.value,
            CmpOp::Le => v <= self.value,
            CmpOp::Eq => v == self.value,
            CmpOp::Ne => v != self.value,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.value)
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Threshold {
    fn schema_name() -> Cow<'static, str> {
        "Threshold".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "number"],
            "pattern": "^\\s*(>=|<=|==|!=|>|<)?\\s*-?[0-9][0-9_]*(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$",
            "description": "`> N`, `>= N`, `< N`, `<= N`, `== N`, `!= N`, or a bare number meaning `> N`."
        })
    }
}

/// A human gate. Written as a message string, or a map with `message`, `timeout`, `on_timeout`,
/// `on_reject`, `approvers`, `min_approvals`, `allow_self_approval` and `notify`.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalStep {
    pub message: Tmpl,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Dur>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_reject: Option<OnReject>,
    /// Who may answer: user names, or `group:NAME` for the members of a Unix group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_approvals: Option<Spanned<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_self_approval: Option<bool>,
    /// Notifiers told when the gate waits, besides the runbook's `notify.on.waiting`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Spanned<String>>,
}

impl ApprovalStep {
    /// A gate written as its message alone: every other setting at its default.
    pub fn with_message(message: Tmpl) -> ApprovalStep {
        ApprovalStep {
            message,
            timeout: None,
            on_timeout: None,
            on_reject: None,
            approvers: Vec::new(),
            min_approvals: None,
            allow_self_approval: None,
            notify: Vec::new(),
        }
    }

    /// The gate declares who may answer it (a list, a quorum, or self-approval refused in so
    /// many words): `--auto-approve` does not answer such a gate.
    pub fn declares_rules(&self) -> bool {
        !self.approvers.is_empty()
            || self.min_approvals.as_ref().is_some_and(|m| m.value > 1)
            || self.allow_self_approval == Some(false)
    }
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ApprovalFull {
    message: Tmpl,
    timeout: Option<Dur>,
    /// What happens when `timeout` passes with no answer (default reject).
    on_timeout: Option<OnTimeout>,
    /// What a rejection does: `fail` (default) ends the run failed; `skip` skips what needs
    /// the gate and lets the other branches go on. Either way nothing below the gate runs.
    on_reject: Option<OnReject>,
    /// Who may answer: user names, or `group:NAME` for the members of a Unix group (default:
    /// anyone but the run's starter).
    approvers: Option<Vec<String>>,
    /// Distinct approvers needed (default 1); one rejection rejects.
    #[schemars(range(min = 1))]
    min_approvals: Option<u32>,
    /// May the user who started the run approve it (default false)?
    allow_self_approval: Option<bool>,
    /// Notifiers told when this gate waits.
    notify: Option<Vec<String>>,
}

impl JsonSchema for ApprovalStep {
    fn schema_name() -> Cow<'static, str> {
        "ApprovalStep".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let full = generator.subschema_for::<ApprovalFull>();
        schemars::json_schema!({
            "description": "A human gate: a message, or `{ message, timeout, on_timeout }`.",
            "anyOf": [{ "type": "string" }, full]
        })
    }
}

/// What a rejected gate does to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnReject {
    /// The run ends failed.
    #[default]
    Fail,
    /// What needs the gate is skipped; other branches go on; the run can succeed, "declined".
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    Reject,
    Approve,
}

/// Poll a nested `shell`/`argv`/`sql`/`http`/`chroma` action every `interval` until `until`
/// holds (over its `result`) or `timeout` passes; or, with only `duration`, sleep.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_wait)]
pub struct WaitStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::values::DurOrTemplate>")]
    pub interval: Option<Spanned<Dur>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::values::DurOrTemplate>")]
    pub timeout: Option<Spanned<Dur>>,
    /// Just wait this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::values::DurOrTemplate>")]
    pub duration: Option<Spanned<Dur>>,
    /// `interval`, `timeout` and `duration` written as templates: rendered when the step starts.
    #[serde(flatten)]
    #[schemars(skip)]
    pub templated: Box<WaitTemplates>,
    /// The polled action (written as its kind's key beside `until`).
    #[serde(flatten)]
    #[schemars(with = "PollKeys")]
    pub poll: Option<Poll>,
}

/// A `wait`'s durations written as templates (each `None` when written as a duration).
#[derive(Clone, Debug, Default, Serialize)]
pub struct WaitTemplates {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Tmpl>,
}

/// What a `wait` polls: one of the kinds that only produce a result ([`POLL_KEYS`]).
#[derive(Clone, Debug)]
pub enum Poll {
    Shell(Tmpl),
    Argv(Vec<Tmpl>),
    Sql(SqlStep),
    // Boxed: the request is much larger than the other kinds.
    Http(Box<HttpStep>),
    Chroma(ChromaStep),
}

impl Poll {
    /// The key the polled kind is written with.
    pub fn name(&self) -> &'static str {
        match self {
            Poll::Shell(_) => "shell",
            Poll::Argv(_) => "argv",
            Poll::Sql(_) => "sql",
            Poll::Http(_) => "http",
            Poll::Chroma(_) => "chroma",
        }
    }
}

impl Serialize for Poll {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Poll::Shell(t) => map.serialize_entry("shell", t)?,
            Poll::Argv(a) => map.serialize_entry("argv", a)?,
            Poll::Sql(q) => map.serialize_entry("sql", q)?,
            Poll::Http(h) => map.serialize_entry("http", h)?,
            Poll::Chroma(c) => map.serialize_entry("chroma", c)?,
        }
        map.end()
    }
}

/// The keys of the polled kinds as the schema shows them; [`one_wait`] adds the rules.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct PollKeys {
    shell: Option<Tmpl>,
    argv: Option<Vec<Tmpl>>,
    sql: Option<SqlStep>,
    http: Option<HttpStep>,
    chroma: Option<ChromaStep>,
}

/// A `wait` sleeps (`duration`) or polls one kind (with `until`), as the parser requires.
fn one_wait(schema: &mut schemars::Schema) {
    let one_of: Vec<serde_json::Value> = std::iter::once("duration")
        .chain(POLL_KEYS.iter().copied())
        .map(|k| serde_json::json!({ "required": [k] }))
        .collect();
    schema.insert("oneOf".into(), one_of.into());
    let mut deps = serde_json::Map::new();
    deps.insert(
        "until".into(),
        serde_json::json!({ "not": { "required": ["duration"] } }),
    );
    for k in POLL_KEYS {
        deps.insert((*k).into(), serde_json::json!(["until"]));
    }
    schema.insert("dependencies".into(), deps.into());
}

/// Render a template (a file next to the runbook, or `inline`) to the file `to`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline: Option<Tmpl>,
    pub to: Tmpl,
}

/// Which target kinds a step kind accepts.
pub fn accepts(kind: &str, target: TargetKind) -> bool {
    match kind {
        "sql" => target.is_sql(),
        "chroma" => target == TargetKind::Chroma,
        "http" => target == TargetKind::Http,
        _ => false,
    }
}
