//! The PostgreSQL store: `cairn_` tables in the connection's search_path, shared by any number
//! of processes and hosts.

mod locks;
mod rows;
mod schema;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgPool, Row};

use crate::Store;
use crate::codec::{
    MAX_CANDIDATES, is_unique_violation, item_key, not_found_or, pick_unique, prefix_forms,
};
use crate::error::{StateError, redact_url};
use crate::lock::{effective_status, now};
use crate::types::{
    Approval, Claim, ListedRun, LockHolder, LockInfo, RunFilter, RunHolder, RunRecord, RunStatus,
    StepDef, StepRecord,
};
use rows::{approval_from_row, def_from_row, jsonb, run_from_row, step_from_row, text};

/// A [`Store`] in PostgreSQL. See the crate docs for its guarantees.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    target: String,
}

impl PgStore {
    /// Connects to `postgres://…` and migrates the `cairn_` tables in its search_path (set it
    /// with `?options=-c%20search_path%3Dmyschema`).
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let pool = schema::connect(url, false).await?;
        Ok(PgStore {
            pool,
            target: redact_url(url),
        })
    }

    /// Connects to a database that already holds Cairn's tables; never creates them.
    pub async fn connect_existing(url: &str) -> Result<Self, StateError> {
        let pool = schema::connect(url, true).await?;
        Ok(PgStore {
            pool,
            target: redact_url(url),
        })
    }

    /// The URL it was opened with, password removed.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The status a reader should see; a dead `running` run is saved as `interrupted`.
    async fn observe(&self, mut run: RunRecord) -> Result<RunRecord, StateError> {
        let seen = effective_status(run.status, &run.host, run.pid, run.heartbeat_at, now());
        if seen != run.status {
            // Compare-and-set on the heartbeat: if the run heartbeated meanwhile it is alive.
            sqlx::query(
                "UPDATE cairn_runs SET status = 'interrupted' \
                 WHERE id = $1 AND status = 'running' AND heartbeat_at = $2",
            )
            .bind(&run.id)
            .bind(run.heartbeat_at)
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
            " FROM cairn_runs WHERE id = $1"
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
            " FROM cairn_runs WHERE id = $1"
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
impl Store for PgStore {
    async fn create_run(&self, run: &RunRecord, defs: &[StepDef]) -> Result<(), StateError> {
        let action = format!("creating run {}", run.id);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StateError::query(action.clone()))?;
        sqlx::query(concat!(
            "INSERT INTO cairn_runs (",
            run_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18)"
        ))
        .bind(&run.id)
        .bind(&run.runbook)
        .bind(&run.path)
        .bind(&run.content_hash)
        .bind(jsonb(&run.inputs))
        .bind(run.status.as_str())
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.heartbeat_at)
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(&run.user)
        .bind(&run.parent_run)
        .bind(run.outputs.as_ref().map(jsonb))
        .bind(run.error.as_deref().map(text))
        .bind(i64::from(run.attempt))
        .bind(run.claimed_at)
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
        // One UPDATE: the server locks the row, so of two hosts claiming the same attempt the
        // second waits, re-reads the row (now at the new attempt) and changes nothing.
        let done = sqlx::query(
            "UPDATE cairn_runs SET runbook = $1, path = $2, content_hash = $3, inputs = $4, \
             status = $5, finished_at = $6, heartbeat_at = GREATEST(heartbeat_at, $7), \
             host = $8, pid = $9, username = $10, outputs = $11, error = $12, attempt = $13, \
             claimed_at = $14 WHERE id = $15 AND attempt = $16 AND status <> 'running'",
        )
        .bind(&run.runbook)
        .bind(&run.path)
        .bind(&run.content_hash)
        .bind(jsonb(&run.inputs))
        .bind(run.status.as_str())
        .bind(run.finished_at)
        .bind(run.heartbeat_at)
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(&run.user)
        .bind(run.outputs.as_ref().map(jsonb))
        .bind(run.error.as_deref().map(text))
        .bind(i64::from(run.attempt))
        .bind(run.claimed_at)
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
            "UPDATE cairn_runs SET runbook = $1, path = $2, content_hash = $3, inputs = $4, \
             status = $5, finished_at = $6, heartbeat_at = GREATEST(heartbeat_at, $7), \
             host = $8, pid = $9, username = $10, parent_run = $11, outputs = $12, \
             error = $13 WHERE id = $14 AND attempt = $15",
        )
        .bind(&run.runbook)
        .bind(&run.path)
        .bind(&run.content_hash)
        .bind(jsonb(&run.inputs))
        .bind(run.status.as_str())
        .bind(run.finished_at)
        .bind(run.heartbeat_at)
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(&run.user)
        .bind(&run.parent_run)
        .bind(run.outputs.as_ref().map(jsonb))
        .bind(run.error.as_deref().map(text))
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
        let mut tx = self.pool.begin().await.map_err(q())?;
        // Locking the run row keeps a claim from passing between the check and the write.
        let held = sqlx::query("SELECT 1 FROM cairn_runs WHERE id = $1 AND attempt = $2 FOR SHARE")
            .bind(run_id)
            .bind(i64::from(claim.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(q())?;
        if held.is_none() {
            drop(tx);
            return Err(self.fenced(claim).await);
        }
        sqlx::query("DELETE FROM cairn_step_defs WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(q())?;
        rows::insert_defs(&mut tx, run_id, defs).await?;
        tx.commit().await.map_err(q())
    }

    async fn step_defs(&self, run_id: &str) -> Result<Vec<StepDef>, StateError> {
        let rows = sqlx::query(
            "SELECT step_id, def_hash, needs FROM cairn_step_defs WHERE run_id = $1 ORDER BY pos",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query(format!(
            "reading the steps of run {run_id}"
        )))?;
        rows.iter().map(def_from_row).collect()
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
        let q = || StateError::query(format!("looking up run {id_or_prefix}"));
        let (p, upper) = prefix_forms(id_or_prefix);
        let ids = sqlx::query(
            "SELECT id FROM cairn_runs \
             WHERE left(id, length($1)) = $1 OR left(id, length($2)) = $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(p)
        .bind(upper)
        .bind(MAX_CANDIDATES)
        .fetch_all(&self.pool)
        .await
        .map_err(q())?
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
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
            " FROM cairn_runs WHERE ($1::text IS NULL OR runbook = $1) \
             AND ($2::text IS NULL OR status = $2) \
             ORDER BY started_at DESC, id DESC LIMIT $3"
        ))
        .bind(&filter.runbook)
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.limit.map(i64::from))
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
        // The run row is locked FOR SHARE while the checkpoint is written: a claim (an UPDATE
        // of that row) waits for this write to commit, and a write after a claim sees the new
        // attempt and writes nothing. So a resumer that claimed reads every write made before.
        let done = sqlx::query(concat!(
            "WITH owner AS (SELECT id FROM cairn_runs WHERE id = $1 AND attempt = $14 FOR SHARE) \
             INSERT INTO cairn_steps (",
            step_columns!(),
            ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM owner \
             ON CONFLICT (run_id, step_id, item) DO UPDATE SET \
             status = excluded.status, attempt = excluded.attempt, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             result = excluded.result, outputs = excluded.outputs, error = excluded.error, \
             log_path = excluded.log_path, def_hash = excluded.def_hash, \
             idempotent = excluded.idempotent"
        ))
        .bind(&rec.run_id)
        .bind(&rec.step_id)
        .bind(item_key(rec.item))
        .bind(rec.status.as_str())
        .bind(i64::from(rec.attempt))
        .bind(rec.started_at)
        .bind(rec.finished_at)
        .bind(rec.result.as_ref().map(jsonb))
        .bind(rec.outputs.as_ref().map(jsonb))
        .bind(rec.error.as_deref().map(text))
        .bind(&rec.log_path)
        .bind(&rec.def_hash)
        .bind(rec.idempotent)
        .bind(i64::from(claim.attempt))
        .execute(&self.pool)
        .await
        .map_err(not_found_or(
            &rec.run_id,
            format!("saving step `{}` of run {}", rec.step_id, rec.run_id),
        ))?;
        if done.rows_affected() == 0 {
            return Err(self.fenced(claim).await);
        }
        Ok(())
    }

    async fn sub_runs(&self, parent_run: &str) -> Result<Vec<RunRecord>, StateError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM cairn_runs WHERE parent_run = $1 ORDER BY started_at, id"
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
            " FROM cairn_steps WHERE run_id = $1 ORDER BY seq"
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
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.run_id)
        .bind(&a.step_id)
        .bind(a.decision.as_str())
        .bind(&a.by)
        .bind(a.at)
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
             WHERE run_id = $1 ORDER BY seq",
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
