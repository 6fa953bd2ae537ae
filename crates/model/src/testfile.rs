//! A runbook's test file (`NAME.test.yaml`, `cairn-test: 1`): cases of inputs, fixtures per
//! step and expectations, read with every position kept and checked against the runbook it
//! names, so that a fixture for a step that does not exist, or of the wrong shape for its
//! step's kind, is refused at its line like any runbook error.
//!
//! ```
//! let yaml = "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: ok\n    expect: { status: succeeded }\n";
//! let (file, diags) = cairn_model::testfile::parse("r.test.yaml".as_ref(), yaml);
//! assert!(!diags.has_errors());
//! assert_eq!(file.unwrap().cases[0].name.value, "ok");
//! ```

use crate::Checked;
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::read::*;
use crate::span::{Span, Spanned};
use crate::step::{Poll, Step, StepKind};
use crate::yaml::{Node, Scalar};
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The test-file format versions this Cairn reads.
pub const TEST_FORMAT_VERSIONS: &[u32] = &[1];

/// The statuses a case may expect: a run's outcomes.
pub const STATUSES: &[&str] = &[
    "succeeded",
    "succeeded_with_warnings",
    "failed",
    "paused",
    "interrupted",
];

const FILE_KEYS: &[&str] = &["cairn-test", "runbook", "description", "cases"];
const CASE_KEYS: &[&str] = &[
    "name",
    "description",
    "inputs",
    "live",
    "fixtures",
    "expect",
];
const FIXTURE_KEYS: &[&str] = &[
    "result", "fail", "approve", "by", "attempts", "items", "fixtures", "again",
];
const EXPECT_KEYS: &[&str] = &["status", "ran", "not_ran", "idempotent", "error"];

/// A parsed test file.
#[derive(Clone, Debug)]
pub struct TestFile {
    pub path: PathBuf,
    pub source: String,
    /// The runbook under test, relative to this file.
    pub runbook: Spanned<String>,
    pub cases: Vec<Case>,
}

impl TestFile {
    /// The runbook's path, resolved against the test file's folder.
    pub fn runbook_path(&self) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.runbook.value)
    }
}

/// One case: a run of the runbook with these inputs and fixtures, and what must come of it.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: Spanned<String>,
    pub inputs: serde_json::Map<String, Json>,
    /// Where each input's name is written.
    pub input_spans: Vec<Spanned<String>>,
    /// Steps without a fixture run for real even when not `readonly`.
    pub live: bool,
    pub fixtures: Fixtures,
    pub expect: CaseExpect,
}

/// Fixtures by step id.
#[derive(Clone, Debug, Default)]
pub struct Fixtures(pub IndexMap<String, Fixture>);

/// What a test gives for one step.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub step: Spanned<String>,
    pub given: Given,
    /// For the second run of an `idempotent` case: what the step gives then.
    pub again: Option<Given>,
    pub span: Span,
}

/// What a step gives instead of running.
#[derive(Clone, Debug)]
pub enum Given {
    /// Its result, in the shape of its kind's result (for `uses`: the sub-run's outputs).
    Result(Node),
    /// It fails with this error, and with this result when one is given beside it (a failed
    /// step's captured output; a failed sub-run's `{run_id, outcome, outputs}`).
    Fail {
        error: Spanned<String>,
        result: Option<Node>,
    },
    /// A gate's answer.
    Approve {
        approved: bool,
        by: Vec<String>,
        span: Span,
    },
    /// One per attempt, for retries; the last stands for any later attempt.
    Attempts(Vec<Given>),
    /// One per `for_each` item, in item order; the last stands for any later item.
    Items(Vec<Given>),
    /// The fixtures of a `uses` step's sub-runbook: the sub-run runs, on them.
    Sub(Fixtures),
}

/// What a case expects.
#[derive(Clone, Debug, Default)]
pub struct CaseExpect {
    pub status: Option<Spanned<String>>,
    pub ran: Vec<Spanned<String>>,
    pub not_ran: Vec<Spanned<String>>,
    /// Run twice: the second run changes nothing (docs/decisions.md).
    pub idempotent: bool,
    /// Part of some step's error.
    pub error: Option<Spanned<String>>,
    /// `steps.ID.outputs.KEY`, `steps.ID.status`, `steps.ID.result.PATH`, `outputs.KEY`.
    pub values: Vec<(Spanned<String>, Json)>,
}

/// Parse a test file: shape only, every problem collected.
pub fn parse(path: &Path, source: &str) -> (Option<TestFile>, Diagnostics) {
    let mut d = Vec::new();
    let root = crate::yaml::parse(source, &mut d);
    let file = root.and_then(|root| file(&mut d, &root, path, source));
    if file.is_none() && d.is_empty() {
        d.push(Diagnostic::error(
            Span {
                line: 1,
                col: 1,
                start: 0,
                end: 0,
            },
            "the file is empty: a test file is a YAML map",
        ));
    }
    let mut diags = Diagnostics(d);
    diags.sort();
    (file, diags)
}

fn file(d: &mut Diags, root: &Node, path: &Path, source: &str) -> Option<TestFile> {
    let mut f = map(d, root, "a test file")?;
    match f.get("cairn-test") {
        Some(n) => {
            if let Some(v) = uint(d, n, "`cairn-test` (the format version)")
                && !TEST_FORMAT_VERSIONS.contains(&v.value)
            {
                d.push(
                    Diagnostic::error(v.span, format!("unsupported `cairn-test: {}`", v.value))
                        .with_help("this Cairn reads `cairn-test: 1`"),
                );
            }
        }
        None => missing(d, f.span, "cairn-test", "the test file"),
    }
    let runbook = match f.get("runbook") {
        Some(n) => string(d, n, "`runbook`"),
        None => {
            missing(d, f.span, "runbook", "the test file");
            None
        }
    };
    if let Some(n) = f.get("description") {
        text(d, n, "`description`");
    }
    let cases = match f.get("cases") {
        Some(n) => list(d, n, "`cases`", case).unwrap_or_default(),
        None => {
            missing(d, f.span, "cases", "the test file");
            Vec::new()
        }
    };
    let mut seen: IndexMap<&str, ()> = IndexMap::new();
    for c in &cases {
        if seen.insert(c.name.value.as_str(), ()).is_some() {
            d.push(Diagnostic::error(
                c.name.span,
                format!("two cases are named `{}`", c.name.value),
            ));
        }
    }
    f.finish(d, FILE_KEYS, "the test file");
    Some(TestFile {
        path: path.to_path_buf(),
        source: source.to_string(),
        runbook: runbook?,
        cases,
    })
}

fn case(d: &mut Diags, n: &Node) -> Option<Case> {
    let mut f = map(d, n, "a case")?;
    let name = match f.get("name") {
        Some(n) => string(d, n, "a case's `name`"),
        None => {
            missing(d, f.span, "name", "the case");
            None
        }
    };
    if let Some(n) = f.get("description") {
        text(d, n, "`description`");
    }
    let input_spans = f
        .key_span("inputs")
        .and(f.get("inputs"))
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, _)| Spanned::new(k.text().unwrap_or_default().to_string(), k.span))
                .collect()
        })
        .unwrap_or_default();
    let inputs = match f.get("inputs") {
        Some(n) if n.as_map().is_some() || n.is_null() => match crate::read::json(n) {
            Json::Object(o) => o,
            _ => Default::default(),
        },
        Some(n) => {
            d.push(wrong(n, "a map", "`inputs`"));
            Default::default()
        }
        None => Default::default(),
    };
    let live = f
        .get("live")
        .and_then(|n| boolean(d, n, "`live`"))
        .unwrap_or(false);
    let fixtures = f
        .get("fixtures")
        .map(|n| fixtures(d, n))
        .unwrap_or_default();
    let expect = f.get("expect").map(|n| expect(d, n)).unwrap_or_default();
    f.finish(d, CASE_KEYS, "a case");
    Some(Case {
        name: name?,
        inputs,
        input_spans,
        live,
        fixtures,
        expect,
    })
}

fn fixtures(d: &mut Diags, n: &Node) -> Fixtures {
    let mut out = IndexMap::new();
    if n.is_null() {
        return Fixtures(out);
    }
    let Some(written) = n.as_map() else {
        d.push(wrong(n, "a map of step ids", "`fixtures`"));
        return Fixtures(out);
    };
    // YAML's merge key: `<<: *shared` (or a list of them) gives the fixtures it names, and
    // the keys written beside it replace theirs.
    let mut entries: Vec<&(Node, Node)> = Vec::new();
    for e in written {
        if e.0.text() != Some("<<") {
            continue;
        }
        let merged: Vec<&Node> = match e.1.as_seq() {
            Some(all) => all.iter().collect(),
            None => vec![&e.1],
        };
        for m in merged {
            match m.as_map() {
                Some(inner) => entries.extend(
                    inner
                        .iter()
                        .filter(|(k, _)| !written.iter().any(|(w, _)| w.text() == k.text())),
                ),
                None => d.push(wrong(m, "a map of fixtures", "`<<`")),
            }
        }
    }
    entries.extend(written.iter().filter(|(k, _)| k.text() != Some("<<")));
    for (k, v) in entries {
        let Some(id) = k.text() else {
            d.push(Diagnostic::error(k.span, "keys in `fixtures` are step ids"));
            continue;
        };
        let step = Spanned::new(id.to_string(), k.span);
        let mut f = match map(d, v, &format!("the fixture of `{id}`")) {
            Some(f) => f,
            None => continue,
        };
        let again = f.get("again").and_then(|n| given_node(d, n));
        let given = given(d, &mut f);
        f.finish(d, FIXTURE_KEYS, "a fixture");
        if let Some(given) = given {
            out.insert(
                id.to_string(),
                Fixture {
                    step,
                    given,
                    again,
                    span: v.span,
                },
            );
        }
    }
    Fixtures(out)
}

fn given_node(d: &mut Diags, n: &Node) -> Option<Given> {
    let mut f = map(d, n, "a fixture")?;
    let g = given(d, &mut f);
    f.finish(
        d,
        &["result", "fail", "approve", "by", "fixtures"],
        "a fixture",
    );
    g
}

/// The one thing a fixture gives: exactly one of its keys.
fn given(d: &mut Diags, f: &mut Fields<'_>) -> Option<Given> {
    // `result` beside `fail` is the failed step's result, not a second thing given.
    let present: Vec<&str> = ["result", "fail", "approve", "attempts", "items", "fixtures"]
        .into_iter()
        .filter(|k| f.has(k))
        .filter(|k| !(*k == "result" && f.has("fail")))
        .collect();
    if present.len() > 1 {
        let at = f.key_span(present[1]).unwrap_or(f.span);
        d.push(
            Diagnostic::error(
                at,
                format!(
                    "a fixture gives one of `result`, `fail`, `approve`, `attempts`, `items`, `fixtures`; this one gives `{}` and `{}`",
                    present[0], present[1]
                ),
            )
            .with_help("write several attempts as `attempts: [{ fail: … }, { result: … }]`"),
        );
        // Taken, so that they are not reported as unknown as well.
        for k in present {
            f.get(k);
        }
        f.get("by");
        return None;
    }
    if f.has("by") && !f.has("approve") {
        d.push(Diagnostic::error(
            f.key_span("by").unwrap_or(f.span),
            "`by` names who answered a gate: it goes with `approve`",
        ));
    }
    if let Some(n) = f.get("fail") {
        let result = f.get("result").cloned();
        return string(d, n, "`fail` (the error)").map(|error| Given::Fail { error, result });
    }
    if let Some(n) = f.get("result") {
        return Some(Given::Result(n.clone()));
    }
    if let Some(n) = f.get("approve") {
        let approved = boolean(d, n, "`approve`")?;
        let by = match f.get("by") {
            None => vec!["approver".to_string()],
            Some(b) if b.as_seq().is_some() => list(d, b, "`by`", |d, i| {
                string(d, i, "an answerer").map(|s| s.value)
            })
            .unwrap_or_default(),
            Some(b) => string(d, b, "`by`")
                .map(|s| vec![s.value])
                .unwrap_or_default(),
        };
        return Some(Given::Approve {
            approved,
            by,
            span: n.span,
        });
    }
    if let Some(n) = f.get("attempts") {
        let all = list(d, n, "`attempts`", given_node)?;
        if all.is_empty() {
            d.push(Diagnostic::error(n.span, "`attempts` is empty"));
        }
        return Some(Given::Attempts(all));
    }
    if let Some(n) = f.get("items") {
        let all = list(d, n, "`items`", |d, i| {
            let mut f = map(d, i, "an item's fixture")?;
            let g = given(d, &mut f);
            f.finish(d, FIXTURE_KEYS, "an item's fixture");
            g
        })?;
        if all.is_empty() {
            d.push(Diagnostic::error(n.span, "`items` is empty"));
        }
        return Some(Given::Items(all));
    }
    if let Some(n) = f.get("fixtures") {
        return Some(Given::Sub(fixtures(d, n)));
    }
    d.push(
        Diagnostic::error(f.span, "a fixture gives nothing")
            .with_help("give `result:`, `fail:`, `approve:`, `attempts:`, `items:` or `fixtures:`"),
    );
    None
}

fn expect(d: &mut Diags, n: &Node) -> CaseExpect {
    let mut out = CaseExpect::default();
    let Some(entries) = n.as_map() else {
        d.push(wrong(n, "a map", "`expect`"));
        return out;
    };
    let ids = |d: &mut Diags, n: &Node, what: &str| {
        list(d, n, what, |d, i| string(d, i, "a step id")).unwrap_or_default()
    };
    for (k, v) in entries {
        let Some(key) = k.text() else {
            d.push(Diagnostic::error(
                k.span,
                "keys in `expect` must be plain names",
            ));
            continue;
        };
        match key {
            "status" => {
                if let Some(s) = string(d, v, "`status`") {
                    if !STATUSES.contains(&s.value.as_str()) {
                        d.push(
                            Diagnostic::error(s.span, format!("unknown status `{}`", s.value))
                                .maybe_help(
                                    did_you_mean(&s.value, STATUSES.iter().copied()).or_else(
                                        || Some(format!("a status is one of: {}", STATUSES.join(", "))),
                                    ),
                                ),
                        );
                    }
                    out.status = Some(s);
                }
            }
            "ran" => out.ran = ids(d, v, "`ran`"),
            "not_ran" => out.not_ran = ids(d, v, "`not_ran`"),
            "idempotent" => out.idempotent = boolean(d, v, "`idempotent`").unwrap_or(false),
            "error" => out.error = string(d, v, "`error`"),
            path if path.starts_with("steps.") || path.starts_with("outputs.") => {
                out.values
                    .push((Spanned::new(path.to_string(), k.span), crate::read::json(v)));
            }
            other => d.push(
                Diagnostic::error(k.span, format!("unknown key `{other}` in `expect`"))
                    .maybe_help(did_you_mean(other, EXPECT_KEYS.iter().copied()).or_else(
                        || {
                            Some(format!(
                                "`expect` takes: {}, `steps.ID.outputs.KEY`, `steps.ID.status`, `steps.ID.result.PATH`, `outputs.KEY`",
                                EXPECT_KEYS.join(", ")
                            ))
                        },
                    )),
            ),
        }
    }
    out
}

/// Loads the runbook a `uses` step names, for checking the fixtures given to it.
pub type SubLoader<'a> = dyn Fn(&Checked, &Step) -> Option<Checked> + 'a;

/// Check a parsed test file against the runbook it tests: every step id a fixture or an
/// expectation names exists (with a did-you-mean), and every fixture has the shape its
/// step's kind gives.
pub fn check_against(file: &TestFile, runbook: &Checked, sub: &SubLoader<'_>) -> Diagnostics {
    let mut d = Vec::new();
    for case in &file.cases {
        for Spanned { value: name, span } in &case.input_spans {
            if !runbook.runbook.inputs.contains_key(name) {
                d.push(
                    Diagnostic::error(
                        *span,
                        format!("`{}` has no input `{name}`", runbook.runbook.name.value),
                    )
                    .maybe_help(did_you_mean(
                        name,
                        runbook.runbook.inputs.keys().map(String::as_str),
                    )),
                );
            }
        }
        check_fixtures(&mut d, &case.fixtures, runbook, sub);
        let e = &case.expect;
        for id in e.ran.iter().chain(&e.not_ran) {
            step_of(&mut d, runbook, &id.value, id.span);
        }
        for (path, _) in &e.values {
            check_value_path(&mut d, runbook, path);
        }
    }
    let mut diags = Diagnostics(d);
    diags.sort();
    diags
}

fn step_of<'c>(d: &mut Diags, rb: &'c Checked, id: &str, span: Span) -> Option<&'c Step> {
    let found = rb.all_steps().find(|s| s.id.value == id);
    if found.is_none() {
        d.push(
            Diagnostic::error(
                span,
                format!("`{}` has no step `{id}`", rb.runbook.name.value),
            )
            .maybe_help(did_you_mean(
                id,
                rb.all_steps().map(|s| s.id.value.as_str()),
            )),
        );
    }
    found
}

fn check_value_path(d: &mut Diags, rb: &Checked, path: &Spanned<String>) {
    let parts: Vec<&str> = path.value.split('.').collect();
    let span = path.span;
    if parts[0] == "outputs" {
        let key = parts.get(1).copied().unwrap_or_default();
        if !rb.runbook.outputs.contains_key(key) {
            d.push(
                Diagnostic::error(span, format!("the runbook has no output `{key}`")).maybe_help(
                    did_you_mean(key, rb.runbook.outputs.keys().map(String::as_str)),
                ),
            );
        }
        return;
    }
    let Some(step) = parts.get(1).and_then(|id| step_of(d, rb, id, span)) else {
        return;
    };
    match (parts.get(2).copied(), parts.get(3).copied()) {
        (Some("status") | Some("error"), None) => {}
        (Some("result"), _) => {}
        (Some("outputs"), Some(key)) if parts.len() == 4 => {
            if !step.outputs.contains_key(key) {
                d.push(
                    Diagnostic::error(
                        span,
                        format!("step `{}` has no output `{key}`", step.id.value),
                    )
                    .maybe_help(did_you_mean(key, step.outputs.keys().map(String::as_str))),
                );
            }
        }
        _ => d.push(
            Diagnostic::error(span, format!("cannot expect `{}`", path.value)).with_help(
                "write `steps.ID.outputs.KEY`, `steps.ID.status`, `steps.ID.error` or `steps.ID.result.PATH`",
            ),
        ),
    }
}

fn check_fixtures(d: &mut Diags, fx: &Fixtures, rb: &Checked, sub: &SubLoader<'_>) {
    for f in fx.0.values() {
        let Some(step) = step_of(d, rb, &f.step.value, f.step.span) else {
            continue;
        };
        check_given(d, &f.given, step, rb, sub, f.step.span);
        if let Some(again) = &f.again {
            check_given(d, again, step, rb, sub, f.step.span);
        }
    }
}

/// The kind a fixture stands in for: the step's, or for a `wait … until` its probe's.
fn shape_kind(step: &Step) -> Result<&'static str, String> {
    match &step.kind {
        StepKind::Check(_) => Err(
            "a `check` step is evaluated by the engine from its `value`: give fixtures to the steps it reads"
                .into(),
        ),
        StepKind::Report(_) => Err(
            "a `report` step is rendered by the engine from the run: it takes no fixture".into(),
        ),
        StepKind::Wait(w) => match &w.poll {
            Some(Poll::Shell(_)) => Ok("shell"),
            Some(Poll::Argv(_)) => Ok("argv"),
            Some(Poll::Sql(_)) => Ok("sql"),
            Some(Poll::Http(_)) => Ok("http"),
            Some(Poll::Chroma(_)) => Ok("chroma"),
            None => Err("a `wait` for a duration polls nothing: it takes no fixture".into()),
        },
        k => Ok(k.name()),
    }
}

/// The keys a kind's result has, with the JSON type each takes (`None`: any).
pub fn result_keys(kind: &str) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    Some(match kind {
        "shell" | "argv" => &[
            ("exit_code", Some("an integer")),
            ("stdout", Some("a string")),
            ("stderr", Some("a string")),
            ("stdout_truncated", Some("a boolean")),
            ("stderr_truncated", Some("a boolean")),
            ("duration_ms", Some("an integer")),
            // What a detached (or stopped) process left running: `[{pid, command}]`.
            ("detached", Some("a list")),
            ("stopped", Some("a list")),
        ],
        "http" => &[
            ("status", Some("an integer")),
            ("headers", Some("a map")),
            ("body", Some("a string")),
            ("body_truncated", Some("a boolean")),
            ("json", None),
            ("url", Some("a string")),
            ("duration_ms", Some("an integer")),
        ],
        "sql" => &[
            ("rows", Some("a list")),
            ("row_count", Some("an integer")),
            ("rows_affected", Some("an integer")),
            ("notices", Some("a list")),
            ("notices_truncated", Some("a boolean")),
            ("duration_ms", Some("an integer")),
        ],
        _ => return None,
    })
}

fn type_ok(n: &Node, want: &str) -> bool {
    match want {
        "an integer" => matches!(n.scalar(), Some(Scalar::Int(_))),
        "a string" => matches!(n.scalar(), Some(Scalar::Str(_))),
        "a boolean" => matches!(n.scalar(), Some(Scalar::Bool(_))),
        "a map" => n.as_map().is_some(),
        "a list" => n.as_seq().is_some(),
        _ => true,
    }
}

fn check_given(d: &mut Diags, g: &Given, step: &Step, rb: &Checked, sub: &SubLoader<'_>, at: Span) {
    let id = &step.id.value;
    let kind = match shape_kind(step) {
        Ok(k) => k,
        Err(why) => {
            d.push(Diagnostic::error(
                at,
                format!("step `{id}` takes no fixture: {why}"),
            ));
            return;
        }
    };
    match g {
        Given::Approve { span, .. } if kind != "approval" => d.push(
            Diagnostic::error(
                *span,
                format!("`approve` answers a gate; step `{id}` is a `{kind}` step"),
            )
            .with_help("give its `result:` or `fail:`"),
        ),
        Given::Approve { .. } => {}
        _ if kind == "approval" => d.push(
            Diagnostic::error(at, format!("step `{id}` is a gate: its fixture is an answer"))
                .with_help("write `approve: true` or `approve: false` (and `by: NAME`)"),
        ),
        Given::Fail { result: None, .. } => {}
        Given::Fail {
            result: Some(n), ..
        } => check_given(d, &Given::Result(n.clone()), step, rb, sub, at),
        Given::Attempts(all) | Given::Items(all) => {
            for g in all {
                check_given(d, g, step, rb, sub, at);
            }
        }
        Given::Sub(fx) => match &step.kind {
            StepKind::Uses(_) => match sub(rb, step) {
                Some(child) => check_fixtures(d, fx, &child, sub),
                None => d.push(Diagnostic::error(
                    at,
                    format!("the runbook step `{id}` uses does not load"),
                )),
            },
            _ => d.push(
                Diagnostic::error(
                    at,
                    format!("`fixtures` go to a `uses` step's sub-runbook; step `{id}` is a `{kind}` step"),
                )
                .with_help("give its `result:` or `fail:`"),
            ),
        },
        Given::Result(n) => {
            if kind == "uses" || kind == "chroma" {
                if n.as_map().is_none() {
                    d.push(wrong(n, "a map", &format!("the result of `{kind}` step `{id}`")));
                }
                return;
            }
            let Some(keys) = result_keys(kind) else {
                return;
            };
            let Some(entries) = n.as_map() else {
                d.push(wrong(n, "a map", &format!("the result of `{kind}` step `{id}`")));
                return;
            };
            for (k, v) in entries {
                let name = k.text().unwrap_or_default();
                match keys.iter().find(|(key, _)| *key == name) {
                    None => d.push(
                        Diagnostic::error(
                            k.span,
                            format!("a `{kind}` result has no `{name}`"),
                        )
                        .maybe_help(
                            did_you_mean(name, keys.iter().map(|(k, _)| *k)).or_else(|| {
                                Some(format!(
                                    "a `{kind}` result has: {}",
                                    keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                                ))
                            }),
                        ),
                    ),
                    Some((_, Some(want))) if !type_ok(v, want) => d.push(wrong(
                        v,
                        want,
                        &format!("`{name}` of a `{kind}` result"),
                    )),
                    _ => {}
                }
            }
        }
    }
}

/// The JSON Schema of the test-file format (schemas/runbook-test.schema.json).
pub fn schema() -> Json {
    let given_props = serde_json::json!({
        "result": { "description": "The step's result in its kind's shape (shell: exit_code, stdout, stderr; http: status, body, headers, json; sql: rows, rows_affected; chroma: the action's result; uses: the sub-run's outputs)." },
        "fail": { "type": "string", "description": "The step fails with this error (and the `result` beside it, if any)." },
        "approve": { "type": "boolean", "description": "A gate's answer." },
        "by": { "description": "Who answered (default `approver`); a list for a quorum.", "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] },
        "fixtures": { "$ref": "#/definitions/Fixtures" }
    });
    let mut fixture_props = given_props.clone();
    if let Some(o) = fixture_props.as_object_mut() {
        o.insert(
            "attempts".into(),
            serde_json::json!({ "type": "array", "minItems": 1, "items": { "$ref": "#/definitions/Given" }, "description": "One fixture per attempt (retries); the last stands for later ones." }),
        );
        o.insert(
            "items".into(),
            serde_json::json!({ "type": "array", "minItems": 1, "items": { "$ref": "#/definitions/Fixture" }, "description": "One fixture per `for_each` item; the last stands for later ones." }),
        );
        o.insert(
            "again".into(),
            serde_json::json!({ "$ref": "#/definitions/Given", "description": "What the step gives in the second run of an `idempotent` case." }),
        );
    }
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://cairn.dev/schemas/runbook-test.schema.json",
        "title": "Cairn runbook test",
        "type": "object",
        "additionalProperties": false,
        "required": ["cairn-test", "runbook", "cases"],
        "properties": {
            "cairn-test": { "const": 1, "description": "The test-file format version." },
            "runbook": { "type": "string", "description": "The runbook under test, relative to this file." },
            "description": { "type": "string" },
            "cases": { "type": "array", "items": { "$ref": "#/definitions/Case" } }
        },
        "definitions": {
            "Case": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {
                    "name": { "type": "string" },
                    "description": { "type": "string" },
                    "inputs": { "type": "object", "description": "The run's inputs." },
                    "live": { "type": "boolean", "description": "Steps without a fixture run for real even when not `readonly`." },
                    "fixtures": { "$ref": "#/definitions/Fixtures" },
                    "expect": { "$ref": "#/definitions/Expect" }
                }
            },
            "Fixtures": {
                "type": "object",
                "description": "Fixtures by step id; `<<` merges fixtures shared with other cases (YAML merge key).",
                "properties": { "<<": { "anyOf": [ { "type": "object" }, { "type": "array", "items": { "type": "object" } } ] } },
                "additionalProperties": { "$ref": "#/definitions/Fixture" }
            },
            "Fixture": {
                "type": "object",
                "additionalProperties": false,
                "minProperties": 1,
                "properties": fixture_props
            },
            "Given": {
                "type": "object",
                "additionalProperties": false,
                "minProperties": 1,
                "properties": given_props
            },
            "Expect": {
                "type": "object",
                "properties": {
                    "status": { "enum": STATUSES },
                    "ran": { "type": "array", "items": { "type": "string" }, "description": "Steps that executed or were given by fixtures." },
                    "not_ran": { "type": "array", "items": { "type": "string" }, "description": "Steps that were skipped or never reached." },
                    "idempotent": { "type": "boolean", "description": "Run the case twice; the second run changes nothing." },
                    "error": { "type": "string", "description": "Part of some step's error." }
                },
                "patternProperties": {
                    "^steps\\.[a-z0-9_][a-z0-9_-]*\\.(status|error|outputs\\.[A-Za-z_][A-Za-z0-9_]*|result(\\..+)?)$": {},
                    "^outputs\\.[A-Za-z_][A-Za-z0-9_]*(\\..+)?$": {}
                },
                "additionalProperties": false
            }
        }
    })
}
