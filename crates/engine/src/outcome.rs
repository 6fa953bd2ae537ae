//! What running produces, at the bottom of the engine: a step's (or item's) [`Outcome`] and
//! the [`Hold`] that kept a step back, what an action returns ([`Done`]), and a run's
//! [`RunReport`] or [`RunError`]. Every other module of the run builds on these types and
//! none of them imports a module that runs anything.

use crate::events::{RunOutcome, Status, StepSummary};
use crate::prepare::RenderError;
use cairn_state::LockInfo;
use serde_json::Value as Json;
use std::time::Duration;

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

/// What kind of error stopped a run before it ran anything: each kind has one exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// What was asked is wrong (inputs, secrets, a template, the runbook, a step name).
    Invalid,
    /// Another run or process holds what this one needs (a lock, the run itself).
    Held,
    /// The state store failed: not a verdict on the runbook.
    Infrastructure,
}

impl ErrorKind {
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Invalid => crate::exit::INVALID,
            // Like a step that failed: nothing was run, and running again later may succeed.
            ErrorKind::Held => crate::exit::STEP_FAILED,
            ErrorKind::Infrastructure => crate::exit::INFRA,
        }
    }
}

impl RunError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::Inputs(_)
            | RunError::Secrets(_)
            | RunError::Render { .. }
            | RunError::PathNotUtf8(_)
            | RunError::Masking(_) => ErrorKind::Invalid,
            RunError::Locked(_) => ErrorKind::Held,
            RunError::State(_) => ErrorKind::Infrastructure,
        }
    }
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

/// What an action produced.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub result: Json,
    pub note: Option<String>,
    /// The action ran but its verdict is a failure (a critical check, a rejection).
    pub failure: Option<String>,
    /// An approval without a TTY: the run pauses.
    pub waiting: bool,
    /// A "no" (a rejected gate, or a sub-run that one ended): never retried, and nothing
    /// below it runs; the gate's `on_reject` says whether the run fails.
    pub declined: Option<cairn_model::OnReject>,
    pub state: Option<String>,
}

/// How long a lock holds without a heartbeat.
pub const LOCK_LEASE: Duration = Duration::from_secs(300);
