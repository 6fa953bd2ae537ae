//! What the executor reports while it runs: one event per transition. The CLI renders them
//! (live view on a TTY, one line per transition otherwise, JSON lines with --log-format json);
//! the engine never prints.

use serde::Serialize;
use serde_json::Value as Json;
use std::time::Duration;

/// Final or current state of a step (or of one `for_each` item): the state store's own enum,
/// so what a run reports and what it records are one type, with one text for each value.
pub use cairn_state::StepStatus as Status;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    /// Succeeded while a `check` was not `ok` (see [`crate::warnings`]).
    SucceededWithWarnings,
    Failed,
    Paused,
    Interrupted,
}

impl RunOutcome {
    /// Succeeded, with or without warnings.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings
        )
    }
    /// The exit code of the contract. Warnings exit 0 unless the command line asks for
    /// another code (`--warnings-exit`): the check's `fail_on` already says whether a warning
    /// fails.
    pub fn exit_code(self) -> u8 {
        use crate::exit;
        match self {
            RunOutcome::Succeeded | RunOutcome::SucceededWithWarnings => exit::OK,
            RunOutcome::Failed => exit::STEP_FAILED,
            RunOutcome::Paused => exit::PAUSED,
            RunOutcome::Interrupted => exit::INTERRUPTED,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::SucceededWithWarnings => "succeeded_with_warnings",
            RunOutcome::Failed => "failed",
            RunOutcome::Paused => "paused",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// A run's outcome as a word, from its recorded status and its checks: `succeeded` becomes
/// `succeeded_with_warnings` when a check was not `ok`.
pub fn outcome_word(
    status: cairn_state::RunStatus,
    warnings: &[crate::warnings::CheckWarning],
) -> String {
    if status == cairn_state::RunStatus::Succeeded && !warnings.is_empty() {
        RunOutcome::SucceededWithWarnings.as_str().to_string()
    } else {
        status.to_string()
    }
}

/// The summary line of one step at the end of a run.
#[derive(Clone, Debug, Serialize)]
pub struct StepSummary {
    pub id: String,
    pub kind: &'static str,
    pub status: Status,
    pub attempts: u32,
    #[serde(serialize_with = "ms")]
    pub duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `check` steps: ok / warning / critical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why a step did not run (`not run: \`x\` failed`), or a short result note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Elapsed time against the runbook's `rto`.
#[derive(Clone, Debug, Serialize)]
pub struct RtoVerdict {
    #[serde(serialize_with = "ms")]
    pub rto: Duration,
    #[serde(serialize_with = "ms")]
    pub elapsed: Duration,
    pub met: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        runbook: String,
        steps: usize,
        dry_run: bool,
    },
    StepStarted {
        step: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        attempt: u32,
        /// One line: the command, `GET url`, `sql on db`...
        what: String,
    },
    StepRetrying {
        step: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        attempt: u32,
        #[serde(serialize_with = "ms")]
        delay: Duration,
        error: String,
    },
    StepFinished {
        step: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        status: Status,
        attempts: u32,
        #[serde(serialize_with = "ms")]
        duration: Duration,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// A short result note: `exit 0`, `HTTP 200 in 12 ms`, `3 rows`, `check warning: 85 %`.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    ApprovalWaiting {
        step: String,
        message: String,
        /// The run to answer (`cairn approve RUN STEP`).
        run_id: String,
        /// Who may answer and how many, in one line.
        rules: String,
        /// This process asks on its terminal too (an answer from any shell still counts).
        prompt: bool,
    },
    /// A waiting gate was decided: at its prompt, or, on resume, by answers given during the
    /// pause (or its timeout).
    ApprovalAnswered {
        step: String,
        approved: bool,
        /// Who decided it: `alice, bob`, `auto:carol`, `timeout`.
        by: String,
    },
    /// What happened to an answer at a waiting gate: refused (naming the rule), counted
    /// towards a quorum, or deciding.
    ApprovalNote { step: String, text: String },
    RunFinished {
        run_id: String,
        outcome: RunOutcome,
        #[serde(serialize_with = "ms")]
        duration: Duration,
        steps: Vec<StepSummary>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rto: Option<RtoVerdict>,
        /// The checks that were not `ok`, when the outcome is `succeeded_with_warnings`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<crate::warnings::CheckWarning>,
        outputs: Json,
    },
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Where events go. The CLI's renderer implements it; tests collect events in a Vec.
pub trait Sink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Discards events.
pub struct NoSink;
impl Sink for NoSink {
    fn emit(&self, _: &Event) {}
}
