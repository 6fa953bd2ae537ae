//! The executor: runs a checked runbook's DAG on tokio, with a checkpoint in the state store
//! before and after every step, retries, timeouts, `for_each` fan-out, `when`, `expect`,
//! `outputs`, `on_failure`, `finally`, secrets masking and events for the CLI.

use crate::context::{Base, Local, StepView};
use crate::control;
use crate::events::{Event, RtoVerdict, RunOutcome, Sink, Status, StepSummary};
use crate::exec::Peers;
use crate::plan::{Invocation, eval_vars, resolve_targets};
use crate::prepare::{Prepared, RenderError, Renderer, ResolvedTarget};
use crate::secrets::Masker;
use cairn_model::{Checked, OnFailure, Step, TValue};
use cairn_state::{LockHolder, LockInfo, RunRecord, RunStatus, StepRecord, StepStatus, Store};
use cairn_steps::StepError;
use cairn_template::Templates;
use indexmap::IndexMap;
use serde_json::Value as Json;
use sha2::Digest;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
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
    #[error("state store: {0}")]
    State(#[from] cairn_state::StateError),
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub outputs: Json,
    pub steps: Vec<StepSummary>,
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
        }
    }

    fn skipped(note: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Skipped,
            result: Json::Null,
            outputs: Json::Null,
            error: None,
            attempts: 0,
            duration: Duration::ZERO,
            note: Some(note.into()).filter(|n: &String| !n.is_empty()),
            state: None,
        }
    }
}

/// Everything a step task needs, shared by reference count.
pub(crate) struct Shared {
    pub checked: Arc<Checked>,
    pub templates: Arc<Templates>,
    pub base: Arc<Base>,
    pub targets: IndexMap<String, ResolvedTarget>,
    pub peers: Peers,
    pub masker: Masker,
    pub store: Arc<dyn Store>,
    pub sink: Arc<dyn Sink>,
    pub opts: RunOptions,
    pub run_id: String,
    pub def_hashes: Vec<String>,
    /// Set when a checkpoint could not be written: the run stops and fails with it.
    pub store_error: std::sync::Mutex<Option<String>>,
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

    fn step(&self, i: usize) -> &Step {
        let rb = &self.checked.runbook;
        rb.steps
            .get(i)
            .unwrap_or_else(|| &rb.finally[i - rb.steps.len()])
    }

    /// Commit a step transition. If the store refuses, nothing new starts: running steps are
    /// cancelled, `finally` runs and the run fails with the store's error, since going on
    /// without a record would break resume.
    async fn checkpoint(&self, rec: &StepRecord) -> bool {
        match self.store.put_step(rec).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(run = %self.run_id, step = %rec.step_id, error = %e, "checkpoint failed");
                if let Ok(mut slot) = self.store_error.lock() {
                    slot.get_or_insert_with(|| {
                        format!("cannot record step `{}`: {e}", rec.step_id)
                    });
                }
                self.opts.cancel.cancel();
                false
            }
        }
    }

    fn store_error(&self) -> Option<String> {
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
    let inputs = crate::inputs::resolve(rb, &inv.sets, inv.inputs_file.as_ref())
        .map_err(RunError::Inputs)?;
    let inputs_json = serde_json::to_value(&inputs).unwrap_or_default();
    // Secrets are read first so a missing one refuses the run before anything is recorded.
    let secrets = crate::secrets::read(rb).map_err(RunError::Secrets)?;
    let masker = Masker::new(
        secrets
            .values()
            .filter_map(|v| v.as_str().map(str::to_string)),
    );
    let mut record = RunRecord::start(
        rb.name.value.clone(),
        // Absolute, so `cairn resume` works from any folder.
        std::fs::canonicalize(&rb.path)
            .unwrap_or_else(|_| rb.path.clone())
            .display()
            .to_string(),
        content_hash(&checked),
        masker.mask_json(&inputs_json),
        opts.user.clone(),
    );
    record.parent_run = opts.parent_run.clone();
    let defs = step_defs(&checked);
    let setup = Setup::new(&checked, &templates, &inputs_json, secrets, masker, &record)?;
    store.create_run(&record, &defs).await?;
    take_run_lock(&checked, &store, &mut record).await?;
    let outcomes = vec![None; defs.len()];
    drive(
        checked, templates, store, sink, opts, record, setup, &defs, outcomes,
    )
    .await
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
    masker: Masker,
    base: Arc<Base>,
    targets: IndexMap<String, ResolvedTarget>,
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
            "dry_run": false,
        });
        let base = Base::new(inputs, crate::context::value_of(&secrets), run, false);
        eval_vars(rb, templates, &base, &IndexMap::new())
            .map_err(|(what, source)| RunError::Render { what, source })?;
        let targets = resolve_targets(rb, templates, &base)
            .map_err(|(what, source)| RunError::Render { what, source })?;
        // Credentials written straight into targets are masked like secrets.
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
                .flatten(),
            );
        }
        Ok(Setup {
            masker,
            base,
            targets,
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
    let shared = Arc::new(Shared {
        def_hashes: defs.iter().map(|d| d.def_hash.clone()).collect(),
        checked: checked.clone(),
        templates,
        base: setup.base,
        targets: setup.targets,
        peers: Peers::default(),
        step_locks: Default::default(),
        store_error: Default::default(),
        masker: setup.masker,
        store: store.clone(),
        sink: sink.clone(),
        opts,
        run_id: run_id.clone(),
    });
    let heartbeat = {
        let (store, id) = (store.clone(), run_id.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cairn_state::HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
                let _ = store.heartbeat(&id).await;
            }
        })
    };
    let clock = Instant::now();
    let paused = run_dag(&shared, &mut outcomes).await;
    let interrupted = shared.opts.cancel.is_cancelled();
    if !paused {
        // finally: always, in written order, even after Ctrl-C (with a fresh token).
        let main = rb.steps.len();
        for k in 0..rb.finally.len() {
            let o = run_step(shared.clone(), main + k, CancellationToken::new()).await;
            outcomes[main + k] = Some(o);
        }
    }
    let failed = outcomes.iter().enumerate().any(|(i, o)| {
        o.as_ref().is_some_and(|o| {
            o.status == Status::Failed && on_failure(&shared, i) == OnFailure::Abort
        })
    });
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
    let outputs = if paused || interrupted {
        Json::Null
    } else {
        run_outputs(&shared)
    };
    let steps: Vec<StepSummary> = all
        .iter()
        .zip(&outcomes)
        .map(|(s, o)| {
            let o = o.clone().unwrap_or_else(|| Outcome {
                status: if interrupted {
                    Status::Cancelled
                } else {
                    Status::Pending
                },
                ..Outcome::skipped("")
            });
            StepSummary {
                id: s.id.value.clone(),
                kind: s.action().kind(),
                status: o.status,
                attempts: o.attempts,
                duration: o.duration,
                // A step blocked by a failed dependency is not itself in error: its note says why.
                error: o.error.filter(|e| e != BLOCKED),
                state: o.state,
                note: o.note,
            }
        })
        .collect();
    heartbeat.abort();
    record.status = match outcome {
        RunOutcome::Succeeded => RunStatus::Succeeded,
        RunOutcome::Failed => RunStatus::Failed,
        RunOutcome::Paused => RunStatus::Paused,
        RunOutcome::Interrupted => RunStatus::Interrupted,
    };
    if matches!(outcome, RunOutcome::Succeeded | RunOutcome::Failed) {
        record.finished_at = Some(cairn_state::now());
    }
    record.outputs = Some(outputs.clone());
    // The run's error names the step that failed it (not one with `on_failure: continue`).
    record.error = shared.store_error().or_else(|| {
        all.iter()
            .enumerate()
            .zip(&steps)
            .find(|((i, _), s)| {
                s.status == Status::Failed && on_failure(&shared, *i) == OnFailure::Abort
            })
            .and_then(|(_, s)| s.error.as_ref().map(|e| format!("step `{}`: {e}", s.id)))
    });
    store.update_run(&record).await?;
    if outcome != RunOutcome::Paused {
        store.release_locks(&run_id).await?;
    }
    shared.peers.pools.close().await;
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
        outputs: outputs.clone(),
    });
    Ok(RunReport {
        run_id,
        outcome,
        outputs,
        steps,
    })
}

/// How long a lock holds without a heartbeat.
pub const LOCK_LEASE: Duration = Duration::from_secs(300);

fn on_failure(shared: &Shared, i: usize) -> OnFailure {
    let defaults = shared
        .checked
        .runbook
        .defaults
        .as_ref()
        .and_then(|d| d.on_failure);
    shared
        .step(i)
        .on_failure
        .or(defaults)
        .unwrap_or(OnFailure::Abort)
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
        out.insert(k.clone(), shared.masker.mask_json(&value));
    }
    Json::Object(out)
}

/// The main DAG. Returns whether the run paused on an approval.
async fn run_dag(shared: &Arc<Shared>, outcomes: &mut [Option<Outcome>]) -> bool {
    let dag = &shared.checked.dag;
    let n = shared.checked.runbook.steps.len();
    let mut waiting_on: Vec<usize> = (0..n).map(|i| dag.parents(i).len()).collect();
    // Steps whose outcome is already known (restored on resume) are not run again; they only
    // release what waits for them.
    let known: Vec<bool> = outcomes.iter().take(n).map(Option::is_some).collect();
    let mut ready: BTreeSet<(usize, usize)> = (0..n)
        .filter(|&i| waiting_on[i] == 0 && !known[i])
        .map(|i| (dag.group[i], i))
        .collect();
    for &i in &dag.order {
        if known[i] {
            release(dag, i, &mut waiting_on, &mut ready, &known);
        }
    }
    ready.retain(|&(_, i)| !known[i]);
    let mut running = JoinSet::new();
    let mut task_of = std::collections::HashMap::new();
    let mut paused = false;
    let cancel = shared.opts.cancel.clone();
    loop {
        while running.len() < shared.opts.concurrency.max(1) && !cancel.is_cancelled() {
            let Some(&(g, i)) = ready.iter().next() else {
                break;
            };
            ready.remove(&(g, i));
            // Upstream failed (abort) or paused: this step cannot run.
            let blocker = dag.parents(i).into_iter().find(|&p| match &outcomes[p] {
                Some(o) => {
                    (o.status == Status::Failed && on_failure(shared, p) == OnFailure::Abort)
                        || o.error.as_deref() == Some(BLOCKED)
                        || o.status == Status::Waiting
                        || o.note.as_deref() == Some(WAITS)
                }
                None => true,
            });
            if let Some(p) = blocker {
                let parent = &outcomes[p];
                if parent.as_ref().is_some_and(|o| {
                    o.status == Status::Waiting || o.note.as_deref() == Some(WAITS)
                }) {
                    // Left pending: it runs after the approval, on resume.
                    outcomes[i] = Some(Outcome {
                        status: Status::Pending,
                        note: Some(WAITS.into()),
                        ..Outcome::skipped("")
                    });
                } else {
                    let o = Outcome {
                        error: Some(BLOCKED.into()),
                        // Name the step that failed, not the one it blocked on the way down.
                        note: match outcomes[p].as_ref() {
                            Some(po) if po.error.as_deref() == Some(BLOCKED) => po.note.clone(),
                            _ => Some(format!("not run: `{}` failed", shared.step(p).id.value)),
                        },
                        ..Outcome::skipped("")
                    };
                    let mut rec = StepRecord::new(
                        &shared.run_id,
                        &shared.step(i).id.value,
                        None,
                        &shared.def_hashes[i],
                    );
                    rec.status = StepStatus::Skipped;
                    rec.error = o.note.clone();
                    shared.checkpoint(&rec).await;
                    shared.sink.emit(&Event::StepFinished {
                        step: shared.step(i).id.value.clone(),
                        item: None,
                        status: Status::Skipped,
                        attempts: 0,
                        duration: Duration::ZERO,
                        error: None,
                        note: o.note.clone(),
                    });
                    define(shared, i, &o);
                    outcomes[i] = Some(o);
                }
                release(dag, i, &mut waiting_on, &mut ready, &known);
                continue;
            }
            let (sh, token) = (shared.clone(), cancel.clone());
            let task = running.spawn(async move { (i, run_step(sh, i, token).await) });
            task_of.insert(task.id(), i);
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (i, o) = match joined {
            Ok(x) => x,
            // A bug in Cairn, not in the runbook: the step is failed, never silently dropped.
            Err(e) => {
                let Some(&i) = task_of.get(&e.id()) else {
                    continue;
                };
                tracing::error!(step = %shared.step(i).id.value, error = %e, "a step task panicked");
                let o = Outcome {
                    status: Status::Failed,
                    error: Some(format!("internal error in Cairn: {e}")),
                    ..Outcome::skipped("")
                };
                (i, conclude(shared, i, o).await)
            }
        };
        if o.status == Status::Waiting {
            paused = true;
        }
        outcomes[i] = Some(o);
        release(dag, i, &mut waiting_on, &mut ready, &known);
    }
    paused
        || outcomes
            .iter()
            .take(n)
            .any(|o| o.as_ref().is_some_and(|o| o.status == Status::Waiting))
}

const BLOCKED: &str = "blocked";
const WAITS: &str = "waits for an approval";

/// `i` is done: what waits for it may become ready. Steps whose outcome is already known
/// (restored on resume) are never made ready again, even below a step that runs again.
fn release(
    dag: &cairn_model::Dag,
    i: usize,
    waiting_on: &mut [usize],
    ready: &mut BTreeSet<(usize, usize)>,
    known: &[bool],
) {
    for c in dag.children(i) {
        if known[c] {
            continue;
        }
        waiting_on[c] -= 1;
        if waiting_on[c] == 0 {
            ready.insert((dag.group[c], c));
        }
    }
}

/// One step: `when`, then the action once or per `for_each` item; checkpoints and events.
async fn run_step(shared: Arc<Shared>, i: usize, cancel: CancellationToken) -> Outcome {
    let step = shared.step(i);
    let id = step.id.value.clone();
    let key = format!("{}:{id}", shared.run_id);
    let local = Local {
        step_key: Some(key.clone()),
        ..Local::default()
    };
    let clock = Instant::now();
    if let Some(w) = &step.when {
        match shared.renderer(local.clone()).expr(w, "when") {
            Ok(v) if !v.is_true() => {
                let o = Outcome::skipped(format!("when {} is false", w.src.trim()));
                return conclude(&shared, i, o).await;
            }
            Ok(_) => {}
            Err(e) => {
                let o = Outcome {
                    status: Status::Failed,
                    error: Some(shared.masker.mask(&e.to_string())),
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
                rec.idempotent = step.idempotent();
                rec.started_at = Some(cairn_state::now());
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
        && let Err(e) = shared.store.release_lock(&name.value, &shared.run_id).await
    {
        tracing::warn!(lock = %name.value, error = %e, "cannot release step lock");
    }
    conclude(&shared, i, o).await
}

/// Commit a step's end and make it readable as `steps.ID` (skipped and failed steps too, so
/// `steps.X.status` works in what follows and in `finally`).
async fn conclude(shared: &Shared, i: usize, o: Outcome) -> Outcome {
    finish(shared, i, None, &o).await;
    define(shared, i, &o);
    o
}

fn define(shared: &Shared, i: usize, o: &Outcome) {
    let outputs = if o.outputs.is_null() {
        Json::Object(Default::default())
    } else {
        o.outputs.clone()
    };
    shared.base.steps.set(
        &shared.step(i).id.value,
        &StepView {
            status: o.status.as_str().into(),
            result: o.result.clone(),
            outputs,
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
        Err(e) => Err(shared.masker.mask(&e.to_string())),
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
    let width = step
        .concurrency
        .as_ref()
        .map_or(1, |c| c.value.max(1) as usize);
    let results: Vec<(usize, Json, Outcome)> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(k, item)| {
            let local = Local {
                item: Some((item.clone(), k)),
                step_key: Some(format!("{key}:{k}")),
                result: None,
            };
            async move { (k, item, run_unit(shared, i, Some(k), local, cancel).await) }
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
    let status = if cancel.is_cancelled() {
        Status::Cancelled
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
    let defaults = shared.checked.runbook.defaults.as_ref();
    let retry = step
        .retry
        .as_ref()
        .or(defaults.and_then(|d| d.retry.as_ref()));
    let attempts = retry.map_or(1, |r| r.attempts.max(1));
    let timeout = step
        .timeout
        .as_ref()
        .or(defaults.and_then(|d| d.timeout.as_ref()))
        .map(|t| t.value.0);
    let clock = Instant::now();
    let mut rec = StepRecord::new(
        &shared.run_id,
        &step.id.value,
        item.map(|k| k as u32),
        &shared.def_hashes[i],
    );
    rec.idempotent = step.idempotent();
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
        let prepared = match r.prepare(step) {
            Ok(p) => p,
            Err(e) => {
                last = Outcome {
                    status: Status::Failed,
                    error: Some(shared.masker.mask(&e.to_string())),
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
            what: shared.masker.mask(&control::describe(&prepared)),
        });
        let log = log_path(shared, &step.id.value, item);
        let res = control::perform(
            shared,
            step,
            &prepared,
            &local,
            timeout,
            cancel,
            log.clone(),
        )
        .await;
        last = settle(shared, step, &local, res, attempt);
        // A threshold verdict or a human "no" is an answer, not a transient failure.
        let verdict = matches!(prepared, Prepared::Check { .. } | Prepared::Approval { .. });
        if last.status == Status::Succeeded
            || last.status == Status::Waiting
            || cancel.is_cancelled()
            || attempt == attempts
            || verdict
        {
            rec.log_path = log.filter(|p| p.exists()).map(|p| p.display().to_string());
            break;
        }
        let delay = control::backoff(retry, attempt);
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

/// Turn an action's result into the step's outcome: expectations, outputs, masking.
fn settle(
    shared: &Shared,
    step: &Step,
    local: &Local,
    res: Result<control::Done, StepError>,
    attempt: u32,
) -> Outcome {
    let m = &shared.masker;
    match res {
        Ok(done) => {
            let result = m.mask_json(&done.result);
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
            if let Err(e) = control::expect(shared, step, &with_result, &result) {
                return Outcome {
                    status: Status::Failed,
                    error: Some(m.mask(&e)),
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
                        outputs.insert(k.clone(), m.mask_json(&v));
                    }
                    Err(e) => {
                        return Outcome {
                            status: Status::Failed,
                            error: Some(m.mask(&e.to_string())),
                            result,
                            attempts: attempt,
                            ..Outcome::skipped("")
                        };
                    }
                }
            }
            if let Some(fail) = done.failure {
                return Outcome {
                    status: Status::Failed,
                    error: Some(m.mask(&fail)),
                    result,
                    outputs: Json::Object(outputs),
                    attempts: attempt,
                    note: done.note,
                    state: done.state,
                    duration: Duration::ZERO,
                };
            }
            Outcome {
                status: Status::Succeeded,
                result,
                outputs: Json::Object(outputs),
                error: None,
                attempts: attempt,
                duration: Duration::ZERO,
                note: done.note.map(|n| m.mask(&n)),
                state: done.state,
            }
        }
        Err(e) => {
            let result = e.result().map(|r| m.mask_json(r)).unwrap_or(Json::Null);
            let status = if matches!(e, StepError::Cancelled { .. }) {
                Status::Cancelled
            } else {
                Status::Failed
            };
            Outcome {
                status,
                error: Some(m.mask(&e.to_string())),
                result,
                attempts: attempt,
                ..Outcome::skipped("")
            }
        }
    }
}

/// Commit a step's (or item's) final state, then tell the sink.
async fn finish(shared: &Shared, i: usize, item: Option<usize>, o: &Outcome) {
    let step = shared.step(i);
    let mut rec = StepRecord::new(
        &shared.run_id,
        &step.id.value,
        item.map(|k| k as u32),
        &shared.def_hashes[i],
    );
    rec.status = match o.status {
        Status::Succeeded => StepStatus::Succeeded,
        Status::Failed => StepStatus::Failed,
        Status::Skipped => StepStatus::Skipped,
        Status::Waiting => StepStatus::Waiting,
        Status::Cancelled => StepStatus::Cancelled,
        Status::Pending => StepStatus::Pending,
        Status::Running => StepStatus::Running,
    };
    rec.attempt = o.attempts;
    let now = cairn_state::now();
    rec.finished_at = Some(now);
    rec.started_at = chrono::Duration::from_std(o.duration).ok().map(|d| now - d);
    rec.result = Some(o.result.clone());
    rec.outputs = Some(o.outputs.clone());
    rec.error = o.error.clone();
    rec.idempotent = step.idempotent();
    if let Some(log) = log_path(shared, &step.id.value, item).filter(|p| p.exists()) {
        rec.log_path = Some(log.display().to_string());
    }
    shared.checkpoint(&rec).await;
    if o.status == Status::Waiting
        && let Ok(Prepared::Approval { message, .. }) =
            shared.renderer(Local::default()).prepare(step)
    {
        shared.sink.emit(&Event::ApprovalWaiting {
            step: step.id.value.clone(),
            message: shared.masker.mask(&message),
        });
    }
    shared.sink.emit(&Event::StepFinished {
        step: step.id.value.clone(),
        item,
        status: o.status,
        attempts: o.attempts,
        duration: o.duration,
        error: o.error.clone(),
        note: o.note.clone(),
    });
}
