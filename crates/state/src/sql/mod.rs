//! The SQL store: one implementation of [`Store`] for SQLite and PostgreSQL, generic over
//! sqlx's [`Database`](sqlx::Database) with a small [`Dialect`] table for what differs
//! (placeholders are `$N` on both; times, JSON, row locks, transaction start, DDL).
//!
//! Every write is committed when its call returns, as one transaction. Fenced writes check
//! the run's stored attempt in the same statement (or, for several statements, in the same
//! transaction, after taking the run row's lock where the database has row locks).

mod dialect;
mod direct;
mod file_id;
mod locks;
mod migrations;
mod params;
mod queue;
mod rows;
mod schema;
mod sightings;
mod step_queue;

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Pool, Postgres, Sqlite};

use crate::Store;
use crate::codec::{MAX_CANDIDATES, is_unique_violation, not_found_or, pick_unique, prefix_forms};
use crate::error::StateError;
use crate::lock::{judged, needs_sighting, now};
use crate::sighting::Seen;
use crate::types::{
    Action, Approval, Claim, ListedRun, LockHolder, LockInfo, RunCursor, RunFilter, RunHolder,
    RunRecord, RunStatus, StepDef, StepRecord, WaitingGate,
};
pub use dialect::Dialect;
use dialect::{Bind, Ex, Q};
use file_id::FileId;
use params::{Param, step_row};
pub use queue::{
    ItemClaim, QUEUE_CHANNEL, QueueItem, QueueStatus, QueueWakeups, Submission, WORKER_HEARTBEAT,
    WORKER_LEASE, WorkerRecord,
};
use rows::{
    action_from_row, approval_from_row, def_from_row, gate_from_row, run_from_row, step_from_row,
};
pub use schema::Durability;
pub(crate) use schema::parse_url_tail;
pub use step_queue::{Routed, RoutedStep, STEPS_CHANNEL, StepItem, StepState, StepWakeups};

/// A [`Store`] in a SQL database. See the crate docs for its guarantees.
#[derive(Debug)]
pub struct SqlStore<D: Dialect> {
    pool: Pool<D>,
    /// Where checkpoints are written, one at a time.
    writer: Arc<tokio::sync::Mutex<Writer<D>>>,
    /// The file or URL (password removed), for messages.
    target: String,
    /// SQLite: the file opened, checked before every write.
    file: Option<FileId>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            target: self.target.clone(),
            file: self.file.clone(),
            dialect: PhantomData,
        }
    }
}

/// The connections checkpoints are written on.
struct Writer<D: Dialect> {
    /// Taken out of the pool once and kept: a pooled connection costs a liveness test each time
    /// it is given back (a round trip to SQLite's thread or to the server), as much as the
    /// checkpoint's own statement. `None` once it broke and no other could be had.
    conn: Option<D::Connection>,
    /// SQLite with `sync=normal`: the checkpoint written on the caller's thread, without a
    /// hand-off to sqlx's (see [`direct`]); `conn` when it cannot be.
    direct: Option<direct::Direct>,
}

impl<D: Dialect> std::fmt::Debug for Writer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("conn", &self.conn.is_some())
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

/// The store in a SQLite file: WAL journal, every write its own committed transaction.
pub type SqliteStore = SqlStore<Sqlite>;

/// The store in PostgreSQL: `cairn_` tables in the connection's search_path, shared by any
/// number of processes and hosts.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Sqlite> {
    /// Opens (creating the file and its parent folder if needed) and migrates the database.
    pub async fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StateError> {
        let path = path.as_ref();
        let (pool, writer) = schema::open_sqlite(path, durability).await?;
        let direct = match durability {
            Durability::Normal => direct::Direct::open(path),
            Durability::Full => None,
        };
        Ok(SqlStore {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(Writer {
                conn: Some(writer),
                direct,
            })),
            target: path.display().to_string(),
            file: FileId::of(path),
            dialect: PhantomData,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        Path::new(&self.target)
    }
}

impl SqlStore<Postgres> {
    /// Connects to `postgres://…` and migrates the `cairn_` tables in its search_path (set it
    /// with `?options=-c%20search_path%3Dmyschema`).
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        Self::connect_as(url, false, schema::PG_CONNECTIONS).await
    }

    /// [`connect`](Self::connect) with at most `pool` pooled connections (at least 1), besides
    /// the one that checkpoints: a process that does little at once (a worker holding one run)
    /// leaves the server's `max_connections` to others.
    pub async fn connect_pooled(url: &str, pool: u32) -> Result<Self, StateError> {
        Self::connect_as(url, false, pool.max(1)).await
    }

    /// Connects to a database that already holds Cairn's tables; never creates them.
    pub async fn connect_existing(url: &str) -> Result<Self, StateError> {
        Self::connect_as(url, true, schema::PG_CONNECTIONS).await
    }

    async fn connect_as(url: &str, must_exist: bool, pool: u32) -> Result<Self, StateError> {
        let (pool, writer) = schema::connect_pg(url, must_exist, pool).await?;
        Ok(SqlStore {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(Writer {
                conn: Some(writer),
                direct: None,
            })),
            target: cairn_url::redact(url),
            file: None,
            dialect: PhantomData,
        })
    }

    /// The URL it was opened with, password removed.
    pub fn target(&self) -> &str {
        &self.target
    }
}

// The run columns bound in the order of `run_columns!()`.
fn bind_run<'q, D: Dialect>(q: Q<'q, D>, run: &RunRecord) -> Q<'q, D> {
    q.text(&run.id)
        .text(&run.runbook)
        .text(&run.path)
        .text(&run.content_hash)
        .json(&run.inputs)
        .text(run.status.as_str())
        .time(run.started_at)
        .opt_time(run.finished_at)
        .time(run.heartbeat_at)
        .text(&run.host)
        .int(i64::from(run.pid))
        .text(&run.user)
        .opt_text(run.parent_run.as_deref())
        .opt_json(run.outputs.as_ref())
        .opt_text(run.error.as_deref())
        .int(i64::from(run.attempt))
        .time(run.claimed_at)
        .opt_text(run.parent_step.as_deref())
        // 0: not known (a record from before schema version 4, or a host without /proc).
        .int(
            run.pid_start
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(0),
        )
}

// `heartbeat_at` never moves back: the later of the stored and the given time ($9). Every
// write of the run by its process moves the heartbeat counter.
macro_rules! run_fields {
    () => {
        "runbook = $2, path = $3, content_hash = $4, inputs = $5, status = $6, \
         finished_at = $8, \
         heartbeat_at = CASE WHEN heartbeat_at > $9 THEN heartbeat_at ELSE $9 END, \
         host = $10, pid = $11, username = $12, outputs = $14, error = $15, pid_start = $19, \
         heartbeat_seq = heartbeat_seq + 1"
    };
}

impl<D: Dialect> SqlStore<D> {
    fn pool(&self) -> Ex<'_, D> {
        Ex::Pool(&self.pool)
    }

    /// Before a write: the SQLite file is still the one opened (see [`FileId`]).
    fn still_there(&self) -> Result<(), StateError> {
        self.file.as_ref().map_or(Ok(()), FileId::still_there)
    }

    /// The run as a reader should see it; a dead `running` run is saved as `interrupted`.
    async fn observe(&self, run: RunRecord) -> Result<RunRecord, StateError> {
        let seen = if needs_sighting(run.status, &run.host) {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(StateError::query(format!(
                    "watching the heartbeat of run {}",
                    run.id
                )))?;
            sightings::look_at::<D>(&mut conn, &run.id, run.heartbeat_seq).await?
        } else {
            Seen::First
        };
        let stored = run.status;
        let run = judged(run, seen, now());
        if run.status != stored {
            // Compare-and-set on the heartbeat counter: if the run heartbeated meanwhile it is
            // alive.
            let q = sqlx::query(
                "UPDATE cairn_runs SET status = 'interrupted' \
                 WHERE id = $1 AND status = 'running' AND heartbeat_seq = $2",
            )
            .text(&run.id)
            .int(sightings::stored(run.heartbeat_seq));
            D::execute(self.pool(), q)
                .await
                .map_err(StateError::query(format!(
                    "marking run {} interrupted",
                    run.id
                )))?;
            tracing::info!(
                run_id = %run.id,
                host = %run.host,
                pid = run.pid,
                heartbeat_seq = run.heartbeat_seq,
                "run marked interrupted: its process is gone"
            );
        }
        Ok(run)
    }

    /// Judges every run stored `running` (saving the dead ones `interrupted`), and tells what
    /// cannot be told yet of a run of another host: the wait, by run id.
    async fn observe_running(
        &self,
    ) -> Result<std::collections::HashMap<String, Duration>, StateError> {
        let running = D::fetch_all(
            self.pool(),
            sqlx::query(concat!(
                "SELECT ",
                run_read_columns!(),
                " FROM cairn_runs WHERE status = 'running'"
            )),
        )
        .await
        .map_err(StateError::query("listing runs"))?;
        // An unreadable row is listed as such by the caller; it cannot be judged alive or dead.
        let mut unconfirmed = std::collections::HashMap::new();
        for run in running.iter().filter_map(|row| run_from_row::<D>(row).ok()) {
            let run = self.observe(run).await?;
            if let Some(wait) = run.unconfirmed {
                unconfirmed.insert(run.id, wait);
            }
        }
        Ok(unconfirmed)
    }

    /// A row of the run history as listed: the run, or why it cannot be read.
    fn listed(
        row: &D::Row,
        unconfirmed: &mut std::collections::HashMap<String, Duration>,
    ) -> ListedRun {
        match run_from_row::<D>(row) {
            Ok(mut run) => {
                if run.status == RunStatus::Running {
                    run.unconfirmed = unconfirmed.remove(&run.id);
                }
                ListedRun::Run(Box::new(run))
            }
            Err(e) => ListedRun::Unreadable {
                id: D::text(row, "id")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "?".to_string()),
                reason: e.to_string(),
            },
        }
    }

    /// The run as stored, without liveness.
    async fn stored(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        let q = sqlx::query(concat!(
            "SELECT ",
            run_read_columns!(),
            " FROM cairn_runs WHERE id = $1"
        ))
        .text(id);
        let row = D::fetch_optional(self.pool(), q)
            .await
            .map_err(StateError::query(format!("reading run {id}")))?;
        row.map(|row| run_from_row::<D>(&row)).transpose()
    }

    async fn run_by_id(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        match self.stored(id).await? {
            Some(run) => Ok(Some(self.observe(run).await?)),
            None => Ok(None),
        }
    }

    /// Why a fenced write wrote nothing: the run is gone, or another attempt holds it.
    async fn fenced(&self, claim: &Claim) -> StateError {
        match self.stored(&claim.run_id).await {
            Ok(Some(run)) => StateError::Fenced {
                run_id: claim.run_id.clone(),
                attempt: claim.attempt,
                holder: run.holder(),
            },
            Ok(None) => StateError::RunNotFound(claim.run_id.clone()),
            Err(e) => e,
        }
    }

    /// Opens a write transaction and checks that `claim` still holds the run, keeping the
    /// run row locked (PostgreSQL) or the database's write lock (SQLite) until it ends.
    async fn begin_fenced(
        &self,
        claim: &Claim,
        action: &str,
    ) -> Result<sqlx::Transaction<'static, D>, StateError> {
        let q = || StateError::query(action.to_string());
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(q())?;
        let held = D::fetch_optional(
            Ex::Conn(&mut *tx),
            sqlx::query(D::HELD)
                .text(&claim.run_id)
                .int(i64::from(claim.attempt)),
        )
        .await
        .map_err(q())?;
        if held.is_none() {
            drop(tx);
            return Err(self.fenced(claim).await);
        }
        Ok(tx)
    }

    /// For a sub-run created or claimed by its parent's `uses` step: whether the parent's
    /// claim ([`RunRecord::parent_claim`]) still holds, checked in the transaction `tx` (which
    /// keeps the parent's row locked for share on PostgreSQL, so a claim of the parent waits
    /// for it and then fences what it wrote).
    async fn under_parent(
        tx: &mut sqlx::Transaction<'static, D>,
        parent: &Claim,
        action: &str,
    ) -> Result<bool, StateError> {
        let held = D::fetch_optional(
            Ex::Conn(&mut **tx),
            sqlx::query(D::HELD)
                .text(&parent.run_id)
                .int(i64::from(parent.attempt)),
        )
        .await
        .map_err(StateError::query(action.to_string()))?;
        Ok(held.is_some())
    }

    async fn insert_defs(
        conn: &mut D::Connection,
        run_id: &str,
        defs: &[StepDef],
    ) -> Result<(), StateError> {
        for (pos, def) in defs.iter().enumerate() {
            let q = sqlx::query(
                "INSERT INTO cairn_step_defs (run_id, pos, step_id, def_hash, needs) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .text(run_id)
            .int(i64::try_from(pos).unwrap_or(i64::MAX))
            .text(&def.step_id)
            .text(&def.def_hash)
            .json(&serde_json::json!(def.needs));
            D::execute(Ex::Conn(&mut *conn), q)
                .await
                .map_err(StateError::query(format!(
                    "saving the steps of run {run_id}"
                )))?;
        }
        Ok(())
    }

    /// Writes `recs` (at most [`ROWS_PER_STATEMENT`], no two of one step and item) in one
    /// fenced statement; false when the run is no longer held by `claim`.
    async fn upsert_steps(
        ex: Ex<'_, D>,
        claim: &Claim,
        recs: &[&StepRecord],
    ) -> Result<bool, StateError> {
        let sql = dialect::upsert_steps_sql(recs.len(), D::RUN_ROW_LOCK);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .text(&claim.run_id)
            .int(i64::from(claim.attempt));
        for rec in recs {
            debug_assert_eq!(claim.run_id, rec.run_id, "a claim fences its own run only");
            for param in step_row(rec) {
                q = match param {
                    Param::Text(v) => q.opt_text(v),
                    Param::Int(v) => q.int(v),
                    Param::Flag(v) => q.flag(v),
                    Param::Time(v) => q.opt_time(v),
                    Param::Json(v) => q.opt_json(v),
                };
            }
        }
        let action = match recs {
            [rec] => format!("saving step `{}` of run {}", rec.step_id, rec.run_id),
            _ => format!("saving {} steps of run {}", recs.len(), claim.run_id),
        };
        let wrote = D::execute(ex, q)
            .await
            .map_err(not_found_or(&claim.run_id, action))?;
        Ok(wrote > 0)
    }

    /// [`Self::upsert_steps`] on the kept writer connection. A connection that broke (a
    /// PostgreSQL server restarted, say) is dropped and the write made once more on a new one:
    /// the upsert writes the same values again, so a write that did land before the break is
    /// not changed by the second.
    async fn upsert_on_writer(
        &self,
        claim: &Claim,
        recs: &[&StepRecord],
    ) -> Result<bool, StateError> {
        let mut slot = self.writer.lock().await;
        if let Some(wrote) = slot.direct.as_mut().and_then(|d| d.upsert(claim, recs)) {
            return Ok(wrote);
        }
        if let Some(conn) = slot.conn.as_mut() {
            match Self::upsert_steps(Ex::Conn(conn), claim, recs).await {
                Err(StateError::Query { source, .. }) if connection_broke(&source) => {
                    slot.conn = None
                }
                other => return other,
            }
        }
        // The writer broke (or an earlier replacement could not be had): once more on a new one.
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(StateError::query(format!(
                "saving the steps of run {}",
                claim.run_id
            )))?
            .detach();
        Self::upsert_steps(Ex::Conn(slot.conn.insert(conn)), claim, recs).await
    }
}

/// Errors after which a connection is not used again.
fn connection_broke(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's connection exceptions (08…) and its shutdowns and terminations (57P…).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Checkpoint rows per statement: 13 parameters each, far below the parameter limit of either
/// database (SQLite 32,766, PostgreSQL 65,535). A longer batch is several statements in one
/// transaction.
const ROWS_PER_STATEMENT: usize = 256;

/// The batch with only the last record of each step and item, each at the place of its first:
/// every column of a checkpoint is overwritten, so the last one is the one that counts.
fn last_of_each(recs: &[StepRecord]) -> Vec<&StepRecord> {
    let mut out: Vec<&StepRecord> = Vec::with_capacity(recs.len());
    let mut at: std::collections::HashMap<(&str, &str, Option<u32>), usize> =
        std::collections::HashMap::with_capacity(recs.len());
    for rec in recs {
        let key = (rec.run_id.as_str(), rec.step_id.as_str(), rec.item);
        match at.get(&key) {
            Some(&i) => out[i] = rec,
            None => {
                at.insert(key, out.len());
                out.push(rec);
            }
        }
    }
    out
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D> {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        self.still_there()?;
        let action = format!("creating run {}", run.id);
        let q = StateError::query(action.clone());
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(q)?;
        let parent = run.parent_claim();
        if let Some(parent) = &parent
            && !Self::under_parent(&mut tx, parent, &action).await?
        {
            drop(tx);
            return Err(self.fenced(parent).await);
        }
        let insert = sqlx::query(concat!(
            "INSERT INTO cairn_runs (",
            run_columns!(),
            ", labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20)"
        ));
        let labels = serde_json::to_value(&run.labels).unwrap_or_default();
        D::execute(Ex::Conn(&mut *tx), bind_run(insert, run).json(&labels))
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StateError::RunExists(run.id.clone())
                } else {
                    StateError::Query {
                        action: action.clone(),
                        source: e,
                    }
                }
            })?;
        Self::insert_defs(&mut tx, &run.id, defs).await?;
        for (name, value) in &run.labels {
            let q = sqlx::query(
                "INSERT INTO cairn_run_labels (run_id, name, value, run_started_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .text(&run.id)
            .text(name)
            .text(value)
            .time(run.started_at);
            D::execute(Ex::Conn(&mut *tx), q)
                .await
                .map_err(StateError::query(action.clone()))?;
        }
        tx.commit().await.map_err(StateError::query(action))
    }

    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError> {
        self.still_there()?;
        let action = format!("claiming run {}", run.id);
        let mut tx = self
            .pool
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(StateError::query(action.clone()))?;
        let parent = run.parent_claim();
        if let Some(parent) = &parent
            && !Self::under_parent(&mut tx, parent, &action).await?
        {
            drop(tx);
            return Err(self.fenced(parent).await);
        }
        // One statement: SQLite decides it under its write lock, PostgreSQL under the row's
        // lock (a second claimer waits, re-reads the row at the new attempt and changes
        // nothing), so of two processes claiming the same attempt exactly one changes the row.
        // A sub-run taken up under its parent's claim (`$21` = 1) may still be stored
        // `running` by the engine that lost the parent: that engine is fenced already (below),
        // so the sub-run is its parent's holder's to take.
        let q = sqlx::query(concat!(
            "UPDATE cairn_runs SET ",
            run_fields!(),
            ", attempt = $16, claimed_at = $17 \
             WHERE id = $1 AND attempt = $20 AND (status <> 'running' OR $21 = 1)"
        ));
        let q = bind_run(q, run)
            .int(i64::from(run.attempt.saturating_sub(1)))
            .int(i64::from(parent.is_some()));
        let done = D::execute(Ex::Conn(&mut *tx), q)
            .await
            .map_err(StateError::query(action.clone()))?;
        if done == 1 {
            // Whatever engine holds one of the run's unfinished sub-runs (at any depth) is
            // fenced with it: their attempts move on in the same transaction. `UNION`, not
            // `UNION ALL`, and never the run itself: a store whose parents were edited into a
            // circle ends the walk instead of looping, and the claim stands.
            D::execute(
                Ex::Conn(&mut *tx),
                sqlx::query(
                    "WITH RECURSIVE below(id) AS ( \
                       SELECT id FROM cairn_runs WHERE parent_run = $1 \
                       UNION \
                       SELECT r.id FROM cairn_runs r JOIN below b ON r.parent_run = b.id) \
                     UPDATE cairn_runs SET attempt = attempt + 1 \
                     WHERE id IN (SELECT id FROM below) AND id <> $1 \
                       AND status NOT IN ('succeeded', 'failed')",
                )
                .text(&run.id),
            )
            .await
            .map_err(StateError::query(format!(
                "fencing the sub-runs of run {}",
                run.id
            )))?;
            tx.commit().await.map_err(StateError::query(action))?;
            return Ok(Ok(()));
        }
        drop(tx);
        match self.stored(&run.id).await? {
            Some(stored) => Ok(Err(stored.holder())),
            None => Err(StateError::RunNotFound(run.id.clone())),
        }
    }

    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.still_there()?;
        let q = sqlx::query(concat!(
            "UPDATE cairn_runs SET ",
            run_fields!(),
            ", parent_run = $13 WHERE id = $1 AND attempt = $16"
        ));
        let done = D::execute(self.pool(), bind_run(q, run))
            .await
            .map_err(StateError::query(format!("updating run {}", run.id)))?;
        if done == 0 {
            return Err(self.fenced(&run.claim()).await);
        }
        Ok(())
    }

    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError> {
        self.still_there()?;
        let run_id = claim.run_id.as_str();
        let action = format!("replacing the steps of run {run_id}");
        let mut tx = self.begin_fenced(claim, &action).await?;
        D::execute(
            Ex::Conn(&mut *tx),
            sqlx::query("DELETE FROM cairn_step_defs WHERE run_id = $1").text(run_id),
        )
        .await
        .map_err(StateError::query(action.clone()))?;
        Self::insert_defs(&mut tx, run_id, defs).await?;
        tx.commit().await.map_err(StateError::query(action))
    }

    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        let q = sqlx::query(
            "SELECT step_id, def_hash, needs FROM cairn_step_defs WHERE run_id = $1 ORDER BY pos",
        )
        .text(run_id);
        let rows = D::fetch_all(self.pool(), q)
            .await
            .map_err(StateError::query(format!(
                "reading the steps of run {run_id}"
            )))?;
        rows.iter().map(def_from_row::<D>).collect()
    }

    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError> {
        self.still_there()?;
        if !self.renew(claim).await? {
            return Err(self.fenced(claim).await);
        }
        Ok(())
    }

    async fn get_run(&self, id_or_prefix: &str) -> Result<Option<RunRecord>, StateError> {
        if id_or_prefix.is_empty() {
            return Ok(None);
        }
        if let Some(run) = self.run_by_id(id_or_prefix).await? {
            return Ok(Some(run));
        }
        let q = || StateError::query(format!("looking up run {id_or_prefix}"));
        let (p, upper) = prefix_forms(id_or_prefix);
        let found = sqlx::query(
            "SELECT id FROM cairn_runs \
             WHERE substr(id, 1, length($1)) = $1 OR substr(id, 1, length($2)) = $2 \
             ORDER BY id LIMIT $3",
        )
        .text(&p)
        .text(&upper)
        .int(MAX_CANDIDATES);
        let ids = D::fetch_all(self.pool(), found)
            .await
            .map_err(q())?
            .iter()
            .map(|row| D::text(row, "id").map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(q())?;
        match pick_unique(id_or_prefix, ids)? {
            Some(id) => self.run_by_id(&id).await,
            None => Ok(None),
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        self.list_run_rows(filter)
            .await?
            .into_iter()
            .map(ListedRun::into_result)
            .collect()
    }

    async fn list_run_rows(&self, filter: &RunFilter) -> Result<Vec<ListedRun>, StateError> {
        self.list_runs_page(filter, None).await
    }

    async fn list_runs_page(
        &self,
        filter: &RunFilter,
        after: Option<&RunCursor>,
    ) -> Result<Vec<ListedRun>, StateError> {
        // The dead runs saved as interrupted first, as for the whole list (few rows: the ones
        // stored `running`, by the status index).
        let mut unconfirmed = self.observe_running().await?;
        // Only the conditions asked for, so that the planner sees a plain range on one index:
        // with labels, the first label's range of `cairn_run_labels` (by label, then start
        // and id, as the page is ordered), each further label looked up by its key.
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let (mut sql, start, id) = if filter.labels.is_empty() {
            (
                String::from(concat!(
                    "SELECT ",
                    run_read_columns!(),
                    " FROM cairn_runs WHERE 1 = 1"
                )),
                "started_at",
                "id",
            )
        } else {
            let (name, value) = (next(), next());
            (
                format!(
                    concat!(
                        "SELECT ",
                        run_read_columns!(),
                        " FROM cairn_run_labels l JOIN cairn_runs r ON r.id = l.run_id \
                         WHERE l.name = ${} AND l.value = ${}"
                    ),
                    name, value
                ),
                "l.run_started_at",
                "l.run_id",
            )
        };
        for _ in filter.labels.iter().skip(1) {
            let (name, value) = (next(), next());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM cairn_run_labels m WHERE m.run_id = r.id \
                 AND m.name = ${name} AND m.value = ${value})"
            ));
        }
        if filter.runbook.is_some() {
            sql.push_str(&format!(" AND runbook = ${}", next()));
        }
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = ${}", next()));
        }
        if after.is_some() {
            let (t, i) = (next(), next());
            sql.push_str(&format!(
                " AND ({start} < ${t} OR ({start} = ${t} AND {id} < ${i}))"
            ));
        }
        let limit = next();
        sql.push_str(&format!(" ORDER BY {start} DESC, {id} DESC LIMIT ${limit}"));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (name, value) in &filter.labels {
            q = q.text(name).text(value);
        }
        if let Some(runbook) = &filter.runbook {
            q = q.text(runbook);
        }
        if let Some(status) = filter.status {
            q = q.text(status.as_str());
        }
        if let Some(c) = after {
            q = q.time(c.started_at).text(&c.id);
        }
        q = q.int(filter.limit.map_or(i64::MAX, i64::from));
        let rows = D::fetch_all(self.pool(), q)
            .await
            .map_err(StateError::query("listing a page of runs"))?;
        Ok(rows
            .iter()
            .map(|row| Self::listed(row, &mut unconfirmed))
            .collect())
    }

    async fn waiting_gates(&self, limit: u32) -> Result<Vec<WaitingGate>, StateError> {
        // One statement: the paused runs by the status index, each one's waiting steps by
        // the steps' key. A run's columns are named apart from its steps' (both have a status).
        let q = sqlx::query(
            "SELECT r.runbook AS gate_runbook, r.username AS gate_starter, \
             r.labels AS gate_labels, s.run_id, s.step_id, \
             s.item, s.status, s.attempt, s.started_at, s.finished_at, s.result, s.outputs, \
             s.error, s.log_path, s.def_hash, s.idempotent \
             FROM cairn_runs r JOIN cairn_steps s ON s.run_id = r.id \
             WHERE r.status = 'paused' AND s.status = 'waiting' AND s.item = -1 \
             ORDER BY s.started_at, s.run_id, s.step_id LIMIT $1",
        )
        .int(i64::from(limit));
        let rows = D::fetch_all(self.pool(), q)
            .await
            .map_err(StateError::query("reading the gates waiting"))?;
        rows.iter().map(gate_from_row::<D>).collect()
    }

    async fn record_action(&self, a: &Action) -> Result<(), StateError> {
        self.still_there()?;
        let q = sqlx::query(
            "INSERT INTO cairn_actions (run_id, at, by_user, source, action, step_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .text(&a.run_id)
        .time(a.at)
        .text(&a.by)
        .text(&a.source)
        .text(&a.action)
        .opt_text(a.step_id.as_deref())
        .opt_text(a.detail.as_deref());
        D::execute(self.pool(), q).await.map_err(not_found_or(
            &a.run_id,
            format!("recording action `{}` on run {}", a.action, a.run_id),
        ))?;
        Ok(())
    }

    async fn actions(&self, run_id: &str) -> Result<Vec<Action>, StateError> {
        let rows = D::fetch_all(self.pool(), sqlx::query(D::ACTIONS).text(run_id))
            .await
            .map_err(StateError::query(format!(
                "reading the actions on run {run_id}"
            )))?;
        rows.iter().map(action_from_row::<D>).collect()
    }

    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError> {
        self.put_steps(claim, std::slice::from_ref(rec)).await
    }

    async fn put_steps(&self, claim: &Claim, recs: &[StepRecord]) -> Result<(), StateError> {
        self.still_there()?;
        let recs = last_of_each(recs);
        if recs.is_empty() {
            return Ok(());
        }
        if recs.len() <= ROWS_PER_STATEMENT {
            // One autocommit statement: the cheapest durable write, one round trip.
            if !self.upsert_on_writer(claim, &recs).await? {
                return Err(self.fenced(claim).await);
            }
            return Ok(());
        }
        let action = format!("saving {} steps of run {}", recs.len(), claim.run_id);
        let mut tx = self
            .pool
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(StateError::query(action.clone()))?;
        for chunk in recs.chunks(ROWS_PER_STATEMENT) {
            // The first chunk's fence holds for the rest: SQLite's write lock, or PostgreSQL's
            // lock on the run row, is kept until the commit.
            if !Self::upsert_steps(Ex::Conn(&mut *tx), claim, chunk).await? {
                drop(tx);
                return Err(self.fenced(claim).await);
            }
        }
        tx.commit().await.map_err(StateError::query(action))
    }

    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError> {
        let q = sqlx::query(concat!(
            "SELECT ",
            run_read_columns!(),
            " FROM cairn_runs WHERE parent_run = $1 ORDER BY started_at, id"
        ))
        .text(parent_run);
        let rows = D::fetch_all(self.pool(), q)
            .await
            .map_err(StateError::query(format!(
                "reading the sub-runs of run {parent_run}"
            )))?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            runs.push(self.observe(run_from_row::<D>(row)?).await?);
        }
        Ok(runs)
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        let rows = D::fetch_all(self.pool(), sqlx::query(D::STEPS).text(run_id))
            .await
            .map_err(StateError::query(format!(
                "reading the steps of run {run_id}"
            )))?;
        rows.iter().map(step_from_row::<D>).collect()
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError> {
        self.still_there()?;
        self.take_lock(name, holder, lease).await
    }

    async fn release_lock(&self, name: &str, claim: &Claim) -> Result<(), StateError> {
        self.still_there()?;
        self.release(Some(name), claim).await
    }

    async fn release_locks(&self, claim: &Claim) -> Result<(), StateError> {
        self.still_there()?;
        self.release(None, claim).await
    }

    async fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        self.all_locks().await
    }

    async fn record_approval(&self, a: &Approval) -> Result<(), StateError> {
        self.still_there()?;
        let q = sqlx::query(
            "INSERT INTO cairn_approvals \
             (run_id, step_id, decision, decided_by, decided_at, comment, host, tty) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .text(&a.run_id)
        .text(&a.step_id)
        .text(a.decision.as_str())
        .text(&a.by)
        .time(a.at)
        .opt_text(a.comment.as_deref())
        .opt_text(a.host.as_deref())
        .opt_text(a.tty.as_deref());
        D::execute(self.pool(), q).await.map_err(not_found_or(
            &a.run_id,
            format!(
                "recording the approval of step `{}` of run {}",
                a.step_id, a.run_id
            ),
        ))?;
        Ok(())
    }

    async fn approvals(&self, run_id: &str) -> Result<Vec<Approval>, StateError> {
        let rows = D::fetch_all(self.pool(), sqlx::query(D::APPROVALS).text(run_id))
            .await
            .map_err(StateError::query(format!(
                "reading the approvals of run {run_id}"
            )))?;
        rows.iter().map(approval_from_row::<D>).collect()
    }

    async fn close(&self) {
        let mut slot = self.writer.lock().await;
        slot.direct = None;
        if let Some(conn) = slot.conn.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        self.pool.close().await;
    }
}
