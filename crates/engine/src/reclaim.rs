//! Carrying out a resume: read the run's records, [`decide`], then claim the run (a
//! compare-and-set on its attempt, after its lock), write what the decision says, and drive the
//! attempt. Nothing is written before the run is claimed: of two resumes of one run, one runs
//! it and the other is refused, naming the holder.

use crate::attempt::drive;
use crate::decide::{Decision, Facts, ResumeError, ResumeOptions, decide};
use crate::events::Sink;
use crate::options::RunOptions;
use crate::outcome::{LOCK_LEASE, RunError, RunReport};
use crate::shared::{Setup, SubRuns, content_hash, step_defs};
use cairn_state::{RunStatus, Store};
use cairn_template::Templates;
use serde_json::Value as Json;
use std::sync::Arc;

/// What `resume` did.
pub enum Resumed {
    /// The run had already succeeded: nothing to do.
    AlreadyDone {
        run_id: String,
    },
    Ran(RunReport),
}

/// Resume run `run` (an id or a unique prefix), giving `uses` steps their child runs through
/// `subruns`.
pub(crate) async fn resume_with(
    run: &str,
    templates: Arc<Templates>,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    opts: RunOptions,
    ropts: &ResumeOptions,
    subruns: Arc<dyn SubRuns>,
) -> Result<Resumed, ResumeError> {
    let mut record = store
        .get_run(run)
        .await?
        .ok_or_else(|| ResumeError::NotFound(run.to_string()))?;
    let id = record.id.clone();
    match record.status {
        // `--from`/`--rerun` ask for steps to run again even in a run that succeeded.
        RunStatus::Succeeded if ropts.from.is_none() && ropts.rerun.is_empty() => {
            return Ok(Resumed::AlreadyDone { run_id: id });
        }
        // The store reports a run whose process is gone (or silent) as interrupted; a run still
        // `running` is alive, here or on another host sharing the store.
        // A sub-run is taken up under its parent's claim, which fenced any engine still in it.
        RunStatus::Running if opts.parent_attempt.is_none() => {
            return Err(ResumeError::Busy(record.holder()));
        }
        _ => {}
    }
    let path = std::path::PathBuf::from(&record.path);
    let (checked, _) = cairn_model::load(&path, &templates).map_err(|e| ResumeError::Runbook {
        id: id.clone(),
        path: record.path.clone(),
        reason: e.to_string(),
    })?;
    let checked = Arc::new(checked);
    let defs = step_defs(&checked);
    let old_defs = store.step_defs(&id).await?;
    let records = store.steps(&id).await?;
    let approvals = store.approvals(&id).await?;

    let Decision {
        outcomes,
        restored,
        decided,
        timeouts,
        forget,
        prior_answers,
        answered,
        waits_since,
        earlier_items,
    } = decide(
        &Facts {
            run_id: &id,
            starter: &record.user,
            checked: &checked,
            defs: &defs,
            old_defs: &old_defs,
            records: &records,
            approvals: &approvals,
        },
        ropts,
        opts.auto_approve.is_some() || opts.interactive,
        cairn_state::now(),
    )?;
    // Secrets are read again: they are never in the store.
    let secrets = crate::secrets::read(&checked.runbook).map_err(RunError::Secrets)?;
    let masker = crate::masking::run_masker(&secrets, &opts);
    // Secret inputs are only masked in the store: the parent gives them again.
    if let Json::Object(inputs) = &mut record.inputs {
        for (k, v) in &opts.secret_inputs {
            inputs.insert(k.clone(), v.clone());
        }
    }
    let before = record.clone();
    let now = cairn_state::now();
    record.attempt += 1;
    record.status = RunStatus::Running;
    record.finished_at = None;
    record.error = None;
    record.outputs = None;
    record.pid = std::process::id();
    record.pid_start = cairn_state::process_start(record.pid);
    record.host = cairn_state::current_host();
    record.content_hash = content_hash(&checked);
    record.claimed_at = now;
    record.heartbeat_at = now;
    // A sub-run is taken up only under its parent's claim.
    record.parent_attempt = opts.parent_attempt;
    let setup = Setup::new(
        &checked,
        &templates,
        &record.inputs.clone(),
        secrets,
        masker,
        &record,
        subruns,
    )?;
    // From here every write and event leaves through the run's masking door.
    let door = setup.door.clone();
    let store = door.store(store);
    let sink = door.sink(sink);
    for (id, view) in &restored {
        setup.restore(id, view);
    }
    let mut setup = setup;
    setup.prior_answers = prior_answers;
    setup.answered = answered;
    setup.waits_since = waits_since;
    setup.earlier_items = earlier_items;
    // The runbook's lock, if it has one: `Err` names the run that holds it.
    let take_lock = async || match &checked.runbook.lock {
        Some(lock) => {
            store
                .try_lock(
                    &lock.value,
                    &cairn_state::LockHolder::this_process(&record.id),
                    LOCK_LEASE,
                )
                .await
        }
        None => Ok(Ok(())),
    };
    // The lock first: a resume refused for it leaves the run as it was.
    if let Err(holder) = take_lock().await? {
        return Err(RunError::Locked(holder).into());
    }
    // The claim: a compare-and-set from the attempt read above to the next. Of two resumes
    // started together exactly one gets here; the other is refused, naming the winner, and
    // writes nothing. From now on every write of this process is fenced on this attempt.
    if let Err(holder) = store.claim_run(&record).await? {
        return Err(ResumeError::Busy(holder));
    }
    let claim = record.claim();
    // The run as it was (attempt and all), given back when the resume cannot go on after its
    // claim.
    let back = cairn_state::RunRecord {
        attempt: record.attempt,
        ..before
    };
    // The decisions above were made on records read before the claim; a process that had
    // lost the run (stalled past its heartbeat) may have written one since. Then give the
    // run back rather than act on a stale picture.
    if store.steps(&id).await? != records {
        store.update_run(&back).await?;
        return Err(ResumeError::Raced(id));
    }
    // The lock again, now that the run is ours: a process that had lost the run could release
    // its locks between the first take and the claim (its release is fenced on the attempt,
    // which moved only with the claim). Taking it again closes that gap; if another run got it
    // in between, the run is given back as it was.
    if let Err(holder) = take_lock().await? {
        store.update_run(&back).await?;
        return Err(RunError::Locked(holder).into());
    }
    // Written only now that the resume holds the run: skipped in-doubt steps (else the store
    // would keep them `running` for good) and approvals answered since the pause.
    for rec in &decided {
        store.put_step(&claim, rec).await?;
    }
    for answer in &timeouts {
        store.record_approval(answer).await?;
    }
    for rec in &forget {
        store.put_step(&claim, rec).await?;
    }
    // Rewriting an unchanged DAG costs one row per step (0.3 s for 10,000 steps on PostgreSQL).
    if old_defs != defs {
        store.set_step_defs(&claim, &defs).await?;
    }

    Ok(Resumed::Ran(
        drive(
            checked, templates, store, sink, opts, record, setup, &defs, outcomes,
        )
        .await
        .map(|r| door.report(r))
        .map_err(|e| door.run_error(e))?,
    ))
}
