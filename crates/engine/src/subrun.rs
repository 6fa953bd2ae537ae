//! `uses`: another runbook run as a sub-run, with `with:` as its inputs and its `outputs` as
//! this step's result. Its events appear under `parent_step/child_step`.

use crate::context::Local;
use crate::events::{Event, RunOutcome, Sink};
use crate::options::RunOptions;
use crate::outcome::Done;
use crate::plan::Invocation;
use crate::reclaim::{Resumed, resume_with};
use crate::shared::{Shared, SubRuns};
use cairn_model::Step;
use cairn_state::RunStatus;
use cairn_steps::StepError;
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct Prefixed {
    prefix: String,
    inner: Arc<dyn Sink>,
}

impl Sink for Prefixed {
    fn emit(&self, event: &Event) {
        let mut e = event.clone();
        match &mut e {
            Event::StepStarted { step, .. }
            | Event::StepRetrying { step, .. }
            | Event::StepFinished { step, .. }
            | Event::ApprovalWaiting { step, .. }
            | Event::ApprovalNote { step, .. }
            | Event::ApprovalAnswered { step, .. } => *step = format!("{}/{step}", self.prefix),
            // The parent reports its own start and end.
            Event::RunStarted { .. } | Event::RunFinished { .. } => return,
        }
        self.inner.emit(&e);
    }
}

/// The engine's [`SubRuns`]: a child run started with [`crate::start::start`] or continued
/// with [`crate::reclaim::resume_with`], itself given this port for its own `uses` steps.
pub(crate) struct Children;

impl SubRuns for Children {
    fn uses<'a>(
        &'a self,
        shared: &'a Arc<Shared>,
        step: &'a Step,
        runbook: &'a str,
        with: &'a IndexMap<String, Json>,
        local: &'a Local,
        cancel: &'a CancellationToken,
    ) -> futures::future::BoxFuture<'a, Result<Done, StepError>> {
        Box::pin(uses_inner(shared, step, runbook, with, local, cancel))
    }
}

/// The runbooks from the top-level run down to the one `path` names, checked again at run
/// time (validation follows the same chain, but a file may change under a running run): a
/// runbook already on the chain, or a chain deeper than [`cairn_model::MAX_USES_DEPTH`], is
/// refused with the chain spelled out.
fn uses_chain(shared: &Shared, path: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    use cairn_model::uses::file_key;
    let mut chain = shared.opts.uses_chain.clone();
    if chain.is_empty() {
        chain.push(file_key(&shared.checked.runbook.path));
    }
    let child = file_key(path);
    let spelled = |chain: &[PathBuf]| {
        chain
            .iter()
            .chain([&child])
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" -> ")
    };
    if chain.contains(&child) {
        return Err(format!("`uses` cycle: {}", spelled(&chain)));
    }
    if chain.len() >= cairn_model::MAX_USES_DEPTH {
        return Err(format!(
            "`uses` nested deeper than {} runbooks: {}",
            cairn_model::MAX_USES_DEPTH,
            spelled(&chain)
        ));
    }
    chain.push(child);
    Ok(chain)
}

/// A sub-runbook that does not load: its first error, located, not only "is not valid".
fn load_error(e: &cairn_model::LoadError) -> String {
    match e {
        cairn_model::LoadError::Invalid {
            path, diagnostics, ..
        } => match diagnostics.errors().next() {
            Some(d) => format!("{path}:{}:{}: {}", d.span.line, d.span.col, d.message),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

/// Which sub-run belongs to this step (or this `for_each` item of it): each has its own.
fn parent_step(step: &Step, local: &Local) -> String {
    match &local.item {
        Some((_, k)) => format!("{}[{k}]", step.id.value),
        None => step.id.value.clone(),
    }
}

async fn uses_inner(
    shared: &Arc<Shared>,
    step: &Step,
    runbook: &str,
    with: &IndexMap<String, Json>,
    local: &Local,
    cancel: &CancellationToken,
) -> Result<Done, StepError> {
    let key = parent_step(step, local);
    let base = shared
        .checked
        .runbook
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let path = base.join(runbook);
    let chain = uses_chain(shared, &path).map_err(StepError::setup)?;
    let (checked, _) = cairn_model::load(&path, &shared.templates)
        .map_err(|e| StepError::setup(format!("`uses: {runbook}`: {}", load_error(&e))))?;
    let inv = Invocation {
        sets: Vec::new(),
        inputs_file: Some(with.clone().into_iter().collect()),
    };
    // A value rendered from a secret makes the child's input a secret; and whatever the child
    // writes is masked for this run's secrets too.
    let secret_inputs = with
        .iter()
        .filter(|(_, v)| shared.door.holds_secret(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opts = RunOptions {
        parent_run: Some(shared.run_id.clone()),
        parent_attempt: Some(shared.claim.attempt),
        parent_step: Some(key.clone()),
        uses_chain: chain,
        cancel: cancel.child_token(),
        inherited: shared.door.masker().clone(),
        secret_inputs,
        run_id: None,
        ..shared.opts.clone()
    };
    // A test's fixtures for the sub-runbook reach the child run.
    if let Some(child) = shared.opts.stand_ins.as_ref().and_then(|p| p.0.child(&key)) {
        opts.stand_ins = Some(child.stand_ins);
        if let Some(actions) = child.actions {
            opts.actions = Some(actions);
        }
    }
    let sink: Arc<dyn Sink> = Arc::new(Prefixed {
        prefix: step.id.value.clone(),
        inner: shared.sink.clone(),
    });
    // A child started by an earlier attempt of this run for this step (or item) is continued,
    // not started again: a paused child resumes after its approval, a failed one from where it
    // failed. Another item's child is never taken for this one, nor one started with other
    // inputs: when a step above re-ran and gave this step new values, the old child's work (and
    // its outputs) belong to the old values, and a new child runs with the new ones. Inputs are
    // compared as stored, masked by the same door.
    let inputs_now = crate::inputs::resolve(&checked.runbook, &[], inv.inputs_file.as_ref())
        .ok()
        .and_then(|i| serde_json::to_value(&i).ok())
        .map(|i| shared.door.json(&i));
    let earlier = shared
        .store
        .sub_runs(&shared.run_id)
        .await
        .map_err(|e| StepError::setup(format!("`uses: {runbook}`: state store: {e}")))?
        .into_iter()
        .rev()
        .find(|r| r.parent_step.as_deref() == Some(key.as_str()))
        .filter(|r| inputs_now.as_ref() == Some(&r.inputs));
    let report = match earlier {
        Some(r) if r.status == RunStatus::Succeeded => {
            let outputs = r.outputs.clone().unwrap_or(Json::Null);
            return Ok(Done {
                result: outputs,
                note: Some(format!("sub-run {} succeeded earlier", r.id)),
                ..Done::default()
            });
        }
        Some(r) => {
            let resumed = resume_with(
                &r.id,
                shared.templates.clone(),
                shared.store.clone(),
                sink,
                opts,
                &Default::default(),
                Arc::new(Children),
            )
            .await
            .map_err(|e| {
                StepError::setup(format!("`uses: {runbook}`: resuming sub-run {}: {e}", r.id))
            })?;
            match resumed {
                Resumed::Ran(report) => report,
                Resumed::AlreadyDone { run_id } => {
                    return Ok(Done {
                        result: r.outputs.clone().unwrap_or(Json::Null),
                        note: Some(format!("sub-run {run_id} succeeded earlier")),
                        ..Done::default()
                    });
                }
            }
        }
        None => crate::start::start(
            Arc::new(checked),
            shared.templates.clone(),
            &inv,
            shared.store.clone(),
            sink,
            opts,
            Arc::new(Children),
        )
        .await
        .map_err(|e| StepError::setup(format!("`uses: {runbook}`: {e}")))?,
    };
    let result = serde_json::json!({ "run_id": report.run_id, "outcome": report.outcome.as_str(), "outputs": report.outputs });
    match report.outcome {
        RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings => Ok(Done {
            result: report.outputs.clone(),
            note: Some(format!(
                "sub-run {} {}",
                report.run_id,
                report.outcome.as_str().replace('_', " ")
            )),
            ..Done::default()
        }),
        RunOutcome::Paused => Ok(Done {
            result,
            waiting: true,
            ..Done::default()
        }),
        RunOutcome::Interrupted => Err(StepError::Cancelled {
            result: Some(result),
        }),
        // A "no" in the sub-run is this step's "no": never retried, nothing below it runs.
        RunOutcome::Failed if report.declined.is_some() => {
            let why = report.declined.clone().unwrap_or_default();
            let mut result = result;
            result["declined"] = Json::Bool(true);
            Ok(Done {
                failure: Some(format!("sub-run {}: {why}", report.run_id)),
                declined: Some(cairn_model::OnReject::Fail),
                result,
                ..Done::default()
            })
        }
        RunOutcome::Failed => {
            let why = report
                .steps
                .iter()
                .find(|s| s.error.is_some())
                .map(|s| format!("step `{}`: {}", s.id, s.error.clone().unwrap_or_default()))
                .unwrap_or_default();
            Err(StepError::failed(
                format!("sub-run {} failed: {why}", report.run_id),
                Some(result),
            ))
        }
    }
}
