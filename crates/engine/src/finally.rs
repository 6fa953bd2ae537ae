//! `finally` steps that wait for the run to succeed (`keep_for_resume: true`).
//!
//! `finally` runs at the end of every attempt, but a failed or interrupted run may be resumed
//! after a fix: a cleanup that removes what the resume needs (a scratch database) is held back
//! until the attempt that ends the run succeeded. Held back = recorded `skipped` with a note
//! saying why; `finally` is never counted as done, so the next attempt decides again.

use crate::outcome::Outcome;
use crate::shared::{Shared, fails_run};

/// Why the `finally` step `i` is held back in this attempt, or `None` when it runs. A
/// `keep_for_resume` step runs only while nothing has failed the run (a main step, or an
/// earlier `finally` step), the run was not interrupted and the store works.
pub(crate) fn held_back(
    shared: &Shared,
    i: usize,
    interrupted: bool,
    outcomes: &[Option<Outcome>],
) -> Option<String> {
    if !shared.step(i).keep_for_resume() {
        return None;
    }
    let failed = outcomes
        .iter()
        .enumerate()
        .find(|(j, o)| o.as_ref().is_some_and(|o| fails_run(shared, *j, o)));
    let why = if let Some((j, _)) = failed {
        format!("step `{}` failed", shared.step(j).id.value)
    } else if interrupted {
        "the run was interrupted".to_string()
    } else if shared.store_error().is_some() {
        "the state store failed".to_string()
    } else {
        return None;
    };
    Some(format!(
        "kept for a resume ({why}): runs when the run succeeds"
    ))
}
