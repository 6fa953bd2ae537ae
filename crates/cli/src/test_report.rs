//! What `cairn test` reports: a case's runs and its first difference from what it expects,
//! the idempotence check, the JUnit XML of all cases, and coverage of steps and branches.

use crate::report::junit::{attr, text};
use cairn_engine::events::Status;
use cairn_engine::run::RunReport;
use cairn_model::testfile::Case;
use cairn_model::{Checked, StepKind};
use cairn_state::StepRecord;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

/// One run of a case: what the engine reported, the step records, what the fixtures saw.
pub struct CaseRun {
    pub report: Option<RunReport>,
    pub error: Option<String>,
    pub records: Vec<StepRecord>,
    pub missing: Vec<String>,
    pub notes: Vec<String>,
}

/// A case's verdict.
pub struct CaseResult {
    pub file: String,
    pub runbook: String,
    pub case: String,
    /// The first difference from what the case expects; `None`: it passed.
    pub diff: Option<String>,
    pub run: CaseRun,
    pub duration: Duration,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.diff.is_none()
    }

    /// `ok   FILE: CASE (12 ms)`, or `FAIL` and the difference on the next line.
    pub fn line(&self, color: bool) -> String {
        let (mark, style) = match self.passed() {
            true => ("ok  ", anstyle::AnsiColor::Green.on_default()),
            false => ("FAIL", anstyle::AnsiColor::Red.on_default().bold()),
        };
        let mark = if color {
            format!("{style}{mark}{style:#}")
        } else {
            mark.to_string()
        };
        let mut s = format!(
            "{mark} {}: {} ({} ms)",
            self.file,
            self.case,
            self.duration.as_millis()
        );
        if let Some(d) = &self.diff {
            for l in d.lines() {
                let _ = write!(s, "\n     {l}");
            }
        }
        s
    }
}

/// A JSON value as a difference shows it.
pub fn shown(v: &Json) -> String {
    match v {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Equal, where `200` == `"200"` (rendered outputs are often text) and 1 == 1.0.
fn same(want: &Json, got: &Json) -> bool {
    if want == got {
        return true;
    }
    match (want, got) {
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        (Json::Number(_) | Json::Bool(_), Json::String(s)) => scalar_text(want) == s.trim(),
        (Json::String(s), Json::Number(_) | Json::Bool(_)) => scalar_text(got) == s.trim(),
        _ => false,
    }
}

/// A number or boolean as a template would print it (`200`, `true`).
fn scalar_text(v: &Json) -> String {
    v.to_string()
}

fn lookup(v: &Json, path: &[&str]) -> Json {
    let mut cur = v;
    for part in path {
        cur = match (cur, part.parse::<usize>()) {
            (Json::Array(a), Ok(i)) => a.get(i).unwrap_or(&Json::Null),
            (Json::Object(o), _) => o.get(*part).unwrap_or(&Json::Null),
            _ => &Json::Null,
        };
    }
    cur.clone()
}

/// Did the step execute (or was given by a fixture)? A gate counts once it was decided.
fn ran(status: Status) -> bool {
    matches!(
        status,
        Status::Succeeded | Status::Failed | Status::Cancelled
    )
}

fn expected(what: &str, want: impl std::fmt::Display, got: impl std::fmt::Display) -> String {
    format!("{what}\n  expected: {want}\n  actual:   {got}")
}

/// The first way the run differs from what the case expects.
pub fn first_difference(checked: &Checked, case: &Case, run: &CaseRun) -> Option<String> {
    let Some(report) = &run.report else {
        return Some(format!(
            "the run did not start: {}",
            run.error.as_deref().unwrap_or("unknown error")
        ));
    };
    if let Some(step) = run.missing.first() {
        return Some(format!(
            "step {step} has no fixture (give it `result:` or `fail:`, mark it `readonly: true`, or set `live: true` on the case)"
        ));
    }
    let e = &case.expect;
    let status_of = |id: &str| report.steps.iter().find(|s| s.id == id);
    if let Some(want) = &e.status
        && want.value != report.outcome.as_str()
    {
        let why = report
            .steps
            .iter()
            .filter(|_| !report.outcome.succeeded())
            .find(|s| s.error.is_some())
            .map(|s| {
                format!(
                    " (step `{}`: {})",
                    s.id,
                    s.error.clone().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let notes = if run.notes.is_empty() {
            String::new()
        } else {
            format!("\n  notes: {}", run.notes.join("; "))
        };
        return Some(format!(
            "{}{notes}",
            expected(
                "status",
                &want.value,
                format!("{}{why}", report.outcome.as_str())
            )
        ));
    }
    for id in &e.ran {
        let got = status_of(&id.value).map(|s| s.status);
        if !got.is_some_and(ran) {
            return Some(expected(
                &format!("ran: {}", id.value),
                "ran",
                got.map_or("not reached", |s| s.as_str()),
            ));
        }
    }
    for id in &e.not_ran {
        if let Some(s) = status_of(&id.value)
            && ran(s.status)
        {
            return Some(expected(
                &format!("not_ran: {}", id.value),
                "not run",
                s.status.as_str(),
            ));
        }
    }
    if let Some(want) = &e.error {
        let errors: Vec<String> = report
            .steps
            .iter()
            .filter_map(|s| s.error.clone())
            .collect();
        if !errors.iter().any(|x| x.contains(&want.value)) {
            return Some(expected(
                "error",
                format!("an error containing {:?}", want.value),
                if errors.is_empty() {
                    "no step failed".to_string()
                } else {
                    errors.join("; ")
                },
            ));
        }
    }
    for (path, want) in &e.values {
        let parts: Vec<&str> = path.value.split('.').collect();
        let got = if parts[0] == "outputs" {
            lookup(&report.outputs, &parts[1..])
        } else {
            let id = parts[1];
            let record = run
                .records
                .iter()
                .find(|r| r.step_id == id && r.item.is_none());
            match parts[2] {
                "status" => status_of(id)
                    .map(|s| Json::from(s.status.as_str()))
                    .unwrap_or(Json::Null),
                "error" => status_of(id)
                    .and_then(|s| s.error.clone())
                    .map(Json::from)
                    .unwrap_or(Json::Null),
                "outputs" => record
                    .and_then(|r| r.outputs.as_ref())
                    .map(|o| lookup(o, &parts[3..]))
                    .unwrap_or(Json::Null),
                _ => record
                    .and_then(|r| r.result.as_ref())
                    .map(|o| lookup(o, &parts[3..]))
                    .unwrap_or(Json::Null),
            }
        };
        let ok = if parts.get(2) == Some(&"error") {
            match (want, &got) {
                (Json::String(w), Json::String(g)) => g.contains(w.as_str()),
                _ => same(want, &got),
            }
        } else {
            same(want, &got)
        };
        if !ok {
            return Some(expected(&path.value, shown(want), shown(&got)));
        }
    }
    let _ = checked;
    None
}

/// Kinds that change something when they run (unless the step is `readonly`).
fn changes(kind: &StepKind) -> bool {
    matches!(
        kind,
        StepKind::Shell(_)
            | StepKind::Argv(_)
            | StepKind::Sql(_)
            | StepKind::Http(_)
            | StepKind::Chroma(_)
            | StepKind::Uses(_)
    )
}

/// The converge-twice check (docs/decisions.md): the second run ends like the first (a success
/// with or without warnings counts as one), and no
/// step that declares it may change things (not `readonly`, of a kind that acts) ran in it.
pub fn idempotence(checked: &Checked, first: &CaseRun, again: &CaseRun) -> Option<String> {
    let (Some(a), Some(b)) = (&first.report, &again.report) else {
        return Some(format!(
            "idempotent: the second run did not start: {}",
            again.error.as_deref().unwrap_or("unknown error")
        ));
    };
    if let Some(step) = again.missing.first() {
        return Some(format!(
            "idempotent: in the second run, step {step} has no fixture"
        ));
    }
    // A run that succeeded must succeed again (a first run's warnings may be gone once it
    // converged); any other end must be the same.
    if a.outcome != b.outcome && !(a.outcome.succeeded() && b.outcome.succeeded()) {
        return Some(expected(
            "idempotent: the second run's status",
            a.outcome.as_str(),
            b.outcome.as_str(),
        ));
    }
    for s in &b.steps {
        let Some(step) = checked.all_steps().find(|x| x.id.value == s.id) else {
            continue;
        };
        if ran(s.status) && changes(&step.kind) && step.readonly != Some(true) {
            return Some(expected(
                &format!("idempotent: step `{}` in the second run", s.id),
                "nothing to change (skipped by its `when`, or not reached)",
                format!("it ran ({})", s.status.as_str()),
            ));
        }
    }
    None
}

/// All cases as JUnit XML: a `<testsuite>` per test file, a `<testcase>` per case.
pub fn junit(results: &[CaseResult], elapsed: Duration) -> String {
    let mut by_file: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        by_file.entry(&r.file).or_default().push(r);
    }
    let host = cairn_state::current_host();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (id, (file, cases)) in by_file.iter().enumerate() {
        let failures = cases.iter().filter(|c| !c.passed()).count();
        let time: f64 = cases.iter().map(|c| c.duration.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite package=\"{}\" id=\"{id}\" name=\"{}\" timestamp=\"{now}\" hostname=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
            attr(&cases[0].runbook),
            attr(file),
            attr(if host.trim().is_empty() {
                "unknown"
            } else {
                &host
            }),
            cases.len(),
        );
        let _ = writeln!(
            out,
            "    <properties>\n      <property name=\"runbook\" value=\"{}\"/>\n    </properties>",
            attr(&cases[0].runbook)
        );
        for c in cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                attr(&c.case),
                attr(&format!("{}.test", c.runbook)),
                c.duration.as_secs_f64()
            );
            match &c.diff {
                None => out.push_str("/>\n"),
                Some(d) => {
                    let first = d.lines().next().unwrap_or_default();
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"difference\">{}</failure>\n    </testcase>\n",
                        attr(first),
                        text(d)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "    <system-out>{}</system-out>\n    <system-err></system-err>\n  </testsuite>",
            text(&format!(
                "{} cases, {failures} failed, all files in {:.2} s",
                cases.len(),
                elapsed.as_secs_f64()
            ))
        );
    }
    out.push_str("</testsuites>\n");
    out
}

/// Which steps and branches of each runbook some case exercised.
#[derive(Default)]
pub struct Coverage {
    /// Runbook name -> (every item wanted, in order; the items seen).
    books: BTreeMap<String, (Vec<String>, BTreeSet<String>)>,
}

impl Coverage {
    /// The items runbook `c` can show: each step ran; each `when` true and false; each gate
    /// approved and rejected; each step that may fail without stopping the run, failed.
    pub fn add_runbook(&mut self, c: &Checked) {
        let entry = self.books.entry(c.runbook.name.value.clone()).or_default();
        if !entry.0.is_empty() {
            return;
        }
        for s in c.all_steps() {
            let id = &s.id.value;
            entry.0.push(format!("step {id}"));
            if s.when.is_some() {
                entry.0.push(format!("when {id}: true"));
                entry.0.push(format!("when {id}: false"));
            }
            if let StepKind::Approval(_) = s.kind {
                entry.0.push(format!("gate {id}: approved"));
                entry.0.push(format!("gate {id}: rejected"));
            }
        }
    }

    pub fn add_run(&mut self, r: &CaseResult) {
        let Some(report) = &r.run.report else { return };
        let Some((_, seen)) = self.books.get_mut(&r.runbook) else {
            return;
        };
        for s in &report.steps {
            let id = &s.id;
            if ran(s.status) {
                seen.insert(format!("step {id}"));
                seen.insert(format!("when {id}: true"));
            }
            if s.status == Status::Skipped
                && s.note.as_deref().is_some_and(|n| n.starts_with("when "))
            {
                seen.insert(format!("when {id}: false"));
            }
        }
        for rec in r.run.records.iter().filter(|x| x.item.is_none()) {
            match rec.result.as_ref().and_then(|x| x.get("approved")) {
                Some(Json::Bool(true)) => {
                    seen.insert(format!("gate {}: approved", rec.step_id));
                }
                Some(Json::Bool(false)) => {
                    seen.insert(format!("gate {}: rejected", rec.step_id));
                }
                _ => {}
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::from("\ncoverage:\n");
        for (name, (wanted, seen)) in &self.books {
            let steps = wanted.iter().filter(|w| w.starts_with("step ")).count();
            let steps_seen = wanted
                .iter()
                .filter(|w| w.starts_with("step ") && seen.contains(*w))
                .count();
            let branches = wanted.len() - steps;
            let branches_seen = wanted
                .iter()
                .filter(|w| !w.starts_with("step ") && seen.contains(*w))
                .count();
            let _ = writeln!(
                out,
                "  {name}: steps {steps_seen}/{steps}, branches {branches_seen}/{branches} (when true/false, gate approved/rejected)"
            );
            for w in wanted.iter().filter(|w| !seen.contains(*w)) {
                let _ = writeln!(out, "    not exercised: {w}");
            }
        }
        out
    }
}
