//! Starting a run: inputs, secrets, vars and targets, the run record and its lock, then the
//! first attempt ([`crate::attempt::drive`]).

use crate::attempt::drive;
use crate::events::Sink;
use crate::masking::{Door, run_masker};
use crate::options::RunOptions;
use crate::outcome::{LOCK_LEASE, RunError, RunReport};
use crate::plan::Invocation;
use crate::shared::{Setup, SubRuns, content_hash, step_defs};
use cairn_model::Checked;
use cairn_state::{LockHolder, RunRecord, RunStatus, Store};
use cairn_template::Templates;
use std::sync::Arc;

/// Run a checked runbook to its end (or pause, or interruption).
pub(crate) async fn start(
    checked: Arc<Checked>,
    templates: Arc<Templates>,
    inv: &Invocation,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    opts: RunOptions,
    subruns: Arc<dyn SubRuns>,
) -> Result<RunReport, RunError> {
    let rb = &checked.runbook;
    // Absolute, so `cairn resume` works from any folder; refused if it is not text.
    let canonical = std::fs::canonicalize(&rb.path).unwrap_or_else(|_| rb.path.clone());
    let Some(path) = canonical.to_str().map(str::to_string) else {
        return Err(RunError::PathNotUtf8(format!("{canonical:?}")));
    };
    // Secrets are read first so a missing one refuses the run before anything is recorded.
    let secrets = crate::secrets::read(rb).map_err(RunError::Secrets)?;
    let masker = run_masker(&secrets, &opts);
    // Until the targets are resolved, errors leave through a door that knows the secrets.
    let early = Door::new(masker.clone());
    let inputs = crate::inputs::resolve(rb, &inv.sets, inv.inputs_file.as_ref())
        .map_err(|e| early.run_error(RunError::Inputs(e)))?;
    let inputs_json = serde_json::to_value(&inputs).unwrap_or_default();
    let mut record = RunRecord::start(
        rb.name.value.clone(),
        path,
        content_hash(&checked),
        // Masked by the store's door.
        inputs_json.clone(),
        opts.user.clone(),
    );
    if let Some(id) = &opts.run_id {
        record.id = id.clone();
    }
    record.parent_run = opts.parent_run.clone();
    record.parent_attempt = opts.parent_attempt;
    record.parent_step = opts.parent_step.clone();
    // The runbook's own labels, whoever started it (a sub-run has its runbook's, not its
    // parent's): what the run history is filtered by and console roles are scoped by.
    record.labels = rb
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let defs = step_defs(&checked);
    let setup = Setup::new(
        &checked,
        &templates,
        &inputs_json,
        secrets,
        masker,
        &record,
        subruns,
    )
    .map_err(|e| early.run_error(e))?;
    let door = setup.door.clone();
    let store = door.store(store);
    let sink = door.sink(sink);
    let started = async {
        store.create_run(&record, &defs).await?;
        take_run_lock(&checked, &store, &mut record).await
    };
    started.await.map_err(|e| door.run_error(e))?;
    let outcomes = vec![None; defs.len()];
    drive(
        checked, templates, store, sink, opts, record, setup, &defs, outcomes,
    )
    .await
    .map(|r| door.report(r))
    .map_err(|e| door.run_error(e))
}

pub(crate) async fn take_run_lock(
    checked: &Checked,
    store: &Arc<dyn Store>,
    record: &mut RunRecord,
) -> Result<(), RunError> {
    let Some(lock) = &checked.runbook.lock else {
        return Ok(());
    };
    if let Err(holder) = store
        .try_lock(
            &lock.value,
            &LockHolder::this_process(&record.id),
            LOCK_LEASE,
        )
        .await?
    {
        record.status = RunStatus::Failed;
        record.finished_at = Some(cairn_state::now());
        record.error = Some(holder.to_string());
        store.update_run(record).await?;
        return Err(RunError::Locked(holder));
    }
    Ok(())
}
