//! The state one run attempt shares among its step tasks ([`Shared`]), how it is set up
//! ([`Setup`]) and how its checkpoints are committed; the hashes recorded with a run; and the
//! [`SubRuns`] port through which a `uses` step starts or continues a child run (implemented
//! on top of the engine, in `subrun.rs`, so nothing here depends on how a run starts).

use crate::action::StepAction;
use crate::context::{Base, Local, StepView};
use crate::events::{Event, Sink, Status};
use crate::masking::Door;
use crate::options::RunOptions;
use crate::outcome::{Done, Hold, Outcome, RunError};
use crate::plan::{eval_vars, resolve_targets};
use crate::prepare::{Renderer, ResolvedTarget};
use crate::secrets::Masker;
use cairn_model::{Checked, OnFailure, Step};
use cairn_state::{RunRecord, StepRecord, Store};
use cairn_steps::StepError;
use cairn_template::Templates;
use indexmap::IndexMap;
use serde_json::Value as Json;
use sha2::Digest;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Starts or continues the child run of a `uses` step. Boxed with an explicit `Send` so the
/// recursion (a sub-run runs steps that may be `uses`) has a nameable future type.
pub(crate) trait SubRuns: Send + Sync {
    fn uses<'a>(
        &'a self,
        shared: &'a Arc<Shared>,
        step: &'a Step,
        runbook: &'a str,
        with: &'a IndexMap<String, Json>,
        local: &'a Local,
        cancel: &'a CancellationToken,
    ) -> futures::future::BoxFuture<'a, Result<Done, StepError>>;
}

/// Everything a step task needs, shared by reference count.
pub(crate) struct Shared {
    pub checked: Arc<Checked>,
    pub templates: Arc<Templates>,
    pub base: Arc<Base>,
    pub targets: IndexMap<String, ResolvedTarget>,
    /// Where `uses` steps get their child runs.
    pub subruns: Arc<dyn SubRuns>,
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

/// The evaluated context of a run attempt: secrets, masker, vars, targets.
pub(crate) struct Setup {
    pub(crate) door: Door,
    pub(crate) base: Arc<Base>,
    pub(crate) targets: IndexMap<String, ResolvedTarget>,
    /// On resume: the `for_each` items that succeeded in earlier attempts, by step index.
    pub(crate) earlier_items: std::collections::HashMap<usize, EarlierItems>,
    /// On resume: see [`Shared::prior_answers`].
    pub(crate) prior_answers: std::collections::HashMap<String, Json>,
    /// On resume: see [`Shared::waits_since`].
    pub(crate) waits_since: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// On resume: gates decided by answers given during the pause, told after the run starts.
    pub(crate) answered: Vec<Event>,
    /// Where `uses` steps get their child runs.
    pub(crate) subruns: Arc<dyn SubRuns>,
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
        subruns: Arc<dyn SubRuns>,
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
        crate::masking::mask_credentials(&mut masker, &targets);
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
            subruns,
        })
    }

    pub(crate) fn restore(&self, id: &str, view: &StepView) {
        self.base.steps.set(id, view);
    }
}

pub(crate) fn on_failure(shared: &Shared, i: usize) -> OnFailure {
    shared.action(i).on_failure
}

/// A failed step fails the run unless its `on_failure` is `continue`; a "no" that failed
/// (`on_reject: fail`) fails it whatever `on_failure` says.
pub(crate) fn fails_run(shared: &Shared, i: usize, o: &Outcome) -> bool {
    o.status == Status::Failed
        && (o.hold == Hold::Declined || on_failure(shared, i) == OnFailure::Abort)
}
