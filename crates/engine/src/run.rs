//! The executor: runs a checked runbook's DAG on tokio, with a checkpoint in the state store
//! before and after every step, retries, timeouts, `for_each` fan-out, `when`, `expect`,
//! `outputs`, `on_failure`, `finally`, secrets masking and events for the CLI.
//!
//! This file starts and ends a run (inputs, secrets, vars, targets, the run record and its lock,
//! `finally`, the verdict); `schedule.rs` walks the DAG; `unit.rs` runs one step.

use crate::action::StepAction;
use crate::context::{Base, Local, StepView};
use crate::door::Door;
use crate::events::{Event, RtoVerdict, RunOutcome, Sink, Status, StepSummary};
use crate::exec::Peers;
use crate::plan::{Invocation, eval_vars, resolve_targets};
use crate::prepare::{RenderError, Renderer, ResolvedTarget};
use crate::secrets::Masker;
use cairn_model::{Checked, OnFailure, Step};
use cairn_state::{LockHolder, LockInfo, RunRecord, RunStatus, StepRecord, Store};
use cairn_template::Templates;
use indexmap::IndexMap;
use serde_json::Value as Json;
use sha2::Digest;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Independent branches at once (default 8).
    pub concurrency: usize,
    /// Answer every approval as approved by this name (`auto:<user>`).
    pub auto_approve: Option<String>,
    /// Approvals may prompt on the terminal.
    pub interactive: bool,
    /// The OS user, recorded with the run.
    pub user: String,
    /// Folder for per-step logs: `<logs>/<run id>/<step>.log`.
    pub logs: PathBuf,
    /// Ctrl-C / SIGTERM: stop starting steps, cancel running ones, run `finally`.
    pub cancel: CancellationToken,
    /// Set for a sub-run started by a `uses` step.
    pub parent_run: Option<String>,
    /// For a sub-run: the runbook files (canonical paths) from the top-level run down to this
    /// one; empty for a top-level run.
    pub uses_chain: Vec<PathBuf>,
    /// For a sub-run, the parent's step (`deploy`, or `deploy[3]` for a `for_each` item).
    pub parent_step: Option<String>,
    /// Where external actions go; `None` performs them for real (a fresh [`Peers`] per run).
    pub actions: Option<crate::exec::ActionPort>,
    /// Values masked in this run besides its own secrets: a sub-run's parent's secrets.
    pub inherited: Masker,
    /// Inputs that are secrets (a sub-run's `with:` values rendered from a secret): masked
    /// like secrets, and given again on resume, since the store only holds them masked.
    pub secret_inputs: serde_json::Map<String, Json>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            concurrency: 8,
            auto_approve: None,
            interactive: false,
            user: "unknown".into(),
            logs: PathBuf::from(".cairn/logs"),
            cancel: CancellationToken::new(),
            parent_run: None,
            uses_chain: Vec::new(),
            parent_step: None,
            actions: None,
            inherited: Masker::default(),
            secret_inputs: Default::default(),
        }
    }
}

/// Why a run could not start. Nothing has run when one of these comes back.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid inputs:\n  {}", .0.join("\n  "))]
    Inputs(Vec<String>),
    #[error("missing secrets:\n  {}", .0.join("\n  "))]
    Secrets(Vec<String>),
    #[error("cannot render {what}: {source}")]
    Render { what: String, source: RenderError },
    #[error("{0}; nothing was run")]
    Locked(LockInfo),
    /// The runbook's path cannot be recorded as it is: the store keeps paths as text, and a
    /// lossy copy would name another file, so the run could never be resumed.
    #[error(
        "the runbook's path {0} is not valid UTF-8; the state store records it as text and the \
         run could never be resumed: rename or move the file; nothing was run"
    )]
    PathNotUtf8(String),
    #[error("state store: {0}")]
    State(#[from] cairn_state::StateError),
    #[error(transparent)]
    Masking(#[from] crate::secrets::MaskError),
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub outputs: Json,
    pub steps: Vec<StepSummary>,
    /// The checks that were not `ok` in a run that succeeded (`succeeded_with_warnings`).
    pub warnings: Vec<crate::warnings::CheckWarning>,
    /// Set when a checkpoint could not be written: the run stopped for it, which is a failure
    /// of the infrastructure, not a verdict of the runbook.
    pub store_error: Option<String>,
    /// The "no" that failed the run, if one did: "`gate` rejected by alice".
    pub declined: Option<String>,
}

/// One step's (or item's) end.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub status: Status,
    pub result: Json,
    pub outputs: Json,
    pub error: Option<String>,
    pub attempts: u32,
    pub duration: Duration,
    pub note: Option<String>,
    /// `check` state, for the summary.
    pub state: Option<String>,
    /// Why the scheduler did not run it, when it did not.
    pub hold: Hold,
}

/// A step the scheduler held back, and why: what waits below it is held the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Not held: it ran, was restored, or was skipped by its own `when`.
    #[default]
    No,
    /// Not run because a step it needs failed (with `on_failure: abort`) or was itself blocked.
    Blocked,
    /// Left pending because a step it needs waits for an approval: it runs on resume.
    WaitsForApproval,
    /// A gate that was answered "no" (or a `uses` step whose sub-run one ended), or a step not
    /// run because of one: nothing below it ever runs, whatever `on_failure` says.
    Declined,
}

impl Outcome {
    /// A step's outcome read back from the store on resume.
    pub(crate) fn restored(
        status: Status,
        result: Json,
        outputs: Json,
        error: Option<String>,
    ) -> Outcome {
        Outcome {
            status,
            result,
            outputs,
            error,
            attempts: 0,
            duration: Duration::ZERO,
            note: Some("done earlier".into()),
            state: None,
            hold: Hold::No,
        }
    }

    pub(crate) fn skipped(note: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Skipped,
            result: Json::Null,
            outputs: Json::Null,
            error: None,
            attempts: 0,
            duration: Duration::ZERO,
            note: Some(note.into()).filter(|n: &String| !n.is_empty()),
            state: None,
            hold: Hold::No,
        }
    }
}

/// Everything a step task needs, shared by reference count.
pub(crate) struct Shared {
    pub checked: Arc<Checked>,
    pub templates: Arc<Templates>,
    pub base: Arc<Base>,
    pub targets: IndexMap<String, ResolvedTarget>,
    /// The one door to external actions (see [`crate::exec::Actions`]).
    pub actions: Arc<dyn crate::exec::Actions>,
    /// Every byte that leaves the run goes through it; `store` and `sink` are already its.
    pub door: Door,
    pub store: Arc<dyn Store>,
    pub sink: Arc<dyn Sink>,
    pub opts: RunOptions,
    pub run_id: String,
    /// This process's claim on the run: every checkpoint is written under it.
    pub claim: cairn_state::Claim,
    /// On resume, `for_each` items done in earlier attempts (by step index): not run again.
    pub earlier_items: std::collections::HashMap<usize, EarlierItems>,
    /// The user who started the run: the one who may not approve it (`allow_self_approval`).
    pub starter: String,
    /// On resume, the verdicts of gates that run again only because a step above them does
    /// (by step id): kept while the gate's message is unchanged.
    pub prior_answers: std::collections::HashMap<String, Json>,
    /// On resume, when the waits of gates still unanswered began (by step id).
    pub waits_since: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    pub def_hashes: Vec<String>,
    /// Each step made ready once (by step index): the settings the plan shows and the run obeys.
    pub steps: Vec<StepAction>,
    /// Set when a checkpoint could not be written: the run stops and fails with it.
    pub store_error: std::sync::Mutex<Option<String>>,
    /// Ends of steps not committed yet, with the events that announce them: they are committed
    /// with the next checkpoint (one transaction for a step's end and the next one's start),
    /// or by [`Shared::flush`] when nothing starts next. A write holds this lock while it
    /// commits, so no checkpoint commits before an end recorded earlier.
    pub ends: tokio::sync::RwLock<Vec<(StepRecord, Vec<Event>)>>,
    /// Step-level locks of this run: the store keeps other runs out, these keep two parallel
    /// steps of this run from holding one lock at once.
    pub step_locks:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    pub(crate) fn renderer(&self, local: Local) -> Renderer<'_> {
        Renderer {
            templates: &self.templates,
            base: &self.base,
            targets: &self.targets,
            local,
        }
    }

    /// The settings of step `i`, as made ready when the run began.
    pub(crate) fn action(&self, i: usize) -> &StepAction {
        &self.steps[i]
    }

    pub(crate) fn step(&self, i: usize) -> &Step {
        let rb = &self.checked.runbook;
        rb.steps
            .get(i)
            .unwrap_or_else(|| &rb.finally[i - rb.steps.len()])
    }

    /// Commit a step transition. If the store refuses, nothing new starts: running steps are
    /// cancelled, `finally` runs and the run fails with the store's error, since going on
    /// without a record would break resume.
    /// A run that lost its claim (another process resumed it) stops the same way, saying so.
    /// Steps' ends recorded with [`Shared::end`] are committed first, in the same transaction.
    pub(crate) async fn checkpoint(&self, rec: &StepRecord) -> bool {
        {
            let ends = self.ends.read().await;
            if ends.is_empty() {
                return self.commit(std::slice::from_ref(rec)).await;
            }
        }
        let mut ends = self.ends.write().await;
        let batch = std::mem::take(&mut *ends);
        let mut recs: Vec<StepRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        recs.push(rec.clone());
        let ok = self.commit(&recs).await;
        for (_, events) in batch {
            events.iter().for_each(|e| self.sink.emit(e));
        }
        ok
    }

    /// Records a step's end, to be committed with the next checkpoint, before anything that
    /// comes after it starts; its events are sent once it is committed. Whoever starts nothing
    /// after an end calls [`Shared::flush`].
    pub(crate) async fn end(&self, rec: StepRecord, events: Vec<Event>) {
        self.ends.write().await.push((rec, events));
    }

    /// Commits the ends not committed yet.
    pub(crate) async fn flush(&self) {
        let mut ends = self.ends.write().await;
        if ends.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *ends);
        let recs: Vec<StepRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        self.commit(&recs).await;
        for (_, events) in batch {
            events.iter().for_each(|e| self.sink.emit(e));
        }
    }

    async fn commit(&self, recs: &[StepRecord]) -> bool {
        let written = match recs {
            [rec] => self.store.put_step(&self.claim, rec).await,
            _ => self.store.put_steps(&self.claim, recs).await,
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                // The oldest record of the batch: the end of the step that finished before the others.
                let step = recs.first().map_or("", |r| r.step_id.as_str());
                tracing::error!(run = %self.run_id, step = %step, error = %e, "checkpoint failed");
                self.stop(format!("cannot record step `{step}`: {e}"));
                false
            }
        }
    }

    /// The store refused a write: nothing new starts and the run ends with this error.
    pub(crate) fn stop(&self, why: String) {
        if let Ok(mut slot) = self.store_error.lock() {
            slot.get_or_insert(why);
        }
        self.opts.cancel.cancel();
    }

    pub(crate) fn store_error(&self) -> Option<String> {
        self.store_error.lock().ok().and_then(|s| s.clone())
    }
}

/// Hash of a step's definition, to detect edits between attempts.
pub fn def_hash(step: &Step) -> String {
    let json = serde_json::to_string(step).unwrap_or_default();
    hex(&sha2::Sha256::digest(json.as_bytes()))[..16].to_string()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Run a checked runbook to its end (or pause, or interruption).
pub async fn execute(
    checked: Arc<Checked>,
    templates: Arc<Templates>,
    inv: &Invocation,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    opts: RunOptions,
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
    record.parent_run = opts.parent_run.clone();
    record.parent_step = opts.parent_step.clone();
    let defs = step_defs(&checked);
    let setup = Setup::new(&checked, &templates, &inputs_json, secrets, masker, &record)
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

/// The masker of a run: its secrets, what it inherits from a parent run, its secret inputs.
pub(crate) fn run_masker(secrets: &serde_json::Map<String, Json>, opts: &RunOptions) -> Masker {
    let mut masker = Masker::new(
        secrets
            .values()
            .filter_map(|v| v.as_str().map(str::to_string)),
    );
    masker.merge(&opts.inherited);
    let mut leaves = Vec::new();
    for v in opts.secret_inputs.values() {
        string_leaves(v, &mut leaves);
    }
    masker.add(leaves);
    masker
}

/// Credentials written straight into targets (a password in a URL, `password:`, `bearer:`,
/// `basic:`) are masked like secrets, in a run and in its plan.
pub(crate) fn mask_credentials(masker: &mut Masker, targets: &IndexMap<String, ResolvedTarget>) {
    for t in targets.values() {
        let basic_pw = t.basic.as_ref().and_then(|(_, p)| p.clone());
        masker.add(
            [
                crate::secrets::url_password(&t.url),
                t.password.clone(),
                t.bearer.clone(),
                basic_pw,
            ]
            .into_iter()
            .flatten()
            // A dry run's rendered secret is already the mask.
            .filter(|v| v != cairn_template::MASK),
        );
    }
}

fn string_leaves(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::String(s) => out.push(s.clone()),
        Json::Array(a) => a.iter().for_each(|x| string_leaves(x, out)),
        Json::Object(o) => o.values().for_each(|x| string_leaves(x, out)),
        // A number or a boolean is too common a text to mask.
        _ => {}
    }
}

/// Content hash of the runbook file.
pub fn content_hash(checked: &Checked) -> String {
    hex(&sha2::Sha256::digest(checked.runbook.source.as_bytes()))
}

/// Each step's definition hash and direct dependencies, as recorded with a run.
pub fn step_defs(checked: &Checked) -> Vec<cairn_state::StepDef> {
    let rb = &checked.runbook;
    checked
        .all_steps()
        .enumerate()
        .map(|(i, s)| cairn_state::StepDef {
            step_id: s.id.value.clone(),
            def_hash: def_hash(s),
            needs: if i < rb.steps.len() {
                checked
                    .dag
                    .parents(i)
                    .into_iter()
                    .map(|p| rb.steps[p].id.value.clone())
                    .collect()
            } else {
                vec![]
            },
        })
        .collect()
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

/// The evaluated context of a run attempt: secrets, masker, vars, targets.
pub(crate) struct Setup {
    pub(crate) door: Door,
    base: Arc<Base>,
    targets: IndexMap<String, ResolvedTarget>,
    /// On resume: the `for_each` items that succeeded in earlier attempts, by step index.
    pub(crate) earlier_items: std::collections::HashMap<usize, EarlierItems>,
    /// On resume: see [`Shared::prior_answers`].
    pub(crate) prior_answers: std::collections::HashMap<String, Json>,
    /// On resume: see [`Shared::waits_since`].
    pub(crate) waits_since: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// On resume: gates decided by answers given during the pause, told after the run starts.
    pub(crate) answered: Vec<Event>,
}

/// What an earlier attempt of a `for_each` step left: its item list and the items that
/// succeeded. An item is taken as done only if it is at the same position with the same value.
#[derive(Debug, Clone, Default)]
pub(crate) struct EarlierItems {
    pub items: Vec<Json>,
    pub succeeded: std::collections::HashMap<usize, StepRecord>,
}

impl EarlierItems {
    /// The earlier record of item `k` if it succeeded with this same value.
    pub(crate) fn done(&self, k: usize, item: &Json) -> Option<&StepRecord> {
        (self.items.get(k) == Some(item))
            .then(|| self.succeeded.get(&k))
            .flatten()
    }
}

impl Setup {
    pub(crate) fn new(
        checked: &Checked,
        templates: &Templates,
        inputs: &Json,
        secrets: serde_json::Map<String, Json>,
        mut masker: Masker,
        record: &RunRecord,
    ) -> Result<Setup, RunError> {
        let rb = &checked.runbook;
        let run = serde_json::json!({
            "id": record.id,
            "started_at": record.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "attempt": record.attempt,
            "runbook": rb.name.value,
            "dir": crate::context::runbook_dir(&rb.path),
            "dry_run": false,
        });
        let base = Base::new(inputs, crate::context::value_of(&secrets), run, false, &[]);
        eval_vars(rb, templates, &base, &IndexMap::new())
            .map_err(|(what, source)| RunError::Render { what, source })?;
        let targets = resolve_targets(rb, templates, &base)
            .map_err(|(what, source)| RunError::Render { what, source })?;
        mask_credentials(&mut masker, &targets);
        // Fail closed: a run whose secrets cannot be masked does not start.
        masker.check()?;
        Ok(Setup {
            door: Door::new(masker),
            base,
            targets,
            earlier_items: Default::default(),
            prior_answers: Default::default(),
            waits_since: Default::default(),
            answered: Vec::new(),
        })
    }

    pub(crate) fn restore(&self, id: &str, view: &StepView) {
        self.base.steps.set(id, view);
    }
}

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
    let heartbeat = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cairn_state::HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
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
                Some(why) => crate::unit::conclude(&shared, i, Outcome::skipped(why)).await,
                None => crate::unit::run_step(shared.clone(), i, CancellationToken::new()).await,
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
    heartbeat.abort();
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

/// How long a lock holds without a heartbeat.
pub const LOCK_LEASE: Duration = Duration::from_secs(300);

pub(crate) fn on_failure(shared: &Shared, i: usize) -> OnFailure {
    shared.action(i).on_failure
}

/// A failed step fails the run unless its `on_failure` is `continue`; a "no" that failed
/// (`on_reject: fail`) fails it whatever `on_failure` says.
pub(crate) fn fails_run(shared: &Shared, i: usize, o: &Outcome) -> bool {
    o.status == Status::Failed
        && (o.hold == Hold::Declined || on_failure(shared, i) == OnFailure::Abort)
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
