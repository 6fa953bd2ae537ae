//! Durations written as templates (a step's `timeout`; a `wait`'s `duration`, `interval` and
//! `timeout`): rendered when the step starts, then read as a duration. A value that is not one
//! fails the step, naming the field, the template and its line in the runbook.

use crate::action::StepAction;
use crate::prepare::{RenderError, Renderer};
use cairn_model::Tmpl;
use std::time::Duration;

/// The template `t`, rendered and read as a duration (`90s`, `2m`, `1h 30m`).
pub(crate) fn render(r: &Renderer<'_>, t: &Tmpl, field: &str) -> Result<Duration, RenderError> {
    let text = r.text(t, field)?;
    humantime::parse_duration(text.trim()).map_err(|e| RenderError {
        field: field.to_string(),
        message: format!(
            "`{}` gave `{text}`, which is not a duration ({e}): write it like `30s`, `10m` or `1h30m`",
            t.src.trim()
        ),
        undecided: None,
        line: Some(t.span.line),
    })
}

/// The timeout of one attempt: the step's template rendered now, else the fixed one.
pub(crate) fn timeout(
    r: &Renderer<'_>,
    action: &StepAction,
) -> Result<Option<Duration>, RenderError> {
    match &action.timeout_template {
        Some(t) => render(r, t, "timeout").map(Some),
        None => Ok(action.timeout),
    }
}
