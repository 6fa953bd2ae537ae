//! `StateError`: every way the store can fail, each displayed as one clear line.

/// An error from the checkpoint store. `Display` is one line meant for the operator; the
/// underlying database error, where there is one, is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened, created or migrated.
    #[error("cannot open state database {target}: {reason}")]
    Open {
        /// The path or URL, password removed.
        target: String,
        /// Why, e.g. "permission denied", "connection refused".
        reason: String,
    },
    /// Opening a store that must exist (to read or answer a run) found none there.
    #[error("no state store at {target}: {reason}")]
    NoStore {
        /// The path or URL, password removed.
        target: String,
        /// What was found instead.
        reason: String,
    },
    /// The state URL is not one this crate understands.
    #[error("unsupported state URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as given, password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was migrated by a newer cairn.
    #[error(
        "state database {target} has schema version {found}, newer than this cairn supports ({supported}): upgrade cairn"
    )]
    SchemaTooNew {
        /// The path or URL, password removed.
        target: String,
        /// The version found in `cairn_schema`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// No run has this id.
    #[error("run `{0}` not found")]
    RunNotFound(String),
    /// A run with this id already exists.
    #[error("run `{0}` already exists")]
    RunExists(String),
    /// A run id prefix matches more than one run.
    #[error("run id prefix `{prefix}` is ambiguous: it matches {}", candidates.join(", "))]
    AmbiguousRunId {
        /// The prefix given.
        prefix: String,
        /// The matching ids (at most a few).
        candidates: Vec<String>,
    },
    /// A checkpoint write refused because another process claimed the run since this one
    /// did (a second `cairn resume`, or a takeover after a stall): this process must stop.
    #[error("lost the claim on run {run_id} (attempt {attempt}): {holder}; this process stops")]
    Fenced {
        /// The run.
        run_id: String,
        /// The attempt this process had claimed.
        attempt: u32,
        /// Who holds the run now.
        holder: crate::types::RunHolder,
    },
    /// The SQLite file the store opened is no longer the file at its path: it was deleted,
    /// renamed or replaced while open. Writing on would write into a file nobody can read again.
    #[error(
        "state database {path} was {what} while this process had it open; nothing more is \
         written to it"
    )]
    FileReplaced {
        /// The database file.
        path: String,
        /// "deleted" or "replaced by another file".
        what: &'static str,
    },
    /// Other processes kept taking and releasing the lock while we tried to; try again.
    #[error("lock `{0}` changed hands too often to be taken; try again")]
    LockContended(String),
    /// A stored value could not be read back (hand-edited or damaged database).
    #[error("corrupt state database: {0}")]
    Corrupt(String),
    /// A query failed; `action` says what the store was doing.
    #[error("state database error while {action}")]
    Query {
        /// E.g. "saving step `dump` of run 01J...".
        action: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl StateError {
    /// Wraps a driver error with what the store was doing.
    pub(crate) fn query(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StateError {
        let action = action.into();
        move |source| StateError::Query { action, source }
    }
}

/// Turns an I/O error into the short lowercase reason used in `Open`, e.g. "permission denied"
/// instead of "Permission denied (os error 13)".
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    lowercase_first(&text)
}

/// The reason a driver error gives for a failed open, without the driver's framing.
pub(crate) fn sqlx_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io_reason(io),
        sqlx::Error::Database(db) => lowercase_first(db.message()),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_string(),
        sqlx::Error::Tls(t) => format!("TLS: {t}"),
        other => lowercase_first(&other.to_string()),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        // Keep acronyms ("TLS handshake") as they are.
        Some(c) if c.is_uppercase() && !chars.next().is_some_and(char::is_uppercase) => {
            c.to_lowercase().chain(s[c.len_utf8()..].chars()).collect()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_are_short() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(io_reason(&e), "permission denied");
        assert_eq!(lowercase_first("TLS handshake"), "TLS handshake");
    }
}
