//! `execute`: run a checked runbook's DAG on tokio, with a checkpoint in the state store before
//! and after every step, retries, timeouts, `for_each` fan-out, `when`, `expect`, `outputs`,
//! `on_failure`, `finally`, secrets masking and events for the CLI.
//!
//! The engine, bottom up: the outcome and error types (`outcome.rs`) and run options
//! (`options.rs`); the masking door (`masking.rs`); the shared run state and its checkpoints
//! (`shared.rs`); the built-in kinds (`builtin.rs`); the step runner (`step_runner.rs`); the DAG walk
//! (`schedule.rs`); the attempt driver (`attempt.rs`); starting a run (`start.rs`) and
//! resuming one (`decide.rs`, pure, then `reclaim.rs`); `subrun.rs` on top, giving `uses` steps
//! their child runs. This file and `resume.rs` are the doors callers use.

use crate::events::Sink;
use crate::plan::Invocation;
use cairn_model::Checked;
use cairn_state::Store;
use cairn_template::Templates;
use std::sync::Arc;

pub use crate::exit;
pub use crate::options::RunOptions;
pub use crate::outcome::{ErrorKind, LOCK_LEASE, RunError, RunReport};
pub use crate::shared::{content_hash, def_hash, step_defs};

/// Run a checked runbook to its end (or pause, or interruption).
pub async fn execute(
    checked: Arc<Checked>,
    templates: Arc<Templates>,
    inv: &Invocation,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    crate::start::start(
        checked,
        templates,
        inv,
        store,
        sink,
        opts,
        Arc::new(crate::subrun::Children),
    )
    .await
}
