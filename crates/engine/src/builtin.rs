//! The step kinds the executor performs itself (check, approval, wait, report, uses), the
//! dispatch to the external kinds, expectations and retry delays.

use crate::context::Local;
use crate::events::Event;
use crate::exec::Call;
use crate::gate::{self, Answer, Rules, Verdict};
use crate::outcome::Done;
use crate::prepare::Condition;
use crate::prepare::{Prepared, fmt_dur};
use crate::shared::Shared;
use cairn_model::{CheckState, Expect, OnTimeout, Step, StepKind, Threshold};
use cairn_steps::StepError;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

impl Done {
    fn ok(result: Json, note: impl Into<String>) -> Done {
        Done {
            result,
            note: Some(note.into()),
            ..Done::default()
        }
    }
}

/// What a step does, for progress output. Whole: the door masks it, then cuts it to one line
/// (cutting first could leave part of a secret that masking no longer recognises).
pub(crate) fn describe(p: &Prepared) -> String {
    let first = |s: &str| s.trim_start().to_string();
    match p {
        Prepared::Shell { command, .. } => format!("$ {}", first(command)),
        Prepared::Argv { argv, .. } => format!(
            "$ {}",
            argv.iter()
                .map(|a| cairn_template::shell_quote(a).unwrap_or_else(|_| a.clone()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Prepared::Sql { target, sql, .. } => format!("sql on {target}: {}", first(sql)),
        Prepared::Http { method, url, .. } => format!("{method} {url}"),
        Prepared::Chroma { target, action, .. } => format!("chroma {action} on {target}"),
        Prepared::Check { value, .. } => format!("check {value}"),
        Prepared::Approval { message, .. } => format!("approval: {}", first(message)),
        Prepared::Sleep { duration } => format!("sleep {}", fmt_dur(*duration)),
        Prepared::Poll { action, until, .. } => {
            format!("until {}: {}", until.src(), describe(action))
        }
        Prepared::Report { to, .. } => format!("report -> {to}"),
        Prepared::Uses { runbook, .. } => format!("run {runbook}"),
    }
}

/// Who is calling through the port: the run, the step, its item and attempt.
fn call<'a>(shared: &'a Shared, step: &'a Step, local: &Local, attempt: u32) -> Call<'a> {
    Call {
        run_id: &shared.run_id,
        step: &step.id.value,
        item: local.item.as_ref().map(|(_, k)| *k),
        attempt,
        runs_on: step
            .routed_to(shared.checked.runbook.defaults.as_ref())
            .map(|r| &r.labels),
        idempotent: step.idempotent(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn perform(
    shared: &Arc<Shared>,
    step: &Step,
    p: &Prepared,
    local: &Local,
    attempt: u32,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    log: Option<PathBuf>,
) -> Result<Done, StepError> {
    match p {
        Prepared::Shell { .. }
        | Prepared::Argv { .. }
        | Prepared::Sql { .. }
        | Prepared::Http { .. }
        | Prepared::Chroma { .. } => {
            let streams = matches!(p, Prepared::Shell { .. } | Prepared::Argv { .. });
            let a = crate::exec::Attempt {
                timeout,
                cancel,
                targets: &shared.targets,
                read_only: false,
                filter: shared.door.stream(),
                // A process's output is written to the log while it runs (the console's live
                // log), then replaced by the step's log below.
                log: log.clone().filter(|_| streams),
            };
            let r = shared
                .actions
                .perform(&call(shared, step, local, attempt), p, &a)
                .await;
            if streams {
                write_log(
                    shared,
                    log.as_deref(),
                    r.as_ref()
                        .ok()
                        .or_else(|| r.as_ref().err().and_then(|e| e.result())),
                );
            }
            let result = r?;
            Ok(Done {
                note: Some(note(p, &result)),
                result,
                ..Done::default()
            })
        }
        Prepared::Check {
            value,
            warning,
            critical,
            unit,
            fail_on,
        } => Ok(check(value, warning, critical, unit, *fail_on)),
        Prepared::Approval { message, .. } => {
            let call = call(shared, step, local, attempt);
            approval(shared, step, message, &call, cancel).await
        }
        Prepared::Sleep { duration } => {
            let d = *duration;
            bounded(timeout, cancel, |c| async move {
                tokio::select! {
                    _ = tokio::time::sleep(d) => Ok(Done::ok(serde_json::json!({ "slept_ms": d.as_millis() as u64 }), format!("slept {}", fmt_dur(d)))),
                    _ = c.cancelled() => Err(StepError::Cancelled { result: None }),
                }
            })
            .await
        }
        Prepared::Poll {
            action,
            until,
            interval,
            timeout: deadline,
        } => {
            let every = Every {
                until,
                interval: *interval,
                deadline: *deadline,
            };
            bounded(timeout, cancel, |c| async move {
                poll(shared, step, action, every, local, attempt, &c).await
            })
            .await
        }
        Prepared::Report {
            template,
            inline,
            to,
        } => report(shared, template.as_deref(), inline.as_deref(), to, local),
        Prepared::Uses { runbook, with } => {
            // A test's stand-in for the sub-run: its outputs, or its failure.
            if let Some(port) = &shared.opts.stand_ins
                && let Some(outcome) = port.0.sub_run(&call(shared, step, local, attempt))
            {
                let result = outcome?;
                return Ok(Done::ok(result, "sub-run given by the test"));
            }
            bounded(timeout, cancel, |c| async move {
                shared
                    .subruns
                    .uses(shared, step, runbook, with, local, &c)
                    .await
            })
            .await
        }
    }
}

/// Run a control action under the step's `timeout`: when it passes, the action's own token is
/// cancelled (a sub-run's steps stop, their processes are killed) and the step times out.
async fn bounded<'a, F, Fut>(
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    f: F,
) -> Result<Done, StepError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<Done, StepError>> + 'a,
{
    let token = cancel.child_token();
    let fut = f(token.clone());
    match timeout {
        None => fut.await,
        Some(t) => {
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => r,
                _ = tokio::time::sleep(t) => {
                    token.cancel();
                    // Let the action wind down (a sub-run records its interruption).
                    let _ = tokio::time::timeout(Duration::from_secs(10), fut).await;
                    Err(StepError::Timeout { after: t, result: None })
                }
            }
        }
    }
}

fn note(p: &Prepared, r: &Json) -> String {
    match p {
        Prepared::Shell { .. } | Prepared::Argv { .. } => {
            match cairn_steps::shell::leftovers_note(r) {
                Some(left) => format!("exit {}; {left}", r["exit_code"]),
                None => format!("exit {}", r["exit_code"]),
            }
        }
        Prepared::Sql { .. } => match (r["row_count"].as_u64(), r["rows_affected"].as_u64()) {
            (Some(0), Some(n)) if n > 0 => format!("{n} rows affected"),
            _ => format!("{} rows", r["row_count"]),
        },
        Prepared::Http { .. } => format!("HTTP {} in {} ms", r["status"], r["duration_ms"]),
        Prepared::Chroma { action, .. } => match (action.as_str(), &r["count"], &r["records"]) {
            (_, Json::Number(n), _) => format!("{action}: {n}"),
            (_, _, Json::Number(n)) => format!("{action}: {n} records"),
            _ => action.clone(),
        },
        _ => String::new(),
    }
}

/// The captured streams, masked, in the step's log (never the raw bytes). A step that printed
/// nothing has no log: its exit code is in its record, and creating a file per silent step
/// was the largest part of Cairn's own time for such steps (decisions.md). A log left by an
/// earlier attempt of the step is removed, so that it is never taken for this one's. The
/// live log the process's output was written to while it ran is replaced whole (a new file
/// renamed over it): a reader following it sees a new file, never this text over that one.
fn write_log(shared: &Shared, path: Option<&std::path::Path>, result: Option<&Json>) {
    let (Some(path), Some(r)) = (path, result) else {
        return;
    };
    let stdout = r["stdout"].as_str().unwrap_or_default();
    let stderr = r["stderr"].as_str().unwrap_or_default();
    if stdout.is_empty() && stderr.is_empty() {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old step log");
            }
            _ => {}
        }
        return;
    }
    let text = format!(
        "$ exit {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n",
        r["exit_code"],
    );
    if let Err(e) = shared.door.replace_file(path, &text) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write step log");
    }
}

/// An integral value stays an integer in results (`85`, not `85.0`).
fn number(v: f64) -> Json {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        Json::from(v as i64)
    } else {
        Json::from(v)
    }
}

/// A check's value as a finite number: `NaN` and the infinities parse as floats but are no
/// measurement (NaN crosses no threshold, and neither can be recorded or printed as a number),
/// so a check of one is `unknown`, like a check of a word.
fn as_number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        Json::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn check(
    value: &Json,
    warning: &Option<String>,
    critical: &Option<String>,
    unit: &Option<String>,
    fail_on: CheckState,
) -> Done {
    let Some(v) = as_number(value) else {
        return Done {
            result: serde_json::json!({ "value": value, "state": "unknown" }),
            failure: Some(format!("check value {value} is not a number")),
            state: Some("unknown".into()),
            ..Done::default()
        };
    };
    // The thresholds as prepared (templated ones rendered), normalised so they parse again.
    let crossed = |l: &Option<String>| {
        l.as_deref()
            .and_then(Threshold::parse)
            .is_some_and(|t| t.crossed(v))
    };
    let state = if crossed(critical) {
        CheckState::Critical
    } else if crossed(warning) {
        CheckState::Warning
    } else {
        CheckState::Ok
    };
    let name = match state {
        CheckState::Critical => "critical",
        CheckState::Warning => "warning",
        _ => "ok",
    };
    let unit_s = unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
    let shown = if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    };
    let failure = (fail_on != CheckState::Never && state >= fail_on).then(|| {
        let limit = if state == CheckState::Critical {
            critical
        } else {
            warning
        };
        format!(
            "check {name}: {shown}{unit_s} ({})",
            limit.as_deref().unwrap_or_default()
        )
    });
    Done {
        result: serde_json::json!({ "value": number(v), "state": name, "warning": warning, "critical": critical, "unit": unit }),
        note: Some(format!("{name}: {shown}{unit_s}")),
        failure,
        waiting: false,
        declined: None,
        state: Some(name.into()),
    }
}

async fn approval(
    shared: &Arc<Shared>,
    step: &Step,
    message: &str,
    call: &Call<'_>,
    cancel: &CancellationToken,
) -> Result<Done, StepError> {
    let attempt = call.attempt;
    let StepKind::Approval(gate) = &step.kind else {
        return Err(StepError::setup("not an approval step"));
    };
    let id = step.id.value.as_str();
    // An answer given in an earlier attempt stands while the gate asks the same question: a
    // step re-run above it that leaves its message unchanged does not ask again.
    let mut asked_again = None;
    if let Some(prior) = shared.prior_answers.get(id) {
        if prior.get("message").and_then(Json::as_str) == Some(message) {
            return Ok(restated(prior, gate.on_reject));
        }
        asked_again = Some(format!(
            "asked again: its message changed since {} answered it",
            prior
                .get("approved_by")
                .and_then(Json::as_str)
                .unwrap_or("someone")
        ));
    }
    // A wait that began before a crash or a pause goes on from where it began: its answers
    // and its deadline count from then.
    let since = shared
        .waits_since
        .get(id)
        .copied()
        .unwrap_or_else(cairn_state::now);
    let rules = Rules::of(gate, &shared.starter, since);
    // A test's answers: recorded like any other, then judged by the gate's own rules.
    if let Some(given) = shared
        .opts
        .stand_ins
        .as_ref()
        .and_then(|p| p.0.answers(call))
    {
        for answer in &given {
            // Admitted by the gate's rules like an answer from `cairn approve`; a test cannot
            // know the machine's groups, so its answerer counts as a member of any group.
            let earlier = answers(shared, id, since).await;
            match gate::admit(&rules, &earlier, answer, &|_, _| true) {
                Ok(()) => record(shared, id, answer, None).await,
                Err(refused) => shared.sink.emit(&Event::ApprovalNote {
                    step: id.to_string(),
                    text: format!("not taken: {refused}"),
                }),
            }
        }
        match gate::judge(&rules, &answers(shared, id, since).await) {
            Verdict::Pending { .. } => {}
            verdict => {
                announce(shared, id, &verdict);
                return Ok(decided(message, &rules, verdict));
            }
        }
    }
    if let Some(who) = &shared.opts.auto_approve {
        if !gate.declares_rules() {
            let answer = Answer::new(true, who);
            record(shared, id, &answer, None).await;
            return Ok(decided(
                message,
                &rules,
                Verdict::Approved {
                    by: vec![who.clone()],
                },
            ));
        }
        shared.sink.emit(&Event::ApprovalNote {
            step: id.to_string(),
            text: "--auto-approve does not answer a gate that names its approvers, a quorum or `allow_self_approval: false`".into(),
        });
    }
    let waiting = serde_json::json!({
        "message": message,
        "rules": rules.to_json(),
        "since": since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    if let Some(why) = asked_again {
        shared.sink.emit(&Event::ApprovalNote {
            step: id.to_string(),
            text: why,
        });
    }
    if !shared.opts.interactive {
        return Ok(Done {
            waiting: true,
            result: waiting,
            ..Done::default()
        });
    }
    // Recorded `waiting` before the prompt, so that `cairn approve` from any shell answers it.
    let mut rec = cairn_state::StepRecord::new(
        &shared.run_id,
        id,
        None,
        &shared.def_hashes[shared.checked.step_index(id).unwrap_or_default()],
    );
    rec.status = cairn_state::StepStatus::Waiting;
    rec.attempt = attempt;
    rec.started_at = Some(since);
    rec.result = Some(waiting);
    if !shared.checkpoint(&rec).await {
        return Err(StepError::Cancelled { result: None });
    }
    shared.sink.emit(&Event::ApprovalWaiting {
        step: id.to_string(),
        message: message.to_string(),
        run_id: shared.run_id.clone(),
        rules: rules.describe(),
        prompt: true,
    });
    let deadline = rules.deadline.map(|d| {
        let left = (d - cairn_state::now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    // The terminal is one: a gate prompting beside another reads it once that one is answered,
    // and meanwhile still takes answers from other shells.
    let mut terminal = None;
    let mut have = 0;
    // The terminal closed: answers from other shells still count.
    let mut closed = false;
    loop {
        if terminal.is_none()
            && let Ok(mut lines) = crate::prompt::lines().try_lock()
        {
            crate::prompt::drain(&mut lines);
            terminal = Some(lines);
        }
        tokio::select! {
            line = crate::prompt::next_line(&mut terminal, closed) => match line.as_deref().map(crate::prompt::parse) {
                Some(Some(approved)) => {
                    let answer = Answer::new(approved, &shared.opts.user);
                    let earlier = answers(shared, id, since).await;
                    match gate::admit(&rules, &earlier, &answer, &gate::unix_member) {
                        Ok(()) => record(shared, id, &answer, gate::tty()).await,
                        Err(refused) => shared.sink.emit(&Event::ApprovalNote {
                            step: id.to_string(),
                            text: format!("not taken: {refused}"),
                        }),
                    }
                }
                Some(None) => shared.sink.emit(&Event::ApprovalNote {
                    step: id.to_string(),
                    text: "answer y or n".into(),
                }),
                None => closed = true,
            },
            _ = tokio::time::sleep(ANSWER_POLL) => {}
            _ = cancel.cancelled() => return Err(StepError::Cancelled { result: None }),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                let answer = Answer::new(gate.on_timeout == Some(OnTimeout::Approve), "timeout");
                record(shared, id, &answer, None).await;
                let verdict = if answer.approved {
                    Verdict::Approved { by: vec![answer.by] }
                } else {
                    Verdict::Rejected { by: answer.by }
                };
                announce(shared, id, &verdict);
                return Ok(decided(message, &rules, verdict));
            }
        }
        match gate::judge(&rules, &answers(shared, id, since).await) {
            Verdict::Pending { have: now, need } => {
                if now > have {
                    have = now;
                    shared.sink.emit(&Event::ApprovalNote {
                        step: id.to_string(),
                        text: format!("{now} of {need} approvals; waiting for more"),
                    });
                }
            }
            verdict => {
                announce(shared, id, &verdict);
                return Ok(decided(message, &rules, verdict));
            }
        }
    }
}

/// Tells the sinks a gate that waited was decided.
fn announce(shared: &Shared, id: &str, verdict: &Verdict) {
    let (approved, by) = match verdict {
        Verdict::Approved { by } => (true, by.join(", ")),
        Verdict::Rejected { by } => (false, by.clone()),
        Verdict::Pending { .. } => return,
    };
    shared.sink.emit(&Event::ApprovalAnswered {
        step: id.to_string(),
        approved,
        by,
    });
}

/// How often a prompting gate looks for answers given from other shells.
const ANSWER_POLL: Duration = Duration::from_millis(500);

/// The answers recorded for gate `id` since its wait began.
async fn answers(shared: &Shared, id: &str, since: chrono::DateTime<chrono::Utc>) -> Vec<Answer> {
    match shared.store.approvals(&shared.run_id).await {
        Ok(all) => gate::answers_since(&all, id, Some(since)),
        Err(e) => {
            tracing::warn!(step = %id, error = %e, "cannot read the answers");
            Vec::new()
        }
    }
}

/// An answer, recorded in the approvals table like one from `cairn approve`.
async fn record(shared: &Shared, id: &str, answer: &Answer, tty: Option<String>) {
    let record = cairn_state::Approval {
        run_id: shared.run_id.clone(),
        step_id: id.to_string(),
        decision: if answer.approved {
            cairn_state::Decision::Approved
        } else {
            cairn_state::Decision::Rejected
        },
        by: answer.by.clone(),
        at: answer.at,
        comment: None,
        host: Some(cairn_state::current_host()),
        tty,
    };
    if let Err(e) = shared.store.record_approval(&record).await {
        tracing::warn!(step = %id, error = %e, "cannot record the approval");
    }
}

/// A gate's verdict as the step's result: approved, or declined (failed or skipped below it,
/// by its `on_reject`). Resume reads the same shape back ([`crate::gate::verdict_json`]).
fn decided(message: &str, rules: &Rules, verdict: Verdict) -> Done {
    let result = gate::verdict_json(message, &verdict);
    restated(&result, Some(rules.on_reject))
}

/// The step's outcome from a recorded verdict.
fn restated(result: &Json, on_reject: Option<cairn_model::OnReject>) -> Done {
    let by = result
        .get("approved_by")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if result.get("approved") == Some(&Json::Bool(true)) {
        Done::ok(result.clone(), format!("approved by {by}"))
    } else {
        Done {
            failure: Some(format!("rejected by {by}")),
            declined: Some(on_reject.unwrap_or_default()),
            result: result.clone(),
            ..Done::default()
        }
    }
}

/// How a `wait` polls: until what, how often, for how long.
struct Every<'a> {
    until: &'a Condition,
    interval: Duration,
    deadline: Duration,
}

async fn poll(
    shared: &Arc<Shared>,
    step: &Step,
    inner: &Prepared,
    every: Every<'_>,
    local: &Local,
    attempt: u32,
    cancel: &CancellationToken,
) -> Result<Done, StepError> {
    let Every {
        until,
        interval,
        deadline,
    } = every;
    let started = Instant::now();
    // Intervals a test's stand-ins did not wait out still count against the deadline.
    let mut skipped = Duration::ZERO;
    let mut polls = 0u32;
    let mut last;
    loop {
        polls += 1;
        let left = deadline.saturating_sub(started.elapsed() + skipped);
        let a = crate::exec::Attempt {
            timeout: Some(left.max(Duration::from_millis(1))),
            cancel,
            targets: &shared.targets,
            read_only: false,
            filter: shared.door.stream(),
            log: None,
        };
        match shared
            .actions
            .perform(&call(shared, step, local, attempt), inner, &a)
            .await
        {
            Ok(result) => {
                let r = shared.renderer(Local {
                    result: Some(result.clone()),
                    ..local.clone()
                });
                match until.eval(&r, "wait.until") {
                    Ok(true) => {
                        return Ok(Done::ok(
                            result,
                            format!("condition met after {polls} polls"),
                        ));
                    }
                    Ok(false) => last = format!("`{}` was false", until.src()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(StepError::Cancelled { .. }) => return Err(StepError::Cancelled { result: None }),
            Err(e) => last = e.to_string(),
        }
        if started.elapsed() + skipped + interval > deadline {
            return Err(StepError::failed(
                format!(
                    "`{}` not met after {} ({polls} polls); last: {last}",
                    until.src(),
                    fmt_dur(deadline)
                ),
                None,
            ));
        }
        let pause = shared
            .opts
            .stand_ins
            .as_ref()
            .map_or(interval, |p| p.0.pause(interval));
        skipped += interval.saturating_sub(pause);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Err(StepError::Cancelled { result: None }),
        }
    }
}

fn report(
    shared: &Shared,
    template: Option<&str>,
    inline: Option<&str>,
    to: &str,
    local: &Local,
) -> Result<Done, StepError> {
    let text = match (template, inline) {
        (Some(t), _) => {
            let base = shared
                .checked
                .runbook
                .path
                .parent()
                .unwrap_or(std::path::Path::new("."));
            let path = base.join(t);
            cairn_model::source::read(&path)
                .map_err(|e| StepError::setup(format!("report template: {e}")))?
        }
        (None, Some(i)) => i.to_string(),
        (None, None) => String::new(),
    };
    let ctx = crate::context::context(&shared.base, local.clone());
    let rendered = shared
        .templates
        .render_text(&text, &ctx)
        .map_err(|e| StepError::failed(format!("report template: {e}"), None))?;
    let path = match &shared.opts.reports_under {
        Some(dir) => dir.join(
            std::path::Path::new(to)
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect::<PathBuf>(),
        ),
        None => PathBuf::from(to),
    };
    if shared.opts.reports_under.is_some()
        && let Some(parent) = path.parent()
    {
        let _ = std::fs::create_dir_all(parent);
    }
    let bytes = shared
        .door
        .write_file(&path, &rendered)
        .map_err(|e| StepError::setup(format!("cannot write {}: {e}", path.display())))?;
    Ok(Done::ok(
        serde_json::json!({ "path": to, "bytes": bytes }),
        format!("wrote {to}"),
    ))
}

/// Apply `expect` (the step's, or the http step's own); an http step without any expects
/// status < 400.
pub(crate) fn expect(
    shared: &Shared,
    step: &Step,
    local: &Local,
    result: &Json,
) -> Result<(), String> {
    let own = step.expect.as_ref();
    let http = match &step.kind {
        StepKind::Http(h) => Some(h.expect.as_ref()),
        _ => None,
    };
    let exp = own.or(http.flatten());
    if exp.is_none() && http.is_some() {
        let status = result["status"].as_u64().unwrap_or(0);
        if status >= 400 || status == 0 {
            return Err(format!(
                "HTTP {status} (expected a status below 400; set `expect: {{ status: ... }}` to accept it)"
            ));
        }
        return Ok(());
    }
    let Some(exp) = exp else { return Ok(()) };
    let r = shared.renderer(local.clone());
    match exp {
        Expect::Exprs(xs) => {
            for x in xs {
                match r.expr(x, "expect") {
                    Ok(v) if v.is_true() => {}
                    Ok(_) => return Err(format!("expectation failed: `{}`", x.src.trim())),
                    Err(e) => return Err(format!("expectation `{}`: {e}", x.src.trim())),
                }
            }
        }
        Expect::Fields(fields) => {
            for (path, want) in fields {
                let want = r
                    .value(&want.value, &format!("expect.{path}"))
                    .map_err(|e| e.to_string())?;
                let got = lookup(result, path);
                let ok = match &want {
                    Json::Array(any) => any.iter().any(|w| same(w, &got)),
                    w => same(w, &got),
                };
                if !ok {
                    return Err(format!(
                        "expectation failed: {path}: expected {}, got {}",
                        want, got
                    ));
                }
            }
        }
    }
    Ok(())
}

fn lookup(v: &Json, path: &str) -> Json {
    let mut cur = v;
    for part in path.split('.') {
        cur = match (cur, part.parse::<usize>()) {
            (Json::Array(a), Ok(i)) => a.get(i).unwrap_or(&Json::Null),
            (Json::Object(o), _) => o.get(part).unwrap_or(&Json::Null),
            _ => &Json::Null,
        };
    }
    cur.clone()
}

/// Equality where 200 == 200.0 and "200" == 200 (result fields are often text).
fn same(want: &Json, got: &Json) -> bool {
    match (as_number(want), as_number(got)) {
        (Some(a), Some(b)) if !matches!(want, Json::Bool(_)) && !matches!(got, Json::Bool(_)) => {
            a == b
        }
        _ => want == got,
    }
}
