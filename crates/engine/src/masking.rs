//! The masking door: every byte that leaves the engine passes through here, masked before it
//! is cut or truncated. Nothing else in the engine calls the [`Masker`]:
//!
//! - the state store, through [`Door::store`] (a [`Store`] that masks what it writes);
//! - the events the CLI renders (progress lines, JSON events, the summary), through
//!   [`Door::sink`]; a step's one-line description is cut only after masking;
//! - step logs and reports, written by [`Door::write_file`] and [`Door::replace_file`];
//! - the captured output of processes, masked as a stream by [`Door::stream`]: only what it
//!   returns reaches a step's result and its live log (written while the process runs);
//! - what `execute` and `resume` return: [`Door::report`] and [`Door::run_error`];
//! - the plan and anything else the CLI prints from a runbook: [`Door::text`], with the door
//!   the plan is built with (`Plan::door`): the same secret reader and masks as a run.

use crate::events::{Event, Sink};
use crate::options::RunOptions;
use crate::outcome::{RunError, RunReport};
use crate::prepare::ResolvedTarget;
use crate::secrets::Masker;
use async_trait::async_trait;
use cairn_state::{
    Approval, Claim, LockHolder, LockInfo, RunFilter, RunHolder, RunRecord, StateError, StepDef,
    StepRecord, Store,
};
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;

/// The longest one-line description of an action in events, in characters (after masking).
pub const HEADLINE_CHARS: usize = 100;

/// Masks everything that leaves the engine; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Door {
    masker: Arc<Masker>,
}

impl Door {
    pub fn new(masker: Masker) -> Door {
        Door {
            masker: Arc::new(masker),
        }
    }

    /// The masker, for a sub-run to inherit (its bytes are masked for this run's secrets too).
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Text for the terminal or a file.
    pub fn text(&self, text: &str) -> String {
        self.masker.mask(text)
    }

    /// A JSON value for the terminal or a file.
    pub fn json(&self, v: &Json) -> Json {
        self.masker.mask_json(v)
    }

    /// Whether a value holds a secret in any masked form (a `with:` value rendered from one).
    pub fn holds_secret(&self, v: &Json) -> bool {
        !self.masker.is_empty() && self.masker.mask_json(v) != *v
    }

    /// A store that masks every record it is given to write.
    pub fn store(&self, inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(MaskedStore {
            inner,
            door: self.clone(),
        })
    }

    /// A sink that masks every event before passing it on.
    pub fn sink(&self, inner: Arc<dyn Sink>) -> Arc<dyn Sink> {
        Arc::new(MaskedSink {
            inner,
            door: self.clone(),
        })
    }

    /// A filter for a process's captured output: masked as a stream, with enough overlap
    /// between chunks that no secret is split, so the kept tail never starts inside one.
    pub fn stream(&self) -> Option<Arc<dyn cairn_steps::shell::OutputFilter>> {
        (!self.masker.is_empty()).then(|| {
            Arc::new(StreamMask {
                masker: self.masker.clone(),
            }) as Arc<dyn cairn_steps::shell::OutputFilter>
        })
    }

    /// Writes `text`, masked, to `path` (folders created); returns the bytes written.
    pub fn write_file(&self, path: &std::path::Path, text: &str) -> std::io::Result<usize> {
        let masked = self.masker.mask(text);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &masked)?;
        Ok(masked.len())
    }

    /// Writes `text`, masked, to a new file renamed over `path` (folders created), so that a
    /// reader of the old file (a step's live log) sees a new file, never a mix of the two.
    pub fn replace_file(&self, path: &std::path::Path, text: &str) -> std::io::Result<usize> {
        let masked = self.masker.mask(text);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".new");
        let new = dir.join(name);
        std::fs::write(&new, &masked)?;
        std::fs::rename(&new, path)?;
        Ok(masked.len())
    }

    /// A run's report as it leaves the engine.
    pub(crate) fn report(&self, mut r: RunReport) -> RunReport {
        r.outputs = self.masker.mask_json(&r.outputs);
        for s in &mut r.steps {
            self.opt(&mut s.error);
            self.opt(&mut s.note);
            self.opt(&mut s.state);
        }
        self.warnings(&mut r.warnings);
        r
    }

    fn warnings(&self, list: &mut [crate::warnings::CheckWarning]) {
        for w in list {
            w.value = self.masker.mask_json(&w.value);
            self.opt(&mut w.unit);
        }
    }

    /// An error as it leaves the engine.
    pub(crate) fn run_error(&self, e: RunError) -> RunError {
        match e {
            RunError::Inputs(list) => RunError::Inputs(self.all(list)),
            RunError::Secrets(list) => RunError::Secrets(self.all(list)),
            RunError::Render { what, mut source } => {
                source.message = self.masker.mask(&source.message);
                RunError::Render {
                    what: self.masker.mask(&what),
                    source,
                }
            }
            other => other,
        }
    }

    pub(crate) fn all(&self, list: Vec<String>) -> Vec<String> {
        list.iter().map(|s| self.masker.mask(s)).collect()
    }

    fn opt(&self, s: &mut Option<String>) {
        if let Some(text) = s {
            *text = self.masker.mask(text);
        }
    }

    fn opt_json(&self, v: &mut Option<Json>) {
        if let Some(value) = v {
            *value = self.masker.mask_json(value);
        }
    }

    fn event(&self, event: &Event) -> Event {
        let mut e = event.clone();
        match &mut e {
            Event::RunStarted { .. } => {}
            Event::StepStarted { what, .. } => *what = headline(&self.masker.mask(what)),
            Event::StepRetrying { error, .. } => *error = self.masker.mask(error),
            Event::StepFinished { error, note, .. } => {
                self.opt(error);
                self.opt(note);
            }
            Event::ApprovalWaiting { message, .. } => *message = self.masker.mask(message),
            Event::ApprovalNote { text, .. } => *text = self.masker.mask(text),
            Event::ApprovalAnswered { .. } => {}
            Event::RunFinished {
                steps,
                outputs,
                warnings,
                ..
            } => {
                for s in steps {
                    self.opt(&mut s.error);
                    self.opt(&mut s.note);
                    self.opt(&mut s.state);
                }
                self.warnings(warnings);
                *outputs = self.masker.mask_json(outputs);
            }
        }
        e
    }

    fn run(&self, r: &RunRecord) -> RunRecord {
        let mut r = r.clone();
        r.inputs = self.masker.mask_json(&r.inputs);
        self.opt_json(&mut r.outputs);
        self.opt(&mut r.error);
        r
    }

    fn step(&self, s: &StepRecord) -> StepRecord {
        let mut s = s.clone();
        self.opt_json(&mut s.result);
        self.opt_json(&mut s.outputs);
        self.opt(&mut s.error);
        s
    }
}

/// The first non-empty line of an already masked text, cut to [`HEADLINE_CHARS`].
fn headline(masked: &str) -> String {
    let line = masked
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    match line.char_indices().nth(HEADLINE_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

struct MaskedSink {
    inner: Arc<dyn Sink>,
    door: Door,
}

impl Sink for MaskedSink {
    fn emit(&self, event: &Event) {
        self.inner.emit(&self.door.event(event));
    }
}

struct StreamMask {
    masker: Arc<Masker>,
}

impl cairn_steps::shell::OutputFilter for StreamMask {
    fn filter(&self, data: &[u8], at_end: bool) -> (Vec<u8>, usize) {
        self.masker.mask_stream(data, at_end)
    }
}

struct MaskedStore {
    inner: Arc<dyn Store>,
    door: Door,
}

#[async_trait]
impl Store for MaskedStore {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        self.inner.create_run(&self.door.run(run), defs).await
    }
    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError> {
        self.inner.claim_run(&self.door.run(run)).await
    }
    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.inner.update_run(&self.door.run(run)).await
    }
    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError> {
        self.inner.set_step_defs(claim, defs).await
    }
    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        self.inner.step_defs(run_id).await
    }
    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError> {
        self.inner.heartbeat(claim).await
    }
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        self.inner.list_runs(filter).await
    }
    async fn list_run_rows(
        &self,
        filter: &RunFilter,
    ) -> Result<Vec<cairn_state::ListedRun>, StateError> {
        self.inner.list_run_rows(filter).await
    }
    async fn waiting_gates(&self, limit: u32) -> Result<Vec<cairn_state::WaitingGate>, StateError> {
        self.inner.waiting_gates(limit).await
    }
    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError> {
        self.inner.put_step(claim, &self.door.step(rec)).await
    }
    async fn put_steps(&self, claim: &Claim, recs: &[StepRecord]) -> Result<(), StateError> {
        let masked: Vec<StepRecord> = recs.iter().map(|r| self.door.step(r)).collect();
        self.inner.put_steps(claim, &masked).await
    }
    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError> {
        self.inner.sub_runs(parent_run).await
    }
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        self.inner.steps(run_id).await
    }
    async fn try_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError> {
        self.inner.try_lock(name, holder, lease).await
    }
    async fn release_lock(&self, name: &str, claim: &Claim) -> Result<(), StateError> {
        self.inner.release_lock(name, claim).await
    }
    async fn release_locks(&self, claim: &Claim) -> Result<(), StateError> {
        self.inner.release_locks(claim).await
    }
    async fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        self.inner.locks().await
    }
    async fn record_approval(&self, a: &Approval) -> Result<(), StateError> {
        let mut a = a.clone();
        a.by = self.door.masker.mask(&a.by);
        self.inner.record_approval(&a).await
    }
    async fn approvals(&self, run_id: &str) -> Result<Vec<Approval>, StateError> {
        self.inner.approvals(run_id).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
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
            cairn_url::secrets(&t.url)
                .into_iter()
                .filter(|v| v != cairn_template::MASK),
        );
        masker.add(
            [t.password.clone(), t.bearer.clone(), basic_pw]
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

#[cfg(test)]
mod tests {
    use super::headline;

    /// A listing through the door keeps the store's per-row reading: one damaged run row is
    /// listed as unreadable, and the other runs are still listed.
    #[tokio::test]
    async fn one_damaged_row_does_not_hide_the_history_through_the_door() {
        use cairn_state::{ListedRun, RunFilter, RunRecord};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let store = cairn_state::open(&path.display().to_string())
            .await
            .expect("open");
        let mut ids = Vec::new();
        for _ in 0..2 {
            let run = RunRecord::start("r", "r.yaml", "h", serde_json::json!({}), "sre");
            store.create_run(&run, &[]).await.expect("create_run");
            ids.push(run.id);
        }
        let broke = std::process::Command::new("sqlite3")
            .arg(&path)
            .arg(format!(
                "UPDATE cairn_runs SET status = 'exploded' WHERE id = '{}'",
                ids[0]
            ))
            .status()
            .expect("run sqlite3")
            .success();
        assert!(broke);
        let door = super::Door::new(crate::secrets::Masker::new(Vec::<String>::new()));
        let rows = door
            .store(store.clone())
            .list_run_rows(&RunFilter::default())
            .await
            .expect("list_run_rows through the door");
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .any(|r| matches!(r, ListedRun::Unreadable { id, .. } if *id == ids[0])),
            "{rows:?}"
        );
        assert!(
            rows.iter()
                .any(|r| matches!(r, ListedRun::Run(run) if run.id == ids[1])),
            "{rows:?}"
        );
        store.close().await;
    }

    #[test]
    fn a_headline_is_cut_after_masking() {
        assert_eq!(headline("\n\n  $ echo a\nb"), "$ echo a");
        let long = "x".repeat(150);
        assert_eq!(headline(&long).chars().count(), 101);
    }
}
