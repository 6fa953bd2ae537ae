//! The SQLite store: one file, WAL journal, every write its own committed transaction.

mod locks;
mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};

use crate::Store;
use crate::codec::{
    MAX_CANDIDATES, is_unique_violation, json_text, not_found_or, pick_unique, prefix_forms, ts,
};
use crate::error::StateError;
use crate::lock::{effective_status, now};
use crate::types::{
    Approval, Claim, ListedRun, LockHolder, LockInfo, RunFilter, RunHolder, RunRecord, RunStatus,
    StepDef, StepRecord,
};
use rows::{approval_from_row, run_from_row, step_from_row};
pub use schema::Durability;
pub(crate) use schema::parse_url_tail;

/// A [`Store`] in a SQLite file. See the crate docs for its durability guarantees.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating the file and its parent folder if needed) and migrates the database.
    pub async fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let pool = schema::open_pool(&path, durability).await?;
        Ok(SqliteStore { pool, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The status a reader should see; a dead `running` run is saved as `interrupted`.
    async fn observe(&self, mut run: RunRecord) -> Result<RunRecord, StateError> {
        let seen = effective_status(run.status, &run.host, run.pid, run.heartbeat_at, now());
        if seen != run.status {
            // Compare-and-set on the heartbeat: if the run heartbeated meanwhile it is alive.
            sqlx::query(
                "UPDATE cairn_runs SET status = 'interrupted' \
                 WHERE id = ? AND status = 'running' AND heartbeat_at = ?",
            )
            .bind(&run.id)
            .bind(ts(run.heartbeat_at))
            .execute(&self.pool)
            .await
            .map_err(StateError::query(format!(
                "marking run {} interrupted",
                run.id
            )))?;
            tracing::info!(
                run_id = %run.id,
                host = %run.host,
                pid = run.pid,
                heartbeat_at = %run.heartbeat_at,
                "run marked interrupted: its process is gone"
            );
            run.status = seen;
        }
        Ok(run)
    }

    async fn run_by_id(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM cairn_runs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StateError::query(format!("reading run {id}")))?;
        match row {
            Some(row) => Ok(Some(self.observe(run_from_row(&row)?).await?)),
            None => Ok(None),
        }
    }

    /// The run as stored, without liveness: who holds its latest attempt.
    async fn holder(&self, id: &str) -> Result<Option<RunHolder>, StateError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM cairn_runs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StateError::query(format!("reading run {id}")))?;
        row.map(|row| run_from_row(&row).map(|r| r.holder()))
            .transpose()
    }

    /// Why a fenced write wrote nothing: the run is gone, or another attempt holds it.
    async fn fenced(&self, claim: &Claim) -> StateError {
        match self.holder(&claim.run_id).await {
            Ok(Some(holder)) => StateError::Fenced {
                run_id: claim.run_id.clone(),
                attempt: claim.attempt,
                holder,
            },
            Ok(None) => StateError::RunNotFound(claim.run_id.clone()),
            Err(e) => e,
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        let action = format!("creating run {}", run.id);
        let q = StateError::query(action.clone());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(q)?;
        sqlx::query(concat!(
            "INSERT INTO cairn_runs (",
            run_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&run.id)
        .bind(&run.runbook)
        .bind(&run.path)
        .bind(&run.content_hash)
        .bind(json_text(&run.inputs))
        .bind(run.status.as_str())
        .bind(ts(run.started_at))
        .bind(run.finished_at.map(ts))
        .bind(ts(run.heartbeat_at))
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(&run.user)
        .bind(&run.parent_run)
        .bind(run.outputs.as_ref().map(json_text))
        .bind(&run.error)
        .bind(i64::from(run.attempt))
        .bind(ts(run.claimed_at))
        .bind(&run.parent_step)
        .execute(&mut *tx)
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
        rows::insert_defs(&mut tx, &run.id, defs).await?;
        tx.commit().await.map_err(StateError::query(action))
    }

    async fn claim_run(&self, run: &RunRecord) -> Result<Result<(), RunHolder>, StateError> {
        // One statement: SQLite decides it under its write lock, so of two processes claiming
        // the same attempt exactly one changes the row.
        let done = sqlx::query(
            "UPDATE cairn_runs SET runbook = ?, path = ?, content_hash = ?, inputs = ?, \
             status = ?, finished_at = ?, heartbeat_at = max(heartbeat_at, ?), host = ?, \
             pid = ?, username = ?, outputs = ?, error = ?, attempt = ?, claimed_at = ? \
             WHERE id = ? AND attempt = ? AND status <> 'running'",
        )
        .bind(&run.runbook)
        .bind(&run.path)
        .bind(&run.content_hash)
        .bind(json_text(&run.inputs))
        .bind(run.status.as_str())
        .bind(run.finished_at.map(ts))
        .bind(ts(run.heartbeat_at))
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(&run.user)
        .bind(run.outputs.as_ref().map(json_text))
        .bind(&run.error)
        .bind(i64::from(run.attempt))
        .bind(ts(run.claimed_at))
        .bind(&run.id)
        .bind(i64::from(run.attempt.saturating_sub(1)))
        .execute(&self.pool)
        .await
        .map_err(StateError::query(format!("claiming run {}", run.id)))?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        match self.holder(&run.id).await? {
            Some(holder) => Ok(Err(holder)),
            None => Err(StateError::RunNotFound(run.id.clone())),
        }
    }

    async fn update_run(&self, run: &RunRecord) -> Result<(), StateError> {
        let done = sqlx::query(
            "UPDATE cairn_runs SET runbook = ?, path = ?, content_hash = ?, inputs = ?, \
             status = ?, finished_at = ?, heartbeat_at = max(heartbeat_at, ?), host = ?, \
             pid = ?, username = ?, parent_run = ?, outputs = ?, error = ? \
             WHERE id = ? AND attempt = ?",
        )
        .bind(&run.runbook)
        .bind(&run.path)
        .bind(&run.content_hash)
        .bind(json_text(&run.inputs))
        .bind(run.status.as_str())
        .bind(run.finished_at.map(ts))
        .bind(ts(run.heartbeat_at))
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(&run.user)
        .bind(&run.parent_run)
        .bind(run.outputs.as_ref().map(json_text))
        .bind(&run.error)
        .bind(&run.id)
        .bind(i64::from(run.attempt))
        .execute(&self.pool)
        .await
        .map_err(StateError::query(format!("updating run {}", run.id)))?;
        if done.rows_affected() == 0 {
            return Err(self.fenced(&run.claim()).await);
        }
        Ok(())
    }

    async fn set_step_defs(&self, claim: &Claim, defs: &[StepDef]) -> Result<(), StateError> {
        let run_id = claim.run_id.as_str();
        let q = || StateError::query(format!("replacing the steps of run {run_id}"));
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(q())?;
        let held = sqlx::query("SELECT 1 FROM cairn_runs WHERE id = ? AND attempt = ?")
            .bind(run_id)
            .bind(i64::from(claim.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(q())?;
        if held.is_none() {
            drop(tx);
            return Err(self.fenced(claim).await);
        }
        sqlx::query("DELETE FROM cairn_step_defs WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(q())?;
        rows::insert_defs(&mut tx, run_id, defs).await?;
        tx.commit().await.map_err(q())
    }

    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        rows::step_defs(&self.pool, run_id).await
    }

    async fn heartbeat(&self, claim: &Claim) -> Result<(), StateError> {
        if !locks::heartbeat(&self.pool, claim).await? {
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
        let (p, upper) = prefix_forms(id_or_prefix);
        let ids = sqlx::query(
            "SELECT id FROM cairn_runs \
             WHERE substr(id, 1, length(?1)) = ?1 OR substr(id, 1, length(?2)) = ?2 \
             ORDER BY id LIMIT ?3",
        )
        .bind(p)
        .bind(upper)
        .bind(MAX_CANDIDATES)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query(format!("looking up run {id_or_prefix}")))?
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StateError::query(format!("looking up run {id_or_prefix}")))?;
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
        let q = || StateError::query("listing runs");
        // Save dead runs as interrupted first, so the status filter below sees the truth.
        let running = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM cairn_runs WHERE status = 'running'"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(q())?;
        // An unreadable row is listed as such below; it cannot be judged alive or dead.
        for run in running.iter().filter_map(|row| run_from_row(row).ok()) {
            self.observe(run).await?;
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM cairn_runs WHERE (?1 IS NULL OR runbook = ?1) AND (?2 IS NULL OR status = ?2) \
             ORDER BY started_at DESC, id DESC LIMIT ?3"
        ))
        .bind(&filter.runbook)
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.limit.map_or(-1, i64::from))
        .fetch_all(&self.pool)
        .await
        .map_err(q())?;
        Ok(rows
            .iter()
            .map(|row| match run_from_row(row) {
                Ok(run) => ListedRun::Run(Box::new(run)),
                Err(e) => ListedRun::Unreadable {
                    id: row
                        .try_get::<String, _>("id")
                        .unwrap_or_else(|_| "?".to_string()),
                    reason: e.to_string(),
                },
            })
            .collect())
    }

    async fn put_step(&self, claim: &Claim, rec: &StepRecord) -> Result<(), StateError> {
        debug_assert_eq!(claim.run_id, rec.run_id, "a claim fences its own run only");
        let wrote = rows::upsert_step(&self.pool, claim.attempt, rec)
            .await
            .map_err(not_found_or(
                &rec.run_id,
                format!("saving step `{}` of run {}", rec.step_id, rec.run_id),
            ))?;
        if !wrote {
            return Err(self.fenced(claim).await);
        }
        Ok(())
    }

    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM cairn_runs WHERE parent_run = ? ORDER BY started_at, id"
        ))
        .bind(parent_run)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query(format!(
            "reading the sub-runs of run {parent_run}"
        )))?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            runs.push(self.observe(run_from_row(row)?).await?);
        }
        Ok(runs)
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_columns!(),
            " FROM cairn_steps WHERE run_id = ? ORDER BY rowid"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query(format!(
            "reading the steps of run {run_id}"
        )))?;
        rows.iter().map(step_from_row).collect()
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError> {
        locks::try_lock(&self.pool, name, holder, lease).await
    }

    async fn release_lock(&self, name: &str, run_id: &str) -> Result<(), StateError> {
        locks::release_lock(&self.pool, name, run_id).await
    }

    async fn release_locks(&self, run_id: &str) -> Result<(), StateError> {
        locks::release_locks(&self.pool, run_id).await
    }

    async fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        locks::locks(&self.pool).await
    }

    async fn record_approval(&self, a: &Approval) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO cairn_approvals (run_id, step_id, decision, decided_by, decided_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&a.run_id)
        .bind(&a.step_id)
        .bind(a.decision.as_str())
        .bind(&a.by)
        .bind(ts(a.at))
        .execute(&self.pool)
        .await
        .map_err(not_found_or(
            &a.run_id,
            format!(
                "recording the approval of step `{}` of run {}",
                a.step_id, a.run_id
            ),
        ))?;
        Ok(())
    }

    async fn approvals(&self, run_id: &str) -> Result<Vec<Approval>, StateError> {
        let rows = sqlx::query(
            "SELECT run_id, step_id, decision, decided_by, decided_at FROM cairn_approvals \
             WHERE run_id = ? ORDER BY rowid",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query(format!(
            "reading the approvals of run {run_id}"
        )))?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
