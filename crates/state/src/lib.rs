//! Cairn's durable state: the checkpoint [`Store`] the engine writes after every step
//! transition, and reads to resume a run after a failure, a crash or an approval pause.
//!
//! [`open`] picks the backend from a URL (`--state URL` / `$CAIRN_STATE`, see [`default_url`]):
//!
//! | URL | backend |
//! |---|---|
//! | `sqlite://PATH`, `sqlite://PATH?sync=full`, or a bare `PATH` | [`SqliteStore`], one file |
//! | `postgres://…` (or `postgresql://…`) | [`PgStore`], shared between machines |
//! | `memory:` | [`MemoryStore`], nothing kept after the process (dry tests, benchmarks) |
//!
//! ```
//! use cairn_state::{RunFilter, RunRecord, StepRecord, StepStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cairn_state::StateError> {
//! let store = cairn_state::open("memory:").await?;
//! let run = RunRecord::start("nightly-backup", "runbooks/backup.yaml", "sha256:…",
//!                            serde_json::json!({ "incremental": false }), "sre");
//! store.create_run(&run, &[]).await?; // this process holds run.claim()
//!
//! let mut step = StepRecord::new(&run.id, "pg_dump", None, "sha256:…");
//! step.status = StepStatus::Running;
//! store.put_step(&run.claim(), &step).await?; // committed: a crash from here on leaves it "in doubt"
//!
//! let runs = store.list_runs(&RunFilter::default()).await?;
//! assert_eq!(runs[0].id, run.id);
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! Every write is committed when its call returns, as one transaction (a run with its step
//! DAG, a step checkpoint, several checkpoints with [`Store::put_steps`], a lock). SQLite and
//! PostgreSQL are one implementation, [`SqlStore`], generic over the [`Dialect`]. What
//! "committed" survives depends on the backend:
//!
//! - **SQLite** (default `.cairn/state.db`): WAL journal. With the default `synchronous=NORMAL`
//!   a commit survives a crash or kill of the process, but the commits since the last WAL
//!   checkpoint may be lost on a power loss or kernel crash (each whole or not at all: the
//!   database stays consistent). `sqlite://PATH?sync=full`
//!   fsyncs every commit, so it survives power loss too, at the price of one fsync per
//!   checkpoint. Several processes on one host may share the file (writers take turns,
//!   waiting up to 30 s); do not put it on a network file system.
//! - **PostgreSQL**: whatever the server promises (with its defaults, durable on commit).
//!   Tables are prefixed `cairn_` and live in the connection's `search_path`
//!   (`?options=-c%20search_path%3Dops`). Any number of processes on any number of hosts may
//!   share it; taking a lock is atomic across all of them. Liveness compares no clocks of
//!   different hosts: on the run's own host it reads the pid and process start time, from
//!   another host a heartbeat counter watched on the reader's boot clock. JSON is stored
//!   as JSONB, which does not keep object key order (values compare equal, and SQLite and
//!   memory keep the order) and cannot hold the NUL character: a `\u0000` in a string or key
//!   is saved as U+FFFD rather than failing the checkpoint; likewise in error text.
//! - **Memory**: same semantics, held in a mutex; gone with the process.
//!
//! Times are kept to the microsecond on every backend ([`now`] gives such a time).
//!
//! Schema migrations are versioned (`cairn_schema`), applied on open, and safe when several
//! processes open the same database at once.
//!
//! # Fencing
//!
//! One process works on a run at a time. [`Store::create_run`] gives its caller attempt 1;
//! [`Store::claim_run`] moves a run that is not running to the next attempt with one
//! compare-and-set, so of several processes (on any hosts) claiming the same attempt exactly one
//! wins and the others learn who holds it ([`RunHolder`]). Every later write of the run
//! ([`Store::put_step`], [`Store::put_steps`], [`Store::heartbeat`], [`Store::update_run`],
//! [`Store::set_step_defs`], [`Store::release_lock`], [`Store::release_locks`])
//! is conditional on the stored attempt still being the writer's ([`Claim`]), checked in the
//! same statement; a process that lost the run gets [`StateError::Fenced`] and must stop.
//!
//! # Liveness
//!
//! A `running` run whose process is gone is reported `interrupted` by [`Store::get_run`] and
//! [`Store::list_runs`] (and saved so). Gone means: on this host, no process with its pid and
//! start time ([`process_start`]) is alive, whatever the clocks say; on another host, this host
//! has seen the run's heartbeat counter ([`RunRecord::heartbeat_seq`]) stand still for longer
//! than [`STALE_AFTER`], measured on this host's `CLOCK_BOOTTIME` and remembered in the store
//! between readers (table `cairn_sightings`). A first sight never judges: such a run reads
//! `running` with [`RunRecord::unconfirmed`] set. Locks follow the same rules plus a lease: see
//! [`Store::try_lock`]. So the engine should build `host` with [`current_host`], heartbeat every
//! [`HEARTBEAT_EVERY`], and know that a process stalled for longer than [`STALE_AFTER`] loses
//! its claim to the run and its locks.

// The run columns in the order both SQL backends select and insert them; a macro so that
// `concat!` can build whole `&'static str` queries from it.
macro_rules! run_columns {
    () => {
        "id, runbook, path, content_hash, inputs, status, started_at, finished_at, \
         heartbeat_at, host, pid, username, parent_run, outputs, error, attempt, claimed_at, \
         parent_step, pid_start"
    };
}

// The run columns as read: the stored ones, the heartbeat counter, which only the store
// writes, and the labels, written once by `create_run`.
macro_rules! run_read_columns {
    () => {
        concat!(run_columns!(), ", heartbeat_seq, labels")
    };
}

// Likewise for the step columns.
macro_rules! step_columns {
    () => {
        "run_id, step_id, item, status, attempt, started_at, finished_at, result, outputs, \
         error, log_path, def_hash, idempotent"
    };
}

mod codec;
mod error;
mod location;
mod lock;
mod memory;
mod sighting;
mod sql;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use error::StateError;
pub use location::{DefaultLocation, default_location};
pub use lock::{
    HEARTBEAT_EVERY, STALE_AFTER, current_host, now, pid_alive, process_start, stale_after,
};
pub use memory::MemoryStore;
pub use sql::{
    Dialect, Durability, ItemClaim, PgStore, QUEUE_CHANNEL, QueueItem, QueueStatus, QueueWakeups,
    Routed, RoutedStep, STEPS_CHANNEL, SqlStore, SqliteStore, StepItem, StepState, StepWakeups,
    Submission, WORKER_HEARTBEAT, WORKER_LEASE, WorkerRecord,
};
pub use types::{
    Action, Approval, Claim, Decision, ListedRun, LockHolder, LockInfo, ParseStatusError,
    RunCursor, RunFilter, RunHolder, RunRecord, RunStatus, StepDef, StepRecord, StepStatus,
    WaitingGate,
};

/// The schema version this build creates and understands, kept in the `cairn_schema` table.
/// Both SQL backends are migrated to the same version.
pub const SCHEMA_VERSION: i64 = 9;

/// The checkpoint store. Implementations are cheap to share (`Arc<dyn Store>`) and safe to call
/// from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records a new run with its step DAG, in one transaction. Fails with
    /// [`StateError::RunExists`] if the id is taken. The creator holds the claim on the
    /// record's attempt ([`RunRecord::claim`]). A sub-run with [`RunRecord::parent_attempt`]
    /// is created only while that is still its parent's attempt, else
    /// [`StateError::Fenced`] (naming the parent) and nothing is written.
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError>;

    /// Claims the run for a new attempt, atomically across processes and hosts: a
    /// compare-and-set that succeeds only if the stored attempt is `run.attempt - 1` and the
    /// run is not `running`. On success the row becomes `run` (status, host, pid, user,
    /// content hash, attempt) with `claimed_at` and `heartbeat_at` set to now, and this
    /// process holds [`RunRecord::claim`]. `Ok(Err(holder))` means another process claimed it
    /// first (or it is still running): nothing was written. Two resumes of one run therefore
    /// never both proceed. A sub-run with [`RunRecord::parent_attempt`] is claimed only while
    /// that is still its parent's attempt, else [`StateError::Fenced`]; it may be claimed even
    /// while stored `running`, since whatever engine ran it lost the parent and was fenced.
    /// In the same transaction the attempt of every sub-run below the run (at any depth) that
    /// has not succeeded or failed moves on by one: an engine that held one of them is fenced
    /// out of it as out of the run itself.
    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError>;

    /// Saves everything but `id`, `started_at` and `claimed_at`: status, finished_at, outputs,
    /// error, pid/host/user/content_hash. Fenced: only if the stored attempt is still
    /// `run.attempt`, else [`StateError::Fenced`]. `heartbeat_at` never moves back.
    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError>;

    /// Replaces the run's step DAG (on resume, with the runbook as it is now). Fenced.
    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError>;

    /// The run's step DAG in the order it was given; empty for an unknown run.
    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError>;

    /// Marks the run alive now and renews the leases of every lock it holds. Fenced: a
    /// process whose claim was taken gets [`StateError::Fenced`] and renews nothing.
    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError>;

    /// The run with this id, or the only run whose id starts with this prefix (case-insensitive
    /// for ULIDs). A prefix matching several runs is [`StateError::AmbiguousRunId`].
    async fn get_run(&self, id_or_unique_prefix: &str) -> Result<Option<RunRecord>, StateError>;

    /// Runs matching the filter, newest `started_at` first. The status filter applies to the
    /// effective status, so `interrupted` finds dead `running` runs.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError>;

    /// [`Store::list_runs`] for showing history: a row that cannot be decoded comes back as
    /// [`ListedRun::Unreadable`] in its place instead of failing the whole list.
    async fn list_run_rows(&self, filter: &RunFilter) -> Result<Vec<ListedRun>, StateError> {
        Ok(self
            .list_runs(filter)
            .await?
            .into_iter()
            .map(|r| ListedRun::Run(Box::new(r)))
            .collect())
    }

    /// One page of [`Store::list_run_rows`]: the runs after `after` (none: from the newest),
    /// at most `filter.limit`. The SQL backends read it by index (status or runbook, then
    /// start time and id), so a page costs the same at the millionth run as at the first.
    /// This default reads the whole history and is for small in-memory stores only.
    async fn list_runs_page(
        &self,
        filter: &RunFilter,
        after: Option<&RunCursor>,
    ) -> Result<Vec<ListedRun>, StateError> {
        let all = self
            .list_run_rows(&RunFilter {
                limit: None,
                ..filter.clone()
            })
            .await?;
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        Ok(all
            .into_iter()
            .filter(|row| match (row, after) {
                (_, None) => true,
                (ListedRun::Run(r), Some(c)) => (r.started_at, &r.id) < (c.started_at, &c.id),
                (ListedRun::Unreadable { .. }, Some(_)) => false,
            })
            .take(limit)
            .collect())
    }

    /// The steps `waiting` (their own checkpoints, not an item's) of the runs `paused`, oldest
    /// wait first (then run id, step id), at most `limit`: the console's approvals page. The SQL
    /// backends read them in one statement (paused runs by the status index, their steps by
    /// key); this default reads each paused run's steps and is for small in-memory stores.
    /// A step waiting because its sub-run waits is listed too (its result names the sub-run).
    async fn waiting_gates(&self, limit: u32) -> Result<Vec<WaitingGate>, StateError> {
        let paused = self
            .list_runs_page(
                &RunFilter {
                    status: Some(RunStatus::Paused),
                    ..RunFilter::default()
                },
                None,
            )
            .await?;
        let mut gates = Vec::new();
        for row in paused {
            let ListedRun::Run(run) = row else { continue };
            for step in self.steps(&run.id).await? {
                if step.item.is_none() && step.status == StepStatus::Waiting {
                    gates.push(WaitingGate {
                        runbook: run.runbook.clone(),
                        starter: run.user.clone(),
                        labels: run.labels.clone(),
                        step,
                    });
                }
            }
        }
        gates.sort_by(|a, b| {
            (a.step.started_at, &a.step.run_id, &a.step.step_id).cmp(&(
                b.step.started_at,
                &b.step.run_id,
                &b.step.step_id,
            ))
        });
        gates.truncate(limit as usize);
        Ok(gates)
    }

    /// Appends an action to the run's audit trail. Fails with [`StateError::RunNotFound`] for
    /// an unknown run. A store that keeps no audit trail refuses, so that no action is taken
    /// unrecorded.
    async fn record_action(&self, a: &Action) -> Result<(), StateError> {
        Err(StateError::Corrupt(format!(
            "this state store keeps no audit trail: action `{}` on run {} not recorded",
            a.action, a.run_id
        )))
    }

    /// The run's audit trail, oldest first.
    async fn actions(&self, _run_id: &str) -> Result<Vec<Action>, StateError> {
        Ok(Vec::new())
    }

    /// Inserts or replaces the checkpoint of (run_id, step_id, item). Committed when it
    /// returns. Fenced: written only if the run's stored attempt is still `claim.attempt`
    /// (checked and written atomically), else [`StateError::Fenced`] and nothing is written.
    /// Fails with [`StateError::RunNotFound`] for an unknown run.
    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError>;

    /// Inserts or replaces several checkpoints of one run, in order, in one transaction: all
    /// are committed when it returns, or none is. Fenced like [`Store::put_step`]. The engine
    /// records a step's end and the next step's start this way, with one commit.
    async fn put_steps(&self, claim: &Claim, recs: &[StepRecord]) -> Result<(), StateError>;

    /// The sub-runs started by the run's `uses` steps, oldest first.
    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError>;

    /// The run's step checkpoints in the order they were first written.
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError>;

    /// Takes the named lock for `holder.run_id` for `lease` (renewed by [`Store::heartbeat`]),
    /// atomically across processes and hosts. `Ok(Err(info))` means it is held: `info` names
    /// the holder. A lock is free when nobody holds it; the requesting run already holds it;
    /// the holder run succeeded, failed or was interrupted; or the holder runs on another host
    /// and this host has seen its heartbeat counter stand still for longer than the lease. A
    /// paused run, and a run alive on this host, keep their locks. A lock whose run is not in
    /// the store is free once its pid is dead on this host or its `lease_until` has passed.
    async fn try_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError>;

    /// Releases one lock if the claim's run holds it (a step-level `lock:` when the step
    /// ends). Fenced: a process whose claim was taken gets [`StateError::Fenced`] and releases
    /// nothing, so it cannot free a lock the run's new attempt holds.
    async fn release_lock(&self, name: &str, claim: &Claim) -> Result<(), StateError>;

    /// Releases every lock the claim's run holds. Fenced like [`Store::release_lock`].
    async fn release_locks(&self, claim: &Claim) -> Result<(), StateError>;

    /// Every lock row, by name, including ones whose holder is gone but not yet replaced.
    async fn locks(&self) -> Result<Vec<LockInfo>, StateError>;

    /// Appends an answer to an approval gate. Fails with [`StateError::RunNotFound`] for an
    /// unknown run.
    async fn record_approval(&self, a: &Approval) -> Result<(), StateError>;

    /// The run's approvals in the order they were recorded.
    async fn approvals(&self, run_id: &str) -> Result<Vec<Approval>, StateError>;

    /// Closes connections cleanly (SQLite checkpoints its WAL). Calls after it fail.
    async fn close(&self) {}
}

/// Opens the store a URL names, creating and migrating it as needed: `sqlite://PATH` (with
/// optional `?sync=full` or `?sync=normal`), a bare path (SQLite), `postgres://…` or
/// `postgresql://…`, or `memory:`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StateError> {
    open_as(url, false).await
}

/// Opens a store that already exists, for commands that read or answer runs: a SQLite file
/// that is not there, or a PostgreSQL database without Cairn's tables, is
/// [`StateError::NoStore`] and nothing is created. (An existing store is still migrated.)
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>, StateError> {
    open_as(url, true).await
}

async fn open_as(url: &str, must_exist: bool) -> Result<Arc<dyn Store>, StateError> {
    let trimmed = url.trim();
    if trimmed == "memory:" || trimmed == "memory://" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(Arc::new(if must_exist {
            PgStore::connect_existing(trimmed).await?
        } else {
            PgStore::connect(trimmed).await?
        }));
    }
    let sqlite = move |path: std::path::PathBuf, sync| async move {
        if must_exist && !path.is_file() {
            return Err(StateError::NoStore {
                target: path.display().to_string(),
                reason: if path.exists() {
                    "not a file".to_string()
                } else {
                    "no such file".to_string()
                },
            });
        }
        SqliteStore::open(path, sync).await
    };
    // `sqlite:PATH` as sqlx spells it is accepted too.
    if let Some(rest) = trimmed
        .strip_prefix("sqlite://")
        .or_else(|| trimmed.strip_prefix("sqlite:"))
    {
        let (path, sync) = sql::parse_url_tail(trimmed, rest)?;
        return Ok(Arc::new(sqlite(path, sync).await?));
    }
    if let Some(scheme_end) = trimmed.find("://") {
        return Err(StateError::BadUrl {
            url: cairn_url::redact(trimmed),
            reason: format!(
                "unknown scheme `{}` (expected sqlite://PATH, a path, postgres://… or memory:)",
                &trimmed[..scheme_end]
            ),
        });
    }
    if trimmed.is_empty() {
        return Err(StateError::BadUrl {
            url: String::new(),
            reason: "empty (expected sqlite://PATH, a path, postgres://… or memory:)".to_string(),
        });
    }
    Ok(Arc::new(sqlite(trimmed.into(), Durability::Normal).await?))
}

/// The state URL to use when `--state` is not given: `$CAIRN_STATE`, else the nearest
/// `.cairn/state.db` from the working directory up, else the per-user store (see
/// [`default_location`]).
pub fn default_url() -> String {
    default_location().url
}

/// A new run id: a ULID, so ids sort by creation time and a short prefix usually suffices.
/// Ids made by one process are strictly increasing, even within a millisecond.
pub fn new_run_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let monotonic = match GENERATOR.lock() {
        Ok(mut g) => g.generate().ok(),
        // A panic elsewhere while holding the lock cannot corrupt a generator worth keeping.
        Err(poisoned) => poisoned.into_inner().generate().ok(),
    };
    // The monotonic generator only fails after 2^80 ids in one millisecond.
    monotonic.unwrap_or_else(ulid::Ulid::new).to_string()
}
