//! `cairn resume RUN`: continue a failed, interrupted or paused run. What runs again is
//! decided by [`crate::decide`] (pure), and carried out by `reclaim.rs`; this is the door
//! callers use.

use crate::events::Sink;
use crate::options::RunOptions;
use cairn_model::Checked;
use cairn_state::Store;
use cairn_template::Templates;
use std::sync::Arc;

pub use crate::decide::{ResumeError, ResumeOptions};
pub use crate::reclaim::Resumed;

/// Continue run `run` (an id or a unique prefix).
pub async fn resume(
    run: &str,
    templates: Arc<Templates>,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    opts: RunOptions,
    ropts: &ResumeOptions,
) -> Result<Resumed, ResumeError> {
    crate::reclaim::resume_with(
        run,
        templates,
        store,
        sink,
        opts,
        ropts,
        Arc::new(crate::subrun::Children),
    )
    .await
}

/// The checked runbook of a stored run, for commands that need step names.
pub fn runbook_of(path: &str, templates: &Templates) -> Option<Checked> {
    cairn_model::load(std::path::Path::new(path), templates)
        .ok()
        .map(|(c, _)| c)
}
