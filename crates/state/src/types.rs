//! The records the store keeps: runs, steps, the step DAG, locks and approvals.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A status string that is not one of the known values, e.g. `cairn runs --status finished`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {})", expected.join(", "))]
pub struct ParseStatusError {
    /// What was being parsed: "run status", "step status", "decision".
    pub kind: &'static str,
    /// The text that was given.
    pub value: String,
    /// The accepted values.
    pub expected: &'static [&'static str],
}

// One definition gives each enum its canonical lowercase text, used by serde (through
// `rename_all`), Display, FromStr and the database columns alike, so the four cannot drift.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical lowercase text, as stored and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseStatusError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseStatusError {
                        kind: $kind,
                        value: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

text_enum!(
    /// Where a run stands. `Interrupted` is also computed on read for a `running` run whose
    /// process is gone (see [`crate::pid_alive`] and [`crate::STALE_AFTER`]).
    RunStatus, "run status", {
        /// A process is executing it (and heartbeating).
        Running = "running",
        /// Every step that had to run succeeded.
        Succeeded = "succeeded",
        /// A step failed with `on_failure: abort`, or an approval was rejected.
        Failed = "failed",
        /// Waiting for `cairn approve`; keeps its locks.
        Paused = "paused",
        /// The process died or was stopped before the run ended; resumable.
        Interrupted = "interrupted",
    }
);

impl RunStatus {
    /// True once the run has ended and gives up its locks: succeeded, failed or interrupted.
    /// A paused run is not finished: it still holds its locks until it is resumed to an end.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Interrupted
        )
    }
}

text_enum!(
    /// Where one step (or one `for_each` item of it) stands.
    StepStatus, "step status", {
        /// Not started yet.
        Pending = "pending",
        /// Started; committed before the action begins, so a crash leaves it "in doubt".
        Running = "running",
        /// Finished and its `expect` held.
        Succeeded = "succeeded",
        /// Finished with an error or a failed `expect`.
        Failed = "failed",
        /// Its `when` was false, or it was skipped on resume.
        Skipped = "skipped",
        /// An approval gate waiting for an answer.
        Waiting = "waiting",
        /// Not run because an upstream step aborted the run.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// The answer given at an approval gate.
    Decision, "decision", {
        /// `cairn approve`.
        Approved = "approved",
        /// `cairn reject`.
        Rejected = "rejected",
    }
);

/// One execution of a runbook, across all its attempts (resumes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// A ULID ([`crate::new_run_id`]): sorts by creation time; any unique prefix finds it.
    pub id: String,
    /// The runbook's `name`.
    pub runbook: String,
    /// The runbook file as given on the command line.
    pub path: String,
    /// Hash of the runbook file's content at the latest attempt.
    pub content_hash: String,
    /// The inputs, already masked by the engine: never secrets.
    pub inputs: serde_json::Value,
    /// The runbook's `labels` as they were when the run was created (a sub-run: its own
    /// runbook's). Written once with the run and never changed; none for a run recorded
    /// before schema version 9.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where the run stands.
    pub status: RunStatus,
    /// When the first attempt started.
    pub started_at: DateTime<Utc>,
    /// When it ended (succeeded or failed); `None` while running, paused or interrupted.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last sign of life of the executing process ([`crate::Store::heartbeat`]), by its clock:
    /// shown, never compared with another host's clock.
    pub heartbeat_at: DateTime<Utc>,
    /// The heartbeat counter: the store adds one at every heartbeat, claim and update of the
    /// run, whatever the value given. Readers on other hosts judge liveness by it.
    #[serde(default, skip_serializing)]
    pub heartbeat_seq: u64,
    /// As read, for a `running` run of another host that this reader has not just seen move
    /// its heartbeat counter: how much longer the counter must stand still (by this host's
    /// boot clock) before this host may judge the run interrupted. Not stored.
    #[serde(skip)]
    pub unconfirmed: Option<Duration>,
    /// Host name of the executing process ([`crate::current_host`]).
    pub host: String,
    /// Process id of the executing process.
    pub pid: u32,
    /// When that process started, in clock ticks after the host's boot (`/proc/PID/stat`),
    /// where the host says ([`crate::process_start`]): with `pid` it names the process on its
    /// host, even once the pid is reused. Not shown in listings.
    #[serde(default, skip_serializing)]
    pub pid_start: Option<u64>,
    /// Who started (or last resumed) it.
    pub user: String,
    /// The run whose `uses` step started this one as a sub-run.
    pub parent_run: Option<String>,
    /// The runbook's `outputs`, once rendered.
    pub outputs: Option<serde_json::Value>,
    /// Why it failed, one line.
    pub error: Option<String>,
    /// 1 for the first execution, +1 per resume. Also the fence: only the process that
    /// claimed this attempt ([`crate::Store::claim_run`]) may write the run's checkpoints.
    pub attempt: u32,
    /// When the latest attempt was claimed (the run created, or resumed).
    pub claimed_at: DateTime<Utc>,
    /// For a sub-run, the parent's step that started it: `deploy`, or `deploy[3]` for item 3
    /// of a `for_each`. Each such step (or item) has its own sub-run.
    pub parent_step: Option<String>,
    /// For a sub-run being created ([`crate::Store::create_run`]) or claimed
    /// ([`crate::Store::claim_run`]) by its parent's `uses` step: the attempt of the parent
    /// under which this happens. The store refuses with [`crate::StateError::Fenced`] unless it
    /// is still the parent's stored attempt, so an engine that lost the parent can neither
    /// start nor take up a sub-run of it. `None` for a top-level run, and for a sub-run resumed
    /// on its own (`cairn resume CHILD`). Not stored.
    #[serde(skip)]
    pub parent_attempt: Option<u32>,
}

impl RunRecord {
    /// A fresh `running` record for this process: new id, attempt 1, started and heartbeating now.
    pub fn start(
        runbook: impl Into<String>,
        path: impl Into<String>,
        content_hash: impl Into<String>,
        inputs: serde_json::Value,
        user: impl Into<String>,
    ) -> Self {
        let now = crate::now();
        RunRecord {
            id: crate::new_run_id(),
            runbook: runbook.into(),
            path: path.into(),
            content_hash: content_hash.into(),
            inputs,
            labels: BTreeMap::new(),
            status: RunStatus::Running,
            started_at: now,
            finished_at: None,
            heartbeat_at: now,
            heartbeat_seq: 0,
            unconfirmed: None,
            host: crate::current_host(),
            pid: std::process::id(),
            pid_start: crate::process_start(std::process::id()),
            user: user.into(),
            parent_run: None,
            outputs: None,
            error: None,
            attempt: 1,
            claimed_at: now,
            parent_step: None,
            parent_attempt: None,
        }
    }

    /// True if the run carries every one of these labels (none asked: true).
    pub fn has_labels(&self, want: &[(String, String)]) -> bool {
        want.iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|have| have == v))
    }

    /// For a sub-run created or claimed by its parent's `uses` step, the parent's claim it
    /// happens under ([`RunRecord::parent_attempt`]); `None` otherwise.
    pub fn parent_claim(&self) -> Option<Claim> {
        Some(Claim {
            run_id: self.parent_run.clone()?,
            attempt: self.parent_attempt?,
        })
    }

    /// The claim this record's attempt stands for.
    pub fn claim(&self) -> Claim {
        Claim {
            run_id: self.id.clone(),
            attempt: self.attempt,
        }
    }

    /// Who holds the run's latest attempt, as told to a process refused or fenced out.
    pub fn holder(&self) -> RunHolder {
        RunHolder {
            run_id: self.id.clone(),
            attempt: self.attempt,
            status: self.status,
            host: self.host.clone(),
            pid: self.pid,
            since: self.claimed_at,
            unconfirmed: self.unconfirmed,
        }
    }
}

/// The right to write a run's checkpoints: its id and the attempt this process claimed. Every
/// checkpoint write is conditional on the run's stored attempt still being this one, so a
/// process whose run was claimed by another (a second `cairn resume`, a takeover after a
/// stall) cannot write any more and stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim {
    /// The run.
    pub run_id: String,
    /// The attempt this process works on.
    pub attempt: u32,
}

/// The holder of a run's latest attempt: returned when a claim is refused or lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHolder {
    /// The run.
    pub run_id: String,
    /// Its latest attempt.
    pub attempt: u32,
    /// Its status as stored.
    pub status: RunStatus,
    /// The host of the process that claimed that attempt.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it claimed it.
    pub since: DateTime<Utc>,
    /// [`RunRecord::unconfirmed`]: from this host it cannot be told yet whether that process is
    /// alive.
    #[serde(skip)]
    pub unconfirmed: Option<Duration>,
}

impl fmt::Display for RunHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} is {} (attempt {}) by pid {} on host {} since {}",
            self.run_id,
            if self.status == RunStatus::Running {
                "being run"
            } else {
                "held"
            },
            self.attempt,
            self.pid,
            self.host,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
        if let Some(wait) = self.unconfirmed {
            write!(
                f,
                "; from this host it cannot be told yet whether that process is alive (its \
                 heartbeat counter has not been seen to move here): if the counter stays \
                 still, the run is judged interrupted here in {}s; retry then",
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            )?;
        }
        Ok(())
    }
}

/// The checkpoint of one step, or of one `for_each` item of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The run it belongs to.
    pub run_id: String,
    /// The step's `id`.
    pub step_id: String,
    /// The `for_each` index; `None` is the step as a whole.
    pub item: Option<u32>,
    /// Where it stands.
    pub status: StepStatus,
    /// 1 for the first try, +1 per retry or re-run.
    pub attempt: u32,
    /// When the latest try started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the latest try ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The step kind's `result` (exit code, rows, response...), secrets masked.
    pub result: Option<serde_json::Value>,
    /// The step's rendered `outputs`.
    pub outputs: Option<serde_json::Value>,
    /// Why it failed, one line.
    pub error: Option<String>,
    /// Where the full captured output was written, if anywhere.
    pub log_path: Option<String>,
    /// Hash of the step's definition, to refuse resuming over an edited succeeded step.
    pub def_hash: String,
    /// The step's `idempotent` flag: an in-doubt non-idempotent step is not re-run blindly.
    pub idempotent: bool,
}

impl StepRecord {
    /// A `pending` record with no timings, result or outputs yet.
    pub fn new(
        run_id: impl Into<String>,
        step_id: impl Into<String>,
        item: Option<u32>,
        def_hash: impl Into<String>,
    ) -> Self {
        StepRecord {
            run_id: run_id.into(),
            step_id: step_id.into(),
            item,
            status: StepStatus::Pending,
            attempt: 0,
            started_at: None,
            finished_at: None,
            result: None,
            outputs: None,
            error: None,
            log_path: None,
            def_hash: def_hash.into(),
            idempotent: true,
        }
    }
}

/// One node of the step DAG as it was when the run started or was last resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDef {
    /// The step's `id`.
    pub step_id: String,
    /// Hash of the step's definition.
    pub def_hash: String,
    /// The steps it waits for (explicit or implied by order).
    pub needs: Vec<String>,
}

/// Who asks for a lock: a run, and the process executing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The run that will hold the lock.
    pub run_id: String,
    /// Host name of the process ([`crate::current_host`]).
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl LockHolder {
    /// The holder for `run_id` executed by this process on this host.
    pub fn this_process(run_id: impl Into<String>) -> Self {
        LockHolder {
            run_id: run_id.into(),
            host: crate::current_host(),
            pid: std::process::id(),
        }
    }
}

/// A lock as held, returned when a [`crate::Store::try_lock`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The lock's name, e.g. `db:prod`.
    pub name: String,
    /// The run holding it.
    pub run_id: String,
    /// The holder's host.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When the holder took it.
    pub since: DateTime<Utc>,
    /// Until when it holds without a heartbeat.
    pub lease_until: DateTime<Utc>,
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock `{}` is held by run {} on host {} (pid {}) since {}",
            self.name,
            self.run_id,
            self.host,
            self.pid,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// An answer at an approval gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The paused run.
    pub run_id: String,
    /// The approval step.
    pub step_id: String,
    /// Approved or rejected.
    pub decision: Decision,
    /// Who answered: the operating-system user who ran the command (`SUDO_USER` under sudo),
    /// `auto:<user>` for `--auto-approve`, `timeout` for a gate's `on_timeout`.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The answerer's words (`--comment`, or `--by` written by hand): never an identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The host the answer was given on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The terminal it was typed on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
}

/// Which runs [`crate::Store::list_runs`] returns. The default lists every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this runbook `name`.
    pub runbook: Option<String>,
    /// Only runs in this (effective) status.
    pub status: Option<RunStatus>,
    /// Only runs carrying every one of these labels (key, value).
    pub labels: Vec<(String, String)>,
    /// At most this many, the newest.
    pub limit: Option<u32>,
}

/// A step waiting for an answer in a paused run, as [`crate::Store::waiting_gates`] reads it:
/// the step's own checkpoint (not an item's) and what a list of gates shows of its run.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingGate {
    pub runbook: String,
    /// Who started the run (the gate's self-approval rule is about them).
    pub starter: String,
    /// The run's labels (a role scoped by label may answer only in a run that has them).
    pub labels: BTreeMap<String, String>,
    /// The step's checkpoint (its `run_id` is the run's).
    pub step: StepRecord,
}

/// One row of the run history as [`crate::Store::list_run_rows`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum ListedRun {
    /// A run read back whole.
    Run(Box<RunRecord>),
    /// A row that could not be decoded (a hand-edited or damaged database): its id, if that
    /// much could be read, and why.
    Unreadable { id: String, reason: String },
}

impl ListedRun {
    /// The run, or [`crate::StateError::Corrupt`] for an unreadable row.
    pub fn into_result(self) -> Result<RunRecord, crate::StateError> {
        match self {
            ListedRun::Run(r) => Ok(*r),
            ListedRun::Unreadable { id, reason } => {
                Err(crate::StateError::Corrupt(format!("run {id}: {reason}")))
            }
        }
    }
}

/// Where a page of the run history ends: the last run shown, by the order of the listing
/// (newest `started_at` first, then the greater id). The next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCursor {
    /// The last run's `started_at`.
    pub started_at: DateTime<Utc>,
    /// The last run's id.
    pub id: String,
}

impl RunCursor {
    /// The cursor just after `run`.
    pub fn after(run: &RunRecord) -> RunCursor {
        RunCursor {
            started_at: run.started_at,
            id: run.id.clone(),
        }
    }
}

/// Something a person did to a run from outside a terminal (an answer given in the web
/// console, a resume it started): who, from where, when. Kept in the run's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The run acted on.
    pub run_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the identity the console authenticated.
    pub by: String,
    /// Where from: the client's address as the server saw it (or as a trusted proxy told it).
    pub source: String,
    /// What: `approve`, `reject`, `resume`, ...
    pub action: String,
    /// The step it concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// What came of it, one line (recorded, refused and why, the process started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
