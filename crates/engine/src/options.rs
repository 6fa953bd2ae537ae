//! How to run: the options a caller gives `execute` and `resume` (and a `uses` step gives its
//! sub-run).

use crate::secrets::Masker;
use serde_json::Value as Json;
use std::path::PathBuf;
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
    /// For a sub-run: the parent's claimed attempt, under which the sub-run is created or
    /// claimed (the store refuses once another engine claimed the parent).
    pub parent_attempt: Option<u32>,
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
    /// The id to give a new run instead of a fresh one (a queued run keeps the id it was
    /// submitted under). Never passed on to sub-runs.
    pub run_id: Option<String>,
    /// A test's stand-ins for gate answers and sub-runs (`cairn test`); `None` in a real run.
    pub stand_ins: Option<crate::stand_in::StandInPort>,
    /// Write `report` steps' files under this folder (a relative `to` joined to it, an
    /// absolute one with its root dropped) instead of where `to` says (`cairn test`).
    pub reports_under: Option<PathBuf>,
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
            parent_attempt: None,
            uses_chain: Vec::new(),
            parent_step: None,
            actions: None,
            inherited: Masker::default(),
            secret_inputs: Default::default(),
            run_id: None,
            stand_ins: None,
            reports_under: None,
        }
    }
}
