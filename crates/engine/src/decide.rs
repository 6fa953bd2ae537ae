//! What a resume does, decided before anything is written: [`decide`] reads a run's records,
//! step definitions and answers and returns a [`Decision`]; `reclaim.rs` then claims the run
//! and applies it. Pure: no store, no clock (the time is given), no file.
//!
//! What runs again is decided from the DAG: failed (unless tolerated by `on_failure: continue`
//! after all its attempts, or a gate's "no": those are conclusions), cancelled, never-started
//! and in-doubt steps (a step recorded `running`: it runs again when `idempotent`, otherwise
//! only with `--rerun STEP` or is passed over with `--skip STEP`), `--from`/`--rerun`, and
//! everything below any of those. The rest is restored into templates and takes its turn in
//! the DAG without running, so nothing starts before the steps it needs finished in this
//! attempt. A `for_each` step keeps its items that succeeded. A gate that waits is decided by
//! the answers given since its wait began ([`crate::gate`]); an answered gate that runs again
//! below a re-run step keeps its answer while its message is unchanged. Edits are accepted on
//! steps that have not succeeded; an edited succeeded step, or a changed DAG above it, is
//! refused unless `--allow-changed`.

use crate::context::{StepView, Timing};
use crate::events::{Event, Status};
use crate::gate::Verdict;
use crate::outcome::{Hold, Outcome, RunError};
use crate::shared::EarlierItems;
use cairn_model::{Checked, OnReject};
use cairn_state::{Approval, Decision as Answer, StepDef, StepRecord, StepStatus};
use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// Re-run this step and everything downstream of it.
    pub from: Option<String>,
    /// Re-run these in-doubt (or succeeded) steps.
    pub rerun: Vec<String>,
    /// Treat these steps as done without running them.
    pub skip: Vec<String>,
    /// Accept edits to succeeded steps and to the DAG above the resume point.
    pub allow_changed: bool,
}

/// Why a resume is refused before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("no run `{0}` in the state store")]
    NotFound(String),
    /// Another process holds the run: it is running, or another resume claimed it first.
    #[error("{0}; resume refused, nothing was run")]
    Busy(cairn_state::RunHolder),
    /// The run's checkpoints changed between reading them and claiming the run (a process
    /// that had lost the run wrote meanwhile); the claim was given back.
    #[error("run {0} changed while it was being resumed; nothing was run, try again")]
    Raced(String),
    #[error("cannot load the runbook of run {id} ({path}): {reason}")]
    Runbook {
        id: String,
        path: String,
        reason: String,
    },
    #[error("the runbook changed since run {id}:\n  {}\nresume with --allow-changed to accept, or start a new run", .changes.join("\n  "))]
    Changed { id: String, changes: Vec<String> },
    #[error("{}\nre-run with --rerun STEP (it runs again) or --skip STEP (it counts as done)", .0.join("\n"))]
    InDoubt(Vec<String>),
    #[error("unknown step `{0}` in --from/--rerun/--skip")]
    UnknownStep(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("state store: {0}")]
    State(#[from] cairn_state::StateError),
}

impl ResumeError {
    pub fn kind(&self) -> crate::outcome::ErrorKind {
        use crate::outcome::ErrorKind;
        match self {
            ResumeError::Busy(_) | ResumeError::Raced(_) => ErrorKind::Held,
            ResumeError::Run(e) => e.kind(),
            ResumeError::State(_) => ErrorKind::Infrastructure,
            ResumeError::NotFound(_)
            | ResumeError::Runbook { .. }
            | ResumeError::Changed { .. }
            | ResumeError::InDoubt(_)
            | ResumeError::UnknownStep(_) => ErrorKind::Invalid,
        }
    }
}

/// What a resume decides from a run's records.
pub(crate) struct Facts<'a> {
    pub run_id: &'a str,
    /// The user who started the run (the one who may not approve it).
    pub starter: &'a str,
    pub checked: &'a Checked,
    /// The runbook's step definitions now, and as recorded with the run.
    pub defs: &'a [StepDef],
    pub old_defs: &'a [StepDef],
    pub records: &'a [StepRecord],
    pub approvals: &'a [Approval],
}

/// What the resume will do, once it holds the run.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// Each step's outcome known before the attempt (restored, skipped, a gate decided by the
    /// answers given during the pause), by step index; `None` runs.
    pub outcomes: Vec<Option<Outcome>>,
    /// The values of restored steps, for templates.
    pub restored: Vec<(String, StepView)>,
    /// Records to write once the run is held: `--skip` decisions and gates decided now.
    pub decided: Vec<StepRecord>,
    /// Answers to write: the gates whose deadline passed unanswered.
    pub timeouts: Vec<Approval>,
    /// Records of steps asked to run again, reset to pending.
    pub forget: Vec<StepRecord>,
    /// Verdicts kept for gates that run again only because a step above them does.
    pub prior_answers: HashMap<String, Json>,
    /// The gates decided by answers given during the pause, told once the run is under way.
    pub answered: Vec<Event>,
    /// When the waits of gates asked again here began.
    pub waits_since: HashMap<String, DateTime<Utc>>,
    /// `for_each` items done in earlier attempts, by step index.
    pub earlier_items: HashMap<usize, EarlierItems>,
}

/// Decide a resume. `asks_here` is whether this process may answer a gate (a prompt, or
/// `--auto-approve`); `now` is the time the decision is taken at.
pub(crate) fn decide(
    f: &Facts<'_>,
    ropts: &ResumeOptions,
    asks_here: bool,
    now: DateTime<Utc>,
) -> Result<Decision, ResumeError> {
    let (checked, defs, old_defs, records, approvals) =
        (f.checked, f.defs, f.old_defs, f.records, f.approvals);
    let all: HashSet<&str> = checked.all_steps().map(|s| s.id.value.as_str()).collect();
    for name in ropts.from.iter().chain(&ropts.rerun).chain(&ropts.skip) {
        if !all.contains(name.as_str()) {
            return Err(ResumeError::UnknownStep(name.clone()));
        }
    }
    let main = checked.runbook.steps.len();
    // Steps named to run again themselves: a gate among them asks again even if its message is
    // unchanged (below them, a gate keeps its answer while it asks the same question).
    let named: HashSet<usize> = ropts
        .rerun
        .iter()
        .chain(&ropts.from)
        .filter_map(|s| checked.step_index(s))
        .collect();
    // Steps to run again whatever their record says.
    let mut again: HashSet<usize> = ropts
        .rerun
        .iter()
        .filter_map(|s| checked.step_index(s))
        .collect();
    if let Some(from) = ropts.from.as_deref().and_then(|s| checked.step_index(s)) {
        if from < main {
            again.extend(checked.dag.downstream(from).ones());
        } else {
            again.insert(from);
        }
    }
    let skip: HashSet<usize> = ropts
        .skip
        .iter()
        .filter_map(|s| checked.step_index(s))
        .collect();

    let actions = crate::action::StepAction::all(checked);
    let whole: HashMap<&str, &cairn_state::StepRecord> = records
        .iter()
        .filter(|r| r.item.is_none())
        .map(|r| (r.step_id.as_str(), r))
        .collect();
    let old: HashMap<&str, &cairn_state::StepDef> =
        old_defs.iter().map(|d| (d.step_id.as_str(), d)).collect();
    // A failure tolerated by `on_failure: continue`, and a "no", are conclusions: a plain
    // resume keeps them (`--rerun`/`--from` run the step again). A failed attempt that was to
    // be retried is recorded `failed` too, before the retry's delay: only a step that used all
    // its attempts (or a `for_each` step, whose own record is written once, at its end) has
    // concluded.
    let concluded = |i: usize| -> bool {
        let fan_out = checked
            .all_steps()
            .nth(i)
            .is_some_and(|s| s.for_each.is_some());
        whole.get(defs[i].step_id.as_str()).is_some_and(|r| {
            r.status == StepStatus::Failed
                && (crate::gate::is_declined(r.result.as_ref())
                    || (actions[i].on_failure == cairn_model::OnFailure::Continue
                        && (fan_out || r.attempt >= actions[i].retry.attempts)))
        })
    };
    // A step skipped because a step above it failed is not done: it is decided again now that
    // that step runs again (or was approved). Such a skip is a `skipped` record below a step
    // that did not succeed and did not conclude; a skip of its own (`when`, `--skip`) is kept.
    let mut blocked = vec![false; main];
    for &i in &checked.dag.order {
        if whole.get(defs[i].step_id.as_str()).map(|r| r.status) != Some(StepStatus::Skipped) {
            continue;
        }
        blocked[i] = checked.dag.parents(i).into_iter().any(|p| {
            match whole.get(defs[p].step_id.as_str()).map(|r| r.status) {
                Some(StepStatus::Succeeded) => false,
                Some(StepStatus::Skipped) => blocked[p],
                Some(StepStatus::Failed) => !concluded(p),
                _ => true,
            }
        });
    }
    // What runs again in this attempt: failed, cancelled, in doubt, never started, asked for
    // (`--from`, `--rerun`), and everything below any of those (its inputs may change). A
    // `--skip` counts as done; an approval keeps its state (an answer given during this pause
    // stands, an unanswered one waits) but still takes its turn after the steps above it.
    let reruns_itself = |i: usize| -> bool {
        if skip.contains(&i) {
            return false;
        }
        if again.contains(&i) {
            return true;
        }
        match whole.get(defs[i].step_id.as_str()).map(|r| r.status) {
            Some(StepStatus::Succeeded) => false,
            Some(StepStatus::Skipped) => blocked[i],
            Some(StepStatus::Waiting) => false,
            Some(StepStatus::Failed) => !concluded(i),
            _ => true,
        }
    };
    let own: Vec<bool> = (0..main).map(reruns_itself).collect();
    // Edits are judged on what was done and not asked to run again, before what is below a
    // step that runs again joins it: an edit above a done step must not pass unnoticed just
    // because the edit makes that step run again.
    let mut changes = Vec::new();
    for (i, def) in defs.iter().enumerate().take(main) {
        let done = whole
            .get(def.step_id.as_str())
            .is_some_and(|r| matches!(r.status, StepStatus::Succeeded | StepStatus::Skipped));
        if !done || own[i] || skip.contains(&i) {
            continue;
        }
        match old.get(def.step_id.as_str()) {
            Some(o) if o.def_hash != def.def_hash => changes.push(format!(
                "step `{}` succeeded and has been edited since",
                def.step_id
            )),
            Some(o) if o.needs != def.needs => changes.push(format!(
                "step `{}` succeeded but what it waits for changed (was [{}], now [{}])",
                def.step_id,
                o.needs.join(", "),
                def.needs.join(", ")
            )),
            _ => {}
        }
    }
    let mut not_again = Vec::new();
    let mut reruns = own.clone();
    for &i in &checked.dag.order {
        let waits =
            whole.get(defs[i].step_id.as_str()).map(|r| r.status) == Some(StepStatus::Waiting);
        if !own[i]
            && !skip.contains(&i)
            && !waits
            && checked.dag.parents(i).into_iter().any(|p| reruns[p])
        {
            reruns[i] = true;
            again.insert(i);
            let idempotent = checked.all_steps().nth(i).is_none_or(|s| s.idempotent());
            if !idempotent {
                let above = checked
                    .dag
                    .parents(i)
                    .into_iter()
                    .filter(|&p| reruns[p])
                    .map(|p| format!("`{}`", defs[p].step_id))
                    .collect::<Vec<_>>()
                    .join(", ");
                not_again.push(format!(
                    "step `{}` is done and not idempotent, but {above} above it runs again",
                    defs[i].step_id
                ));
            }
        }
    }
    let mut in_doubt = not_again;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; defs.len()];
    let mut restored: Vec<(String, StepView)> = Vec::new();
    // `--skip` decisions, committed once the resume is known to go ahead.
    let mut skipped: Vec<cairn_state::StepRecord> = Vec::new();
    // Timeouts decided now, recorded as answers once the resume holds the run.
    let mut timeouts: Vec<cairn_state::Approval> = Vec::new();
    let mut prior_answers: HashMap<String, Json> = HashMap::new();
    // Gates decided by answers given during the pause: told once the run is under way.
    let mut answered: Vec<Event> = Vec::new();
    let mut waits_since = HashMap::new();
    for (i, def) in defs.iter().enumerate() {
        let step = checked
            .all_steps()
            .nth(i)
            .map(|s| s.idempotent())
            .unwrap_or(true);
        let rec = whole.get(def.step_id.as_str());
        if skip.contains(&i) {
            let mut rec = rec.map_or_else(
                || cairn_state::StepRecord::new(f.run_id, &def.step_id, None, &def.def_hash),
                |r| (*r).clone(),
            );
            rec.status = StepStatus::Skipped;
            rec.error = Some("skipped on resume".into());
            rec.finished_at = Some(now);
            skipped.push(rec);
            outcomes[i] = Some(Outcome::restored(
                Status::Skipped,
                Json::Null,
                Json::Null,
                Some("skipped on resume".into()),
            ));
            restored.push((
                def.step_id.clone(),
                StepView {
                    status: "skipped".into(),
                    result: Json::Null,
                    outputs: Json::Null,
                    error: Some("skipped on resume".into()),
                    timing: Timing::default(),
                },
            ));
            continue;
        }
        // A `for_each` step has no record of its own until all its items ended: an item that
        // was running is in doubt like a whole step.
        if !step && !again.contains(&i) && rec.is_none_or(|r| r.status != StepStatus::Succeeded) {
            let items: Vec<String> = records
                .iter()
                .filter(|r| {
                    r.step_id == def.step_id && r.item.is_some() && r.status == StepStatus::Running
                })
                .filter_map(|r| r.item.map(|k| k.to_string()))
                .collect();
            if !items.is_empty() {
                in_doubt.push(format!(
                    "step `{}` (item {}) was running when the run stopped (in doubt) and is not idempotent",
                    def.step_id,
                    items.join(", ")
                ));
                continue;
            }
        }
        let Some(rec) = rec else { continue };
        // A gate that runs again only because a step above it does keeps its answer while it
        // asks the same question.
        if again.contains(&i)
            && !named.contains(&i)
            && matches!(
                rec.status,
                StepStatus::Succeeded | StepStatus::Skipped | StepStatus::Failed
            )
            && let Some(verdict) = rec.result.as_ref().filter(|r| r.get("approved").is_some())
        {
            prior_answers.insert(def.step_id.clone(), verdict.clone());
        }
        match rec.status {
            StepStatus::Succeeded | StepStatus::Skipped | StepStatus::Failed
                if !again.contains(&i)
                    && i < main
                    && !blocked[i]
                    && (rec.status != StepStatus::Failed || concluded(i)) =>
            {
                let status = rec.status;
                let result = rec.result.clone().unwrap_or(Json::Null);
                let outputs = rec.outputs.clone().unwrap_or(Json::Null);
                restored.push((
                    def.step_id.clone(),
                    StepView {
                        status: status.as_str().into(),
                        result: result.clone(),
                        outputs: outputs.clone(),
                        error: rec.error.clone(),
                        timing: Timing {
                            started_at: rec.started_at,
                            finished_at: rec.finished_at,
                        },
                    },
                ));
                let declined = crate::gate::is_declined(Some(&result));
                outcomes[i] = Some(Outcome {
                    hold: if declined { Hold::Declined } else { Hold::No },
                    ..Outcome::restored(status, result, outputs, rec.error.clone())
                });
            }
            StepStatus::Running if !again.contains(&i) && !step => in_doubt.push(format!(
                "step `{}` was running when the run stopped (in doubt) and is not idempotent",
                def.step_id
            )),
            StepStatus::Waiting => {
                let Some(cairn_model::StepKind::Approval(gate)) =
                    checked.all_steps().nth(i).map(|s| &s.kind)
                else {
                    // A `uses` step waiting for its sub-run: it runs again and continues it.
                    continue;
                };
                // Judged by the rules recorded when the wait began, on the answers given
                // since then (older ones answered an earlier wait of the same step).
                let since = rec.started_at.unwrap_or(now);
                let rules = rec
                    .result
                    .as_ref()
                    .and_then(crate::gate::Rules::from_result)
                    .unwrap_or_else(|| crate::gate::Rules::of(gate, f.starter, since));
                let message = rec
                    .result
                    .as_ref()
                    .and_then(|r| r.get("message"))
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let answers = crate::gate::answers_since(approvals, &def.step_id, Some(since));
                let verdict = match crate::gate::judge(&rules, &answers) {
                    Verdict::Pending { .. } => timed_out(gate, &rules, rec, now, &mut timeouts),
                    decided => Some(decided),
                };
                if let Some(verdict) = verdict {
                    let result = crate::gate::verdict_json(&message, &verdict);
                    answered.push(Event::ApprovalAnswered {
                        step: def.step_id.clone(),
                        approved: matches!(verdict, Verdict::Approved { .. }),
                        by: result
                            .get("approved_by")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    });
                    let (status, error, hold) = match &verdict {
                        Verdict::Approved { .. } => (Status::Succeeded, None, Hold::No),
                        Verdict::Rejected { by } if rules.on_reject == OnReject::Skip => {
                            (Status::Skipped, None, Hold::Declined)
                        }
                        Verdict::Rejected { by } => (
                            Status::Failed,
                            Some(format!("rejected by {by}")),
                            Hold::Declined,
                        ),
                        Verdict::Pending { .. } => continue,
                    };
                    let note = match (&verdict, status) {
                        (Verdict::Rejected { by }, Status::Skipped) => {
                            Some(format!("declined: rejected by {by}"))
                        }
                        _ => None,
                    };
                    let mut rec = (*rec).clone();
                    rec.status = status;
                    rec.result = Some(result.clone());
                    rec.error = error.clone().or(note.clone());
                    rec.finished_at = Some(now);
                    let timing = Timing {
                        started_at: rec.started_at,
                        finished_at: rec.finished_at,
                    };
                    skipped.push(rec);
                    restored.push((
                        def.step_id.clone(),
                        StepView {
                            status: status.as_str().into(),
                            result: result.clone(),
                            outputs: Json::Object(Default::default()),
                            error: error.clone(),
                            timing,
                        },
                    ));
                    outcomes[i] = Some(Outcome {
                        hold,
                        note,
                        ..Outcome::restored(status, result, Json::Object(Default::default()), error)
                    });
                } else if !asks_here {
                    // Still unanswered and nobody here to answer: it keeps waiting as recorded,
                    // so its `timeout` keeps counting from when the wait began.
                    outcomes[i] = Some(Outcome::restored(
                        Status::Waiting,
                        rec.result.clone().unwrap_or(Json::Null),
                        Json::Null,
                        None,
                    ));
                } else {
                    // Asked again here, as the same wait: its answers and deadline count
                    // from when it began.
                    waits_since.insert(def.step_id.clone(), since);
                }
            }
            _ => {}
        }
    }
    // Old steps that succeeded and are gone from the runbook.
    for r in whole.values() {
        if r.status == StepStatus::Succeeded && !all.contains(r.step_id.as_str()) {
            changes.push(format!(
                "step `{}` succeeded and is no longer in the runbook",
                r.step_id
            ));
        }
    }
    if !changes.is_empty() && !ropts.allow_changed {
        return Err(ResumeError::Changed {
            id: f.run_id.to_string(),
            changes,
        });
    }
    if !in_doubt.is_empty() {
        return Err(ResumeError::InDoubt(in_doubt));
    }
    // A `for_each` step that runs again by itself (failed, cut off) keeps the items that
    // succeeded; one asked for (`--from`, `--rerun`) or below a step that runs again runs whole.
    let mut earlier_items = HashMap::new();
    for (i, def) in defs.iter().enumerate().take(main) {
        let Some(rec) = whole.get(def.step_id.as_str()) else {
            continue;
        };
        if !own[i] || again.contains(&i) || rec.def_hash != def.def_hash {
            continue;
        }
        let items: Vec<Json> = match rec.result.as_ref().and_then(|r| r.get("items")) {
            Some(Json::Array(list)) => list
                .iter()
                .map(|x| x.get("item").cloned().unwrap_or(Json::Null))
                .collect(),
            _ => continue,
        };
        let succeeded = records
            .iter()
            .filter(|r| {
                r.step_id == def.step_id
                    && r.status == StepStatus::Succeeded
                    && r.def_hash == def.def_hash
            })
            .filter_map(|r| Some((usize::try_from(r.item?).ok()?, r.clone())))
            .collect();
        earlier_items.insert(i, EarlierItems { items, succeeded });
    }
    // Steps asked to run again (`--from`, `--rerun`) forget their old result now, so that a
    // pause or a crash before they run cannot pass them off as done on the next resume.
    let mut forget = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        if let Some(rec) = whole
            .get(def.step_id.as_str())
            .filter(|_| again.contains(&i))
        {
            let mut rec = (*rec).clone();
            rec.status = StepStatus::Pending;
            rec.started_at = None;
            rec.finished_at = None;
            rec.result = None;
            rec.outputs = None;
            rec.error = None;
            forget.push(rec);
        }
    }
    Ok(Decision {
        outcomes,
        restored,
        decided: skipped,
        timeouts,
        forget,
        prior_answers,
        answered,
        waits_since,
        earlier_items,
    })
}

/// A gate whose deadline passed unanswered is decided by its `on_timeout` (default reject),
/// recorded like any answer (written once the resume holds the run).
fn timed_out(
    gate: &cairn_model::ApprovalStep,
    rules: &crate::gate::Rules,
    rec: &cairn_state::StepRecord,
    now: DateTime<Utc>,
    timeouts: &mut Vec<cairn_state::Approval>,
) -> Option<Verdict> {
    let deadline = rules.deadline?;
    if now <= deadline {
        return None;
    }
    let approved = gate.on_timeout == Some(cairn_model::OnTimeout::Approve);
    timeouts.push(cairn_state::Approval {
        run_id: rec.run_id.clone(),
        step_id: rec.step_id.clone(),
        decision: if approved {
            Answer::Approved
        } else {
            Answer::Rejected
        },
        by: "timeout".into(),
        at: deadline,
        comment: None,
        host: None,
        tty: None,
    });
    let by = "timeout".to_string();
    Some(if approved {
        Verdict::Approved { by: vec![by] }
    } else {
        Verdict::Rejected { by }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_state::Decision as D;
    use chrono::TimeZone;

    const RUN: &str = "r1";

    fn checked(yaml: &str) -> Checked {
        let templates = cairn_template::Templates::new();
        let (checked, diags) = cairn_model::check("t.yaml".as_ref(), yaml, &templates);
        checked.unwrap_or_else(|| panic!("{diags:?}"))
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("a valid time")
    }

    /// A record of step `id` as the runbook defines it now.
    fn rec(defs: &[StepDef], id: &str, status: StepStatus, attempt: u32) -> StepRecord {
        let def = defs
            .iter()
            .find(|d| d.step_id == id)
            .expect("a step of the runbook");
        StepRecord {
            status,
            attempt,
            started_at: Some(at(0)),
            ..StepRecord::new(RUN, id, None, &def.def_hash)
        }
    }

    fn decided(
        c: &Checked,
        records: &[StepRecord],
        approvals: &[Approval],
        ropts: &ResumeOptions,
        now: DateTime<Utc>,
    ) -> Result<Decision, ResumeError> {
        let defs = crate::shared::step_defs(c);
        decide(
            &Facts {
                run_id: RUN,
                starter: "alice",
                checked: c,
                defs: &defs,
                old_defs: &defs,
                records,
                approvals,
            },
            ropts,
            false,
            now,
        )
    }

    /// Which steps the decision leaves to run (no outcome known before the attempt).
    fn to_run(c: &Checked, d: &Decision) -> Vec<String> {
        c.all_steps()
            .zip(&d.outcomes)
            .filter(|(_, o)| o.is_none())
            .map(|(s, _)| s.id.value.clone())
            .collect()
    }

    const CHAIN: &str = "cairn: 1\nname: t\nsteps:\n  - id: a\n    shell: 'true'\n  - id: b\n    shell: 'false'\n    retry: { attempts: 2 }\n    on_failure: continue\n  - id: c\n    shell: 'true'\n";

    #[test]
    fn a_tolerated_failure_is_a_conclusion_only_once_its_attempts_are_used() {
        let c = checked(CHAIN);
        let defs = crate::shared::step_defs(&c);
        let done = rec(&defs, "a", StepStatus::Succeeded, 1);
        // Both attempts used: concluded, restored; nothing runs again.
        let used = [
            done.clone(),
            rec(&defs, "b", StepStatus::Failed, 2),
            rec(&defs, "c", StepStatus::Succeeded, 1),
        ];
        let d = decided(&c, &used, &[], &Default::default(), at(10)).expect("decided");
        assert_eq!(to_run(&c, &d), Vec::<String>::new());
        // A failed first attempt with a retry left (recorded before the retry's delay): it runs
        // again, and so does what is below it; what is above it is restored.
        let left = [done, rec(&defs, "b", StepStatus::Failed, 1)];
        let d = decided(&c, &left, &[], &Default::default(), at(10)).expect("decided");
        assert_eq!(to_run(&c, &d), ["b", "c"]);
        assert!(
            d.forget.is_empty(),
            "nothing was asked to run again by name"
        );
    }

    #[test]
    fn an_in_doubt_step_that_is_not_idempotent_refuses_unless_named() {
        let c = checked(
            "cairn: 1\nname: t\nsteps:\n  - id: pay\n    shell: 'true'\n    idempotent: false\n",
        );
        let defs = crate::shared::step_defs(&c);
        let running = [rec(&defs, "pay", StepStatus::Running, 1)];
        match decided(&c, &running, &[], &Default::default(), at(10)) {
            Err(ResumeError::InDoubt(why)) => assert!(why[0].contains("`pay`"), "{why:?}"),
            other => panic!("expected in doubt, got {:?}", other.map(|d| to_run(&c, &d))),
        }
        let rerun = ResumeOptions {
            rerun: vec!["pay".into()],
            ..Default::default()
        };
        let d = decided(&c, &running, &[], &rerun, at(10)).expect("decided");
        assert_eq!(to_run(&c, &d), ["pay"]);
        assert_eq!(d.forget.len(), 1, "its old record is reset before it runs");
        assert_eq!(d.forget[0].status, StepStatus::Pending);
        let skip = ResumeOptions {
            skip: vec!["pay".into()],
            ..Default::default()
        };
        let d = decided(&c, &running, &[], &skip, at(10)).expect("decided");
        assert_eq!(d.decided[0].status, StepStatus::Skipped);
    }

    #[test]
    fn an_edited_step_that_succeeded_is_refused_unless_allowed() {
        let c = checked(CHAIN);
        let defs = crate::shared::step_defs(&c);
        let mut old = defs.clone();
        old[0].def_hash = "0000000000000000".into();
        let records = [StepRecord {
            def_hash: old[0].def_hash.clone(),
            ..rec(&defs, "a", StepStatus::Succeeded, 1)
        }];
        let facts = |allow: bool| {
            decide(
                &Facts {
                    run_id: RUN,
                    starter: "alice",
                    checked: &c,
                    defs: &defs,
                    old_defs: &old,
                    records: &records,
                    approvals: &[],
                },
                &ResumeOptions {
                    allow_changed: allow,
                    ..Default::default()
                },
                false,
                at(10),
            )
        };
        match facts(false) {
            Err(ResumeError::Changed { changes, .. }) => {
                assert!(
                    changes[0].contains("`a` succeeded and has been edited"),
                    "{changes:?}"
                )
            }
            other => panic!("expected a refusal, got {:?}", other.is_ok()),
        }
        assert!(facts(true).is_ok());
    }

    const GATE: &str = "cairn: 1\nname: t\nsteps:\n  - id: g\n    approval:\n      message: go?\n      timeout: 1h\n      on_reject: skip\n  - id: after\n    shell: 'true'\n";

    fn waiting(c: &Checked) -> StepRecord {
        let defs = crate::shared::step_defs(c);
        let rules = crate::gate::Rules {
            deadline: Some(at(3600)),
            on_reject: OnReject::Skip,
            ..crate::gate::Rules::open("alice")
        };
        let mut result = rules.to_json();
        result["message"] = Json::String("go?".into());
        StepRecord {
            result: Some(result),
            ..rec(&defs, "g", StepStatus::Waiting, 1)
        }
    }

    fn answer(decision: D, by: &str, s: i64) -> Approval {
        Approval {
            run_id: RUN.into(),
            step_id: "g".into(),
            decision,
            by: by.into(),
            at: at(s),
            comment: None,
            host: None,
            tty: None,
        }
    }

    #[test]
    fn a_waiting_gate_is_decided_by_the_answers_given_since_it_began_to_wait() {
        let c = checked(GATE);
        let w = [waiting(&c)];
        // An answer before the wait began answered an earlier wait: it does not count.
        let old = [answer(D::Approved, "bob", -5)];
        let d = decided(&c, &w, &old, &Default::default(), at(10)).expect("decided");
        assert_eq!(
            d.outcomes[0].as_ref().map(|o| o.status),
            Some(Status::Waiting)
        );
        // Approved by someone else: succeeded, recorded once the resume holds the run.
        let yes = [answer(D::Approved, "bob", 5)];
        let d = decided(&c, &w, &yes, &Default::default(), at(10)).expect("decided");
        assert_eq!(d.decided[0].status, StepStatus::Succeeded);
        assert_eq!(to_run(&c, &d), ["after"]);
        // Rejected with `on_reject: skip`: skipped, declined, so nothing below it runs.
        let no = [answer(D::Rejected, "bob", 5)];
        let d = decided(&c, &w, &no, &Default::default(), at(10)).expect("decided");
        let o = d.outcomes[0].as_ref().expect("decided");
        assert_eq!((o.status, o.hold), (Status::Skipped, Hold::Declined));
    }

    #[test]
    fn a_gate_past_its_deadline_is_decided_by_its_timeout_and_the_answer_recorded() {
        let c = checked(GATE);
        let w = [waiting(&c)];
        let d = decided(&c, &w, &[], &Default::default(), at(3601)).expect("decided");
        assert_eq!(d.timeouts.len(), 1);
        assert_eq!(
            (d.timeouts[0].by.as_str(), d.timeouts[0].decision),
            ("timeout", D::Rejected)
        );
        assert_eq!(
            d.timeouts[0].at,
            at(3600),
            "recorded at the deadline, not when read"
        );
        // A late approval does not count either.
        let late = [answer(D::Approved, "bob", 3700)];
        let d = decided(&c, &w, &late, &Default::default(), at(3800)).expect("decided");
        assert_eq!(d.timeouts[0].decision, D::Rejected);
    }
}
