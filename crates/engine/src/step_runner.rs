//! One step: `when`, a step lock, the action once or per `for_each` item with retries, and the
//! checkpoints and events around each attempt.

use crate::builtin;
use crate::context::{Local, StepView, Timing};
use crate::events::{Event, Status};
use crate::outcome::{Hold, LOCK_LEASE, Outcome};
use crate::prepare::Prepared;
use crate::shared::Shared;
use cairn_model::{Step, TValue};
use cairn_state::{LockHolder, StepRecord, StepStatus};
use cairn_steps::StepError;
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One step: `when`, then the action once or per `for_each` item; checkpoints and events.
pub(crate) async fn run_step(shared: Arc<Shared>, i: usize, cancel: CancellationToken) -> Outcome {
    let step = shared.step(i);
    let id = step.id.value.clone();
    let key = format!("{}:{id}", shared.run_id);
    let local = Local {
        step_key: Some(key.clone()),
        ..Local::default()
    };
    let action = shared.action(i);
    let clock = Instant::now();
    if let Some(w) = &action.when {
        match w.eval(&shared.renderer(local.clone()), "when") {
            Ok(false) => {
                let o = Outcome::skipped(format!("when {} is false", w.src().trim()));
                return conclude(&shared, i, o).await;
            }
            Ok(true) => {}
            Err(e) => {
                let o = Outcome {
                    status: Status::Failed,
                    error: Some(e.to_string()),
                    ..Outcome::skipped("")
                };
                return conclude(&shared, i, o).await;
            }
        }
    }
    // A step `lock:` is held while the step runs; another run holding it fails the step at once.
    let _held = match &step.lock {
        None => None,
        Some(name) => match lock_step(&shared, &name.value).await {
            Ok(guard) => Some(guard),
            Err(msg) => {
                let o = Outcome {
                    status: Status::Failed,
                    error: Some(msg),
                    ..Outcome::skipped("")
                };
                return conclude(&shared, i, o).await;
            }
        },
    };
    let mut o = match &step.for_each {
        None => run_unit(&shared, i, None, local, &cancel).await,
        Some(fe) => match items(&shared, &fe.value, &local) {
            Ok(items) if !items.is_empty() => {
                let mut rec = StepRecord::new(&shared.run_id, &id, None, &shared.def_hashes[i]);
                rec.status = StepStatus::Running;
                rec.attempt = 1;
                rec.idempotent = action.idempotent;
                rec.started_at = Some(cairn_state::now());
                // The item list is kept with the step while it runs, so that a resume after a
                // crash can tell which finished items are still the same items.
                let listed: Vec<Json> = items
                    .iter()
                    .enumerate()
                    .map(|(k, item)| serde_json::json!({ "index": k, "item": item }))
                    .collect();
                rec.result = Some(serde_json::json!({ "items": listed }));
                shared.checkpoint(&rec).await;
                fan_out(&shared, i, items, &key, &cancel).await
            }
            Err(e) => Outcome {
                status: Status::Failed,
                error: Some(e),
                ..Outcome::skipped("")
            },
            Ok(items) => fan_out(&shared, i, items, &key, &cancel).await,
        },
    };
    o.duration = clock.elapsed();
    let run_lock = shared
        .checked
        .runbook
        .lock
        .as_ref()
        .map(|l| l.value.as_str());
    if let (Some(name), Some(_)) = (&step.lock, &_held)
        && run_lock != Some(name.value.as_str())
        && let Err(e) = shared.store.release_lock(&name.value, &shared.claim).await
    {
        tracing::warn!(lock = %name.value, error = %e, "cannot release step lock");
    }
    conclude(&shared, i, o).await
}

/// Commit a step's end and make it readable as `steps.ID` (skipped and failed steps too, so
/// `steps.X.status` works in what follows and in `finally`).
pub(crate) async fn conclude(shared: &Shared, i: usize, o: Outcome) -> Outcome {
    finish(shared, i, None, &o).await;
    define(shared, i, &o);
    o
}

pub(crate) fn define(shared: &Shared, i: usize, o: &Outcome) {
    let outputs = if o.outputs.is_null() {
        Json::Object(Default::default())
    } else {
        o.outputs.clone()
    };
    // A step that never started (skipped, or left below a failure) has no timing.
    let timing = if o.attempts == 0 {
        Timing::default()
    } else {
        let now = cairn_state::now();
        Timing {
            started_at: chrono::Duration::from_std(o.duration).ok().map(|d| now - d),
            finished_at: Some(now),
        }
    };
    shared.base.steps.set(
        &shared.step(i).id.value,
        &StepView {
            status: o.status.as_str().into(),
            result: o.result.clone(),
            outputs,
            // A skipped step's note says why it did not run (`not run: `x` failed`).
            error: o.error.clone().or_else(|| {
                (o.status == Status::Skipped)
                    .then(|| o.note.clone())
                    .flatten()
            }),
            timing,
        },
    );
}

/// Take a step lock: first among this run's steps, then in the store against other runs.
async fn lock_step(
    shared: &Shared,
    name: &str,
) -> Result<tokio::sync::OwnedMutexGuard<()>, String> {
    let local = {
        let mut map = shared
            .step_locks
            .lock()
            .map_err(|_| "step lock table poisoned".to_string())?;
        map.entry(name.to_string()).or_default().clone()
    };
    // Waiting here for a parallel step of this run must not hold back ends already recorded.
    shared.flush().await;
    let guard = local.lock_owned().await;
    // The runbook's own lock is already held for the whole run.
    if shared
        .checked
        .runbook
        .lock
        .as_ref()
        .is_some_and(|l| l.value == name)
    {
        return Ok(guard);
    }
    match shared
        .store
        .try_lock(name, &LockHolder::this_process(&shared.run_id), LOCK_LEASE)
        .await
    {
        Ok(Ok(())) => Ok(guard),
        Ok(Err(holder)) => Err(format!("{holder}; the step was not run")),
        Err(e) => Err(format!("cannot take lock `{name}`: {e}")),
    }
}

fn items(shared: &Shared, fe: &TValue, local: &Local) -> Result<Vec<Json>, String> {
    match shared.renderer(local.clone()).value(fe, "for_each") {
        Ok(Json::Array(items)) => Ok(items),
        Ok(other) => Err(format!("for_each: expected a list, got {other}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn fan_out(
    shared: &Arc<Shared>,
    i: usize,
    items: Vec<Json>,
    key: &str,
    cancel: &CancellationToken,
) -> Outcome {
    use futures::StreamExt;
    let step = shared.step(i);
    let width = shared.action(i).concurrency;
    let results: Vec<(usize, Json, Outcome)> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(k, item)| {
            let local = Local {
                item: Some((item.clone(), k)),
                step_key: Some(format!("{key}:{k}")),
                ..Local::default()
            };
            async move {
                // Not started when the run was cancelled: nothing is written for it. Resume
                // runs every item without a `succeeded` record, so its absence says "not
                // started", and a stop does not cost a write per item (minutes for 100,000).
                if cancel.is_cancelled() {
                    let o = Outcome {
                        status: Status::Cancelled,
                        note: Some("not started".into()),
                        ..Outcome::skipped("")
                    };
                    return (k, item, o);
                }
                // Done in an earlier attempt (same position, same value): restored, not run.
                if let Some(rec) = shared
                    .earlier_items
                    .get(&i)
                    .and_then(|e| e.done(k, &shared.door.json(&item)))
                {
                    let o = Outcome::restored(
                        Status::Succeeded,
                        rec.result.clone().unwrap_or(Json::Null),
                        rec.outputs.clone().unwrap_or(Json::Null),
                        None,
                    );
                    return (k, item, o);
                }
                (k, item, run_unit(shared, i, Some(k), local, cancel).await)
            }
        })
        .buffer_unordered(width)
        .collect()
        .await;
    let mut results = results;
    results.sort_by_key(|(k, _, _)| *k);
    let mut outputs: IndexMap<String, Vec<Json>> = step
        .outputs
        .keys()
        .map(|k| (k.clone(), Vec::new()))
        .collect();
    let mut list = Vec::new();
    let mut failed = Vec::new();
    let mut attempts = 0;
    for (k, item, o) in &results {
        attempts = attempts.max(o.attempts);
        for (name, values) in outputs.iter_mut() {
            values.push(o.outputs.get(name).cloned().unwrap_or(Json::Null));
        }
        if o.status == Status::Failed {
            failed.push(format!("[{k}] {}", o.error.clone().unwrap_or_default()));
        }
        list.push(serde_json::json!({ "index": k, "item": item, "status": o.status, "result": o.result, "outputs": o.outputs, "error": o.error }));
    }
    // An item that waits (its sub-run paused on an approval) leaves the step undecided: it
    // waits too, and the run pauses, whatever the other items did.
    let waits = results.iter().any(|(_, _, o)| o.status == Status::Waiting);
    let status = if cancel.is_cancelled() {
        Status::Cancelled
    } else if waits {
        Status::Waiting
    } else if failed.is_empty() {
        Status::Succeeded
    } else {
        Status::Failed
    };
    Outcome {
        status,
        result: serde_json::json!({ "items": list }),
        outputs: serde_json::to_value(outputs).unwrap_or_default(),
        error: (!failed.is_empty()).then(|| {
            format!(
                "{} of {} items failed: {}",
                failed.len(),
                results.len(),
                failed.join("; ")
            )
        }),
        attempts,
        duration: Duration::ZERO,
        note: Some(format!("{} items", results.len())),
        state: None,
        hold: Hold::No,
    }
}

/// The action of a step (or one item) with its retries.
async fn run_unit(
    shared: &Arc<Shared>,
    i: usize,
    item: Option<usize>,
    local: Local,
    cancel: &CancellationToken,
) -> Outcome {
    let step = shared.step(i);
    let action = shared.action(i);
    let attempts = action.retry.attempts;
    let clock = Instant::now();
    let mut rec = StepRecord::new(
        &shared.run_id,
        &step.id.value,
        item.map(|k| k as u32),
        &shared.def_hashes[i],
    );
    rec.idempotent = action.idempotent;
    let mut last = Outcome::skipped("");
    for attempt in 1..=attempts {
        rec.status = StepStatus::Running;
        rec.attempt = attempt;
        rec.started_at = Some(cairn_state::now());
        rec.finished_at = None;
        rec.error = None;
        rec.result = None;
        // `running` is committed before the action starts; without that record the action
        // does not start at all.
        if !shared.checkpoint(&rec).await {
            last = Outcome {
                status: Status::Cancelled,
                error: shared.store_error(),
                attempts: attempt,
                ..Outcome::skipped("")
            };
            break;
        }
        let r = shared.renderer(local.clone());
        // A templated `timeout` is rendered with the step's other templates, for this attempt.
        let (prepared, timeout) = match r.prepare(step).and_then(|p| {
            Ok((
                p,
                r.timeout(action.timeout, action.timeout_template.as_ref())?,
            ))
        }) {
            Ok(ready) => ready,
            Err(e) => {
                last = Outcome {
                    status: Status::Failed,
                    error: Some(e.to_string()),
                    attempts: attempt,
                    ..Outcome::skipped("")
                };
                break;
            }
        };
        shared.sink.emit(&Event::StepStarted {
            step: step.id.value.clone(),
            item,
            attempt,
            what: builtin::describe(&prepared),
        });
        let log = log_path(shared, &step.id.value, item);
        let res = builtin::perform(
            shared,
            step,
            &prepared,
            &local,
            attempt,
            timeout,
            cancel,
            log.clone(),
        )
        .await;
        last = settle(shared, step, &local, res, attempt);
        // A threshold verdict or a human "no" (here or in a sub-run) is an answer, not a
        // transient failure.
        let verdict = matches!(prepared, Prepared::Check { .. } | Prepared::Approval { .. })
            || last.hold == Hold::Declined;
        if last.status == Status::Succeeded
            || last.status == Status::Waiting
            || cancel.is_cancelled()
            || attempt == attempts
            || verdict
        {
            rec.log_path = log.filter(|p| p.exists()).map(|p| p.display().to_string());
            break;
        }
        let delay = action.retry.delay_after(attempt);
        shared.sink.emit(&Event::StepRetrying {
            step: step.id.value.clone(),
            item,
            attempt,
            delay,
            error: last.error.clone().unwrap_or_default(),
        });
        rec.status = StepStatus::Failed;
        rec.error = last.error.clone();
        rec.result = Some(last.result.clone());
        rec.finished_at = Some(cairn_state::now());
        shared.checkpoint(&rec).await;
        let delay = shared
            .opts
            .stand_ins
            .as_ref()
            .map_or(delay, |p| p.0.pause(delay));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => break,
        }
    }
    last.attempts = last.attempts.max(rec.attempt);
    last.duration = clock.elapsed();
    if item.is_some() {
        finish(shared, i, item, &last).await;
    }
    last
}

fn log_path(shared: &Shared, step: &str, item: Option<usize>) -> Option<PathBuf> {
    let name = match item {
        Some(k) => format!("{step}.{k}.log"),
        None => format!("{step}.log"),
    };
    Some(shared.opts.logs.join(&shared.run_id).join(name))
}

/// Turn an action's result into the step's outcome: expectations, outputs. (Masking is the
/// door's: the store and the sink mask what they are given.)
fn settle(
    shared: &Shared,
    step: &Step,
    local: &Local,
    res: Result<crate::outcome::Done, StepError>,
    attempt: u32,
) -> Outcome {
    match res {
        Ok(done) => {
            let result = done.result;
            if done.waiting {
                return Outcome {
                    status: Status::Waiting,
                    result,
                    note: Some("waiting for approval".into()),
                    attempts: attempt,
                    ..Outcome::skipped("")
                };
            }
            let with_result = Local {
                result: Some(result.clone()),
                ..local.clone()
            };
            if let Err(e) = builtin::expect(shared, step, &with_result, &result) {
                return Outcome {
                    status: Status::Failed,
                    error: Some(e),
                    result,
                    attempts: attempt,
                    note: done.note,
                    ..Outcome::skipped("")
                };
            }
            let r = shared.renderer(with_result);
            let mut outputs = serde_json::Map::new();
            for (k, v) in &step.outputs {
                match r.value(&v.value, &format!("outputs.{k}")) {
                    Ok(v) => {
                        outputs.insert(k.clone(), v);
                    }
                    Err(e) => {
                        return Outcome {
                            status: Status::Failed,
                            error: Some(e.to_string()),
                            result,
                            attempts: attempt,
                            ..Outcome::skipped("")
                        };
                    }
                }
            }
            // A "no": failed (`on_reject: fail`) or skipped (`skip`), and either way held, so
            // that nothing below it runs.
            if let Some(on_reject) = done.declined {
                let why = done.failure.unwrap_or_default();
                let skip = on_reject == cairn_model::OnReject::Skip;
                return Outcome {
                    status: if skip {
                        Status::Skipped
                    } else {
                        Status::Failed
                    },
                    note: Some(if skip {
                        format!("declined: {why}")
                    } else {
                        why.clone()
                    }),
                    error: (!skip).then_some(why),
                    result,
                    attempts: attempt,
                    hold: Hold::Declined,
                    ..Outcome::skipped("")
                };
            }
            if let Some(fail) = done.failure {
                return Outcome {
                    status: Status::Failed,
                    error: Some(fail),
                    result,
                    outputs: Json::Object(outputs),
                    attempts: attempt,
                    note: done.note,
                    state: done.state,
                    duration: Duration::ZERO,
                    hold: Hold::No,
                };
            }
            Outcome {
                status: Status::Succeeded,
                result,
                outputs: Json::Object(outputs),
                error: None,
                attempts: attempt,
                duration: Duration::ZERO,
                note: done.note,
                state: done.state,
                hold: Hold::No,
            }
        }
        Err(e) => {
            let result = e.result().cloned().unwrap_or(Json::Null);
            let status = if matches!(e, StepError::Cancelled { .. }) {
                Status::Cancelled
            } else {
                Status::Failed
            };
            Outcome {
                status,
                error: Some(e.to_string()),
                result,
                attempts: attempt,
                ..Outcome::skipped("")
            }
        }
    }
}

/// Commit a step's (or item's) final state, then tell the sink. A whole step's end is
/// committed with the next checkpoint (see [`Shared::end`]); an item's at once.
async fn finish(shared: &Shared, i: usize, item: Option<usize>, o: &Outcome) {
    let step = shared.step(i);
    let mut rec = StepRecord::new(
        &shared.run_id,
        &step.id.value,
        item.map(|k| k as u32),
        &shared.def_hashes[i],
    );
    rec.status = o.status;
    rec.attempt = o.attempts;
    let now = cairn_state::now();
    rec.finished_at = Some(now);
    rec.started_at = chrono::Duration::from_std(o.duration).ok().map(|d| now - d);
    rec.result = Some(o.result.clone());
    rec.outputs = Some(o.outputs.clone());
    rec.error = o.error.clone();
    rec.idempotent = shared.action(i).idempotent;
    if let Some(log) = log_path(shared, &step.id.value, item).filter(|p| p.exists()) {
        rec.log_path = Some(log.display().to_string());
    }
    let mut events = Vec::new();
    if o.status == Status::Waiting
        && let Some(message) = o.result.get("message").and_then(Json::as_str)
        && matches!(step.kind, cairn_model::StepKind::Approval(_))
    {
        events.push(Event::ApprovalWaiting {
            step: step.id.value.clone(),
            message: message.to_string(),
            run_id: shared.run_id.clone(),
            rules: crate::gate::Rules::from_result(&o.result)
                .map(|r| r.describe())
                .unwrap_or_default(),
            prompt: false,
        });
    }
    events.push(Event::StepFinished {
        step: step.id.value.clone(),
        item,
        status: o.status,
        attempts: o.attempts,
        duration: o.duration,
        error: o.error.clone(),
        note: o.note.clone(),
    });
    if item.is_none() {
        shared.end(rec, events).await;
    } else {
        shared.checkpoint(&rec).await;
        events.iter().for_each(|e| shared.sink.emit(e));
    }
}
