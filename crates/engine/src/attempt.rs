//! The attempt driver: one attempt of a run (its first, or a resume's), from the run's start
//! event through the DAG walk and `finally` to the recorded end and the report.

use crate::action::StepAction;
use crate::context::Local;
use crate::events::{Event, RtoVerdict, RunOutcome, Sink, Status, StepSummary};
use crate::exec::Peers;
use crate::options::RunOptions;
use crate::outcome::{Outcome, RunError, RunReport};
use crate::shared::{Setup, Shared, fails_run};
use cairn_model::{Checked, Step};
use cairn_state::{RunRecord, RunStatus, Store};
use cairn_template::Templates;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Run the DAG (skipping steps whose outcome is already known), then `finally`, then record
/// the end of the attempt.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive(
    checked: Arc<Checked>,
    templates: Arc<Templates>,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    opts: RunOptions,
    mut record: RunRecord,
    setup: Setup,
    defs: &[cairn_state::StepDef],
    mut outcomes: Vec<Option<Outcome>>,
) -> Result<RunReport, RunError> {
    let rb = &checked.runbook;
    let run_id = record.id.clone();
    let all: Vec<&Step> = checked.all_steps().collect();
    sink.emit(&Event::RunStarted {
        run_id: run_id.clone(),
        runbook: rb.name.value.clone(),
        steps: all.len(),
        dry_run: false,
    });
    for e in &setup.answered {
        sink.emit(e);
    }
    let shared = Arc::new(Shared {
        def_hashes: defs.iter().map(|d| d.def_hash.clone()).collect(),
        steps: StepAction::all(&checked),
        checked: checked.clone(),
        templates,
        base: setup.base,
        targets: setup.targets,
        earlier_items: setup.earlier_items,
        prior_answers: setup.prior_answers,
        waits_since: setup.waits_since,
        starter: record.user.clone(),
        actions: match &opts.actions {
            Some(port) => port.0.clone(),
            None => Arc::new(Peers::default()),
        },
        subruns: setup.subruns,
        step_locks: Default::default(),
        store_error: Default::default(),
        ends: Default::default(),
        door: setup.door,
        store: store.clone(),
        sink: sink.clone(),
        opts,
        run_id: run_id.clone(),
        claim: record.claim(),
    });
    // Stopped between beats, never during one: aborting the task in the middle of a
    // heartbeat's transaction could hand its pooled connection back still inside it (a
    // worker's later statements on that connection then never commit). The first beat is one
    // period in: the run's record was just written or claimed.
    let stop_beating = CancellationToken::new();
    let heartbeat = {
        let shared = shared.clone();
        let stop_beating = stop_beating.clone();
        tokio::spawn(async move {
            let every = cairn_state::HEARTBEAT_EVERY;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop_beating.cancelled() => break,
                }
                match shared.store.heartbeat(&shared.claim).await {
                    // Another process claimed the run: stop at once rather than at the next
                    // checkpoint, which a long step may not reach for a while.
                    // Or its SQLite file was deleted or replaced: nothing more can be recorded.
                    Err(
                        e @ (cairn_state::StateError::Fenced { .. }
                        | cairn_state::StateError::FileReplaced { .. }),
                    ) => {
                        tracing::error!(run = %shared.run_id, error = %e, "heartbeat refused");
                        shared.stop(e.to_string());
                        break;
                    }
                    Err(e) => tracing::warn!(run = %shared.run_id, error = %e, "heartbeat failed"),
                    Ok(()) => {}
                }
            }
        })
    };
    let clock = Instant::now();
    let paused = crate::schedule::run_dag(&shared, &mut outcomes).await;
    let interrupted = shared.opts.cancel.is_cancelled();
    if !paused {
        // finally: always, in written order, even after Ctrl-C (with a fresh token).
        let main = rb.steps.len();
        for k in 0..rb.finally.len() {
            let i = main + k;
            let o = match crate::finally::held_back(&shared, i, interrupted, &outcomes) {
                Some(why) => crate::step_runner::conclude(&shared, i, Outcome::skipped(why)).await,
                None => {
                    crate::step_runner::run_step(shared.clone(), i, CancellationToken::new()).await
                }
            };
            outcomes[i] = Some(o);
        }
    }
    // The last ends, before the run's own.
    shared.flush().await;
    let failed = outcomes
        .iter()
        .enumerate()
        .any(|(i, o)| o.as_ref().is_some_and(|o| fails_run(&shared, i, o)));
    let outcome = if shared.store_error().is_some() {
        RunOutcome::Failed
    } else if interrupted {
        RunOutcome::Interrupted
    } else if paused {
        RunOutcome::Paused
    } else if failed {
        RunOutcome::Failed
    } else {
        RunOutcome::Succeeded
    };
    // Derived from what was recorded (steps restored from earlier attempts included), the same
    // way `cairn runs`, `cairn show` and the reports derive it.
    // Only a check records a warning: a first attempt of a runbook without one has nothing
    // to read back (a resumed run may hold records of steps an edit removed, so it reads).
    let may_warn = record.attempt > 1
        || all
            .iter()
            .any(|s| matches!(s.kind, cairn_model::StepKind::Check(_)));
    let warnings = if outcome == RunOutcome::Succeeded && may_warn {
        let kinds: std::collections::HashMap<&str, &'static str> = all
            .iter()
            .map(|s| (s.id.value.as_str(), s.kind.name()))
            .collect();
        let recorded = store.steps(&run_id).await?;
        crate::warnings::check_warnings(&recorded, |id| kinds.get(id).copied())
    } else {
        Vec::new()
    };
    let outcome = if warnings.is_empty() {
        outcome
    } else {
        RunOutcome::SucceededWithWarnings
    };
    let outputs = if paused || interrupted {
        Json::Null
    } else {
        run_outputs(&shared)
    };
    let steps: Vec<StepSummary> = all
        .iter()
        .zip(&outcomes)
        .map(|(s, o)| {
            // A step the run never reached: pending, or cancelled by the interruption.
            let unreached;
            let o = match o {
                Some(o) => o,
                None => {
                    unreached = Outcome {
                        status: if interrupted {
                            Status::Cancelled
                        } else {
                            Status::Pending
                        },
                        ..Outcome::skipped("")
                    };
                    &unreached
                }
            };
            // The summary takes what it shows, never a copy of the step's result.
            StepSummary {
                id: s.id.value.clone(),
                kind: s.kind.name(),
                status: o.status,
                attempts: o.attempts,
                duration: o.duration,
                // A step blocked by a failed dependency is not itself in error: its note says why.
                error: o.error.clone(),
                state: o.state.clone(),
                note: o.note.clone(),
            }
        })
        .collect();
    stop_beating.cancel();
    let _ = heartbeat.await;
    record.status = match outcome {
        // Not stored apart: read back from the checks' recorded results.
        RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings => RunStatus::Succeeded,
        RunOutcome::Failed => RunStatus::Failed,
        RunOutcome::Paused => RunStatus::Paused,
        RunOutcome::Interrupted => RunStatus::Interrupted,
    };
    if outcome.succeeded() || outcome == RunOutcome::Failed {
        record.finished_at = Some(cairn_state::now());
    }
    record.outputs = Some(outputs.clone());
    // The run's error names the step that failed it (not one with `on_failure: continue`).
    record.error = shared.store_error().or_else(|| {
        all.iter()
            .enumerate()
            .zip(&steps)
            .find(|((i, _), _)| {
                outcomes[*i]
                    .as_ref()
                    .is_some_and(|o| fails_run(&shared, *i, o))
            })
            .and_then(|(_, s)| s.error.as_ref().map(|e| format!("step `{}`: {e}", s.id)))
    });
    match store.update_run(&record).await {
        Ok(()) if outcome != RunOutcome::Paused => store.release_locks(&shared.claim).await?,
        Ok(()) => {}
        // The store's file was deleted or replaced under the run, which the report already
        // says (the run stopped for it); that its end cannot be written either adds nothing.
        Err(e @ cairn_state::StateError::FileReplaced { .. }) if shared.store_error().is_some() => {
            tracing::error!(run = %run_id, error = %e, "the run's end could not be recorded");
        }
        Err(e) => return Err(e.into()),
    }
    shared.actions.close().await;
    let elapsed = clock.elapsed();
    // Recovery time counts from the run's first start, pauses and resumes included.
    let since_start = (cairn_state::now() - record.started_at)
        .to_std()
        .unwrap_or(elapsed);
    let rto = rb.rto.as_ref().map(|r| RtoVerdict {
        rto: r.value.0,
        elapsed: since_start,
        met: since_start <= r.value.0,
    });
    sink.emit(&Event::RunFinished {
        run_id: run_id.clone(),
        outcome,
        duration: elapsed,
        steps: steps.clone(),
        rto,
        warnings: warnings.clone(),
        outputs: outputs.clone(),
    });
    let declined = all.iter().zip(&outcomes).find_map(|(s, o)| {
        o.as_ref()
            .filter(|o| o.status == Status::Failed && crate::gate::is_declined(Some(&o.result)))
            .map(|o| format!("`{}` {}", s.id.value, o.error.clone().unwrap_or_default()))
    });
    Ok(RunReport {
        run_id,
        outcome,
        outputs,
        steps,
        warnings,
        store_error: shared.store_error(),
        declined,
    })
}

fn run_outputs(shared: &Shared) -> Json {
    let r = shared.renderer(Local::default());
    let mut out = serde_json::Map::new();
    for (k, v) in &shared.checked.runbook.outputs {
        // An output that cannot be rendered (its step did not run) is null, not an error text.
        let value = r
            .value(&v.value, &format!("outputs.{k}"))
            .unwrap_or_else(|e| {
                tracing::debug!(output = %k, error = %e, "run output not available");
                Json::Null
            });
        out.insert(k.clone(), value);
    }
    Json::Object(out)
}
