//! Why one delivery attempt failed.

/// One attempt's failure. Its text may hold settings (a URL, an address): the dispatcher masks
/// it before anyone sees it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Http(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("no notifier named `{0}`")]
    UnknownNotifier(String),
    #[error("cancelled: the dispatcher shut down")]
    Cancelled,
}
