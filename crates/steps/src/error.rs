//! The one error type every step kind returns.

use serde_json::Value;

/// Why a step did not succeed. `Display` is the one line an operator reads at 3 a.m.:
/// it names the cause (connection refused, authentication failed, timeout after N s,
/// command not found, ...). The engine adds the step id and the (masked) target.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The action ran and reported failure (non-zero exit, HTTP status, SQL error).
    /// `result` holds whatever was captured, so `cairn show` can display it.
    #[error("{message}")]
    Failed {
        message: String,
        result: Option<Value>,
    },
    /// The step exceeded its timeout; everything it started has been stopped.
    #[error("timeout after {}", humanize(*.after))]
    Timeout {
        after: std::time::Duration,
        result: Option<Value>,
    },
    /// The run was cancelled (Ctrl-C, SIGTERM) while the step ran.
    #[error("cancelled")]
    Cancelled { result: Option<Value> },
    /// The step could not even start: bad URL, unknown driver, command not found, refused connection.
    #[error("{message}")]
    Setup { message: String },
}

impl StepError {
    pub fn failed(message: impl Into<String>, result: Option<Value>) -> Self {
        StepError::Failed {
            message: message.into(),
            result,
        }
    }
    pub fn setup(message: impl Into<String>) -> Self {
        StepError::Setup {
            message: message.into(),
        }
    }
    /// Whatever the step captured before it failed.
    pub fn result(&self) -> Option<&Value> {
        match self {
            StepError::Failed { result, .. }
            | StepError::Timeout { result, .. }
            | StepError::Cancelled { result } => result.as_ref(),
            StepError::Setup { .. } => None,
        }
    }
}

fn humanize(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
