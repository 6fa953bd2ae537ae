//! Steps routed to a worker (`runs_on`), on PostgreSQL only: the process running a run adds a
//! row to `cairn_step_queue` holding the step's prepared action (its secrets by name, never
//! their values), a worker whose labels contain the row's claims it as it claims runs (one
//! `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …`), performs it,
//! heartbeats it, and writes its outcome back, which the run records in its checkpoint.
//!
//! A row's id is its idempotency key: the run, the step, its item and its attempt. A run that
//! is resumed and routes the same attempt again finds the row: a step that succeeded is never
//! run again (its outcome is taken), one still running on a live worker is waited for.
//! Leases are judged by the server's clock, as for queued runs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::types::Json as Jsonb;

use super::PgStore;
use super::queue::{ItemClaim, QUEUE_CHANNEL, millis, notify, q};
use crate::error::StateError;

/// The channel a worker notifies when a routed step it ran is done (the payload is the row's
/// id); the process waiting for it listens there.
pub const STEPS_CHANNEL: &str = "cairn_steps";

/// A step to send to a worker.
#[derive(Clone, Debug)]
pub struct RoutedStep {
    /// The idempotency key: `RUN/STEP/ITEM/ATTEMPT` ([`RoutedStep::key`]).
    pub id: String,
    pub run_id: String,
    pub step_id: String,
    pub item: Option<u32>,
    /// The step's attempt (1, then +1 per retry).
    pub attempt: u32,
    /// What the worker must have.
    pub labels: BTreeMap<String, String>,
    /// The runbook whose `secrets` declare the names in `secrets` (read on the worker).
    pub path: String,
    /// The prepared action, with each secret's value replaced by a reference to its name.
    pub action: Json,
    /// The secrets the action refers to, by name.
    pub secrets: Vec<String>,
    /// Makes the references in `action` unlike any text a runbook holds.
    pub nonce: String,
    pub timeout: Option<Duration>,
    pub idempotent: bool,
}

impl RoutedStep {
    /// The idempotency key of one attempt of a step (or of one `for_each` item).
    pub fn key(run_id: &str, step: &str, item: Option<u32>, attempt: u32) -> String {
        let item = item.map_or("-".to_string(), |i| i.to_string());
        format!("{run_id}/{step}/{item}/{attempt}")
    }
}

/// A routed step as a worker claimed it.
#[derive(Clone, Debug)]
pub struct StepItem {
    pub id: String,
    pub run_id: String,
    pub step_id: String,
    pub item: Option<u32>,
    pub attempt: u32,
    pub path: String,
    pub action: Json,
    pub secrets: Vec<String>,
    pub nonce: String,
    pub timeout: Option<Duration>,
    pub idempotent: bool,
    pub claims: i64,
}

impl StepItem {
    pub fn claim(&self) -> ItemClaim {
        ItemClaim {
            id: self.id.clone(),
            claims: self.claims,
        }
    }
}

/// Where a routed step is, as the process waiting for it sees it.
#[derive(Clone, Debug)]
pub struct StepState {
    /// `queued`, `claimed` or `done`.
    pub status: String,
    pub claims: i64,
    pub worker: Option<String>,
    /// Claimed, and its worker silent for longer than the lease (by the server's clock).
    pub stale: bool,
    /// Set once done: what the worker wrote back.
    pub outcome: Option<Json>,
    pub claimed_at: Option<DateTime<Utc>>,
}

/// What [`PgStore::route_step`] found.
#[derive(Clone, Debug)]
pub enum Routed {
    /// Queued (new, or a failed or abandoned row of the same key made ready again): wait.
    Queued,
    /// A row of this key is queued or held by a live worker: wait for it.
    Pending,
    /// This attempt already succeeded (a resumed run routing it again): its outcome.
    Succeeded(Json),
}

/// Notifications with their payload (the id of the row done).
pub struct StepWakeups(PgListener);

impl StepWakeups {
    /// The next payload; `None` when the connection failed (made again on the next call;
    /// meanwhile the caller polls).
    pub async fn recv(&mut self) -> Option<String> {
        match self.0.recv().await {
            Ok(n) => Some(n.payload().to_string()),
            Err(e) => {
                tracing::debug!("routed step notifications: {e}");
                None
            }
        }
    }
}

const STEP_COLUMNS: &str = "id, run_id, step_id, item, attempt, path, action, secrets, nonce, \
     timeout_ms, idempotent, claims";

fn step_from_row(row: &PgRow) -> Result<StepItem, StateError> {
    let bad = |c: &str| {
        let c = c.to_string();
        move |e: sqlx::Error| StateError::Corrupt(format!("column `{c}` of cairn_step_queue: {e}"))
    };
    let item: i64 = row.try_get("item").map_err(bad("item"))?;
    let attempt: i64 = row.try_get("attempt").map_err(bad("attempt"))?;
    let timeout: Option<i64> = row.try_get("timeout_ms").map_err(bad("timeout_ms"))?;
    let Jsonb(secrets): Jsonb<Vec<String>> = row.try_get("secrets").map_err(bad("secrets"))?;
    let Jsonb(action): Jsonb<Json> = row.try_get("action").map_err(bad("action"))?;
    Ok(StepItem {
        id: row.try_get("id").map_err(bad("id"))?,
        run_id: row.try_get("run_id").map_err(bad("run_id"))?,
        step_id: row.try_get("step_id").map_err(bad("step_id"))?,
        item: u32::try_from(item).ok(),
        attempt: u32::try_from(attempt).unwrap_or(1),
        path: row.try_get("path").map_err(bad("path"))?,
        action,
        secrets,
        nonce: row.try_get("nonce").map_err(bad("nonce"))?,
        timeout: timeout.and_then(|t| u64::try_from(t).ok().map(Duration::from_millis)),
        idempotent: row.try_get("idempotent").map_err(bad("idempotent"))?,
        claims: row.try_get("claims").map_err(bad("claims"))?,
    })
}

impl PgStore {
    /// Queues a routed step and wakes the idle workers; see [`Routed`] for what a row of the
    /// same key already there changes. A row that failed, or whose worker has been silent
    /// past `lease`, is made ready again (the silent worker is fenced: its write-back needs
    /// the claim it had).
    pub async fn route_step(&self, s: &RoutedStep, lease: Duration) -> Result<Routed, StateError> {
        let action = format!("routing step `{}` of run {}", s.step_id, s.run_id);
        let mut tx = self.pool.begin().await.map_err(q(&action))?;
        let queued = sqlx::query(
            "INSERT INTO cairn_step_queue AS t (id, run_id, step_id, item, attempt, labels, path, \
             action, secrets, nonce, timeout_ms, idempotent, status, submitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', now()) \
             ON CONFLICT (id) DO UPDATE SET labels = EXCLUDED.labels, path = EXCLUDED.path, \
               action = EXCLUDED.action, secrets = EXCLUDED.secrets, nonce = EXCLUDED.nonce, \
               timeout_ms = EXCLUDED.timeout_ms, idempotent = EXCLUDED.idempotent, \
               status = 'queued', submitted_at = now(), worker = NULL, claimed_at = NULL, \
               heartbeat_at = NULL, finished_at = NULL, cancel = false, outcome = NULL \
             WHERE (t.status = 'done' AND NOT jsonb_exists(t.outcome, 'ok')) \
                OR (t.status = 'claimed' AND t.heartbeat_at < now() - $13 * interval '1 millisecond') \
             RETURNING t.id",
        )
        .bind(&s.id)
        .bind(&s.run_id)
        .bind(&s.step_id)
        .bind(s.item.map_or(-1, i64::from))
        .bind(i64::from(s.attempt))
        .bind(Jsonb(&s.labels))
        .bind(&s.path)
        .bind(Jsonb(&s.action))
        .bind(Jsonb(&s.secrets))
        .bind(&s.nonce)
        .bind(s.timeout.map(millis))
        .bind(s.idempotent)
        .bind(millis(lease))
        .fetch_optional(&mut *tx)
        .await
        .map_err(q(&action))?;
        let routed = if queued.is_some() {
            notify(&mut tx, QUEUE_CHANNEL, &s.id, &action).await?;
            Routed::Queued
        } else {
            let row = sqlx::query("SELECT status, outcome FROM cairn_step_queue WHERE id = $1")
                .bind(&s.id)
                .fetch_one(&mut *tx)
                .await
                .map_err(q(&action))?;
            let status: String = row.try_get("status").map_err(q(&action))?;
            let outcome: Option<Jsonb<Json>> = row.try_get("outcome").map_err(q(&action))?;
            match outcome.map(|o| o.0) {
                Some(o) if status == "done" => Routed::Succeeded(o),
                _ => Routed::Pending,
            }
        };
        tx.commit().await.map_err(q(action))?;
        Ok(routed)
    }

    /// Claims the oldest queued routed step whose labels `labels` contains, or an idempotent
    /// one whose worker has been silent past `lease` (a non-idempotent one is never run again
    /// by a claim: the run decides, as for an in-doubt step).
    pub async fn claim_next_step(
        &self,
        worker: &str,
        labels: &BTreeMap<String, String>,
        lease: Duration,
    ) -> Result<Option<StepItem>, StateError> {
        let sql = format!(
            "UPDATE cairn_step_queue SET status = 'claimed', worker = $1, claims = claims + 1, \
             claimed_at = now(), heartbeat_at = now() \
             WHERE id = (SELECT id FROM cairn_step_queue \
                 WHERE status <> 'done' AND NOT cancel \
                   AND (status = 'queued' OR (idempotent \
                        AND heartbeat_at < now() - $3 * interval '1 millisecond')) \
                   AND labels <@ $2 \
                 ORDER BY submitted_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {STEP_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(Jsonb(labels))
            .bind(millis(lease))
            .fetch_optional(&self.pool)
            .await
            .map_err(q(format!("claiming a routed step for worker {worker}")))?;
        row.as_ref().map(step_from_row).transpose()
    }

    /// Heartbeats the routed steps a worker holds; gives back those it must stop: claimed by
    /// another since, or cancelled by their run.
    pub async fn heartbeat_steps(
        &self,
        worker: &str,
        held: &[ItemClaim],
    ) -> Result<Vec<ItemClaim>, StateError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = held.iter().map(|c| c.id.as_str()).collect();
        let claims: Vec<i64> = held.iter().map(|c| c.claims).collect();
        let rows = sqlx::query(
            "UPDATE cairn_step_queue AS q SET heartbeat_at = now() \
             FROM unnest($2::text[], $3::bigint[]) AS h(id, claims) \
             WHERE q.id = h.id AND q.claims = h.claims AND q.worker = $1 \
               AND q.status = 'claimed' AND NOT q.cancel RETURNING q.id",
        )
        .bind(worker)
        .bind(&ids)
        .bind(&claims)
        .fetch_all(&self.pool)
        .await
        .map_err(q(format!("heartbeat of the steps of worker {worker}")))?;
        let kept: std::collections::HashSet<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("id").ok())
            .collect();
        Ok(held
            .iter()
            .filter(|c| !kept.contains(&c.id))
            .cloned()
            .collect())
    }

    /// Writes a routed step's outcome back and wakes the run waiting for it. Fenced: false,
    /// and nothing written, when the claim is no longer this worker's.
    pub async fn finish_step(&self, claim: &ItemClaim, outcome: &Json) -> Result<bool, StateError> {
        let action = format!("recording the end of routed step {}", claim.id);
        let mut tx = self.pool.begin().await.map_err(q(&action))?;
        let done = sqlx::query(
            "UPDATE cairn_step_queue SET status = 'done', outcome = $3, finished_at = now(), \
             heartbeat_at = now() WHERE id = $1 AND claims = $2 AND status = 'claimed'",
        )
        .bind(&claim.id)
        .bind(claim.claims)
        .bind(Jsonb(outcome))
        .execute(&mut *tx)
        .await
        .map_err(q(&action))?;
        notify(&mut tx, STEPS_CHANNEL, &claim.id, &action).await?;
        tx.commit().await.map_err(q(action))?;
        Ok(done.rows_affected() == 1)
    }

    /// A worker that stops hands a routed step it did not finish back to the queue. Fenced.
    pub async fn hand_back_step(&self, claim: &ItemClaim) -> Result<bool, StateError> {
        let action = format!("handing back routed step {}", claim.id);
        let mut tx = self.pool.begin().await.map_err(q(&action))?;
        let done = sqlx::query(
            "UPDATE cairn_step_queue SET status = 'queued', worker = NULL \
             WHERE id = $1 AND claims = $2 AND status = 'claimed'",
        )
        .bind(&claim.id)
        .bind(claim.claims)
        .execute(&mut *tx)
        .await
        .map_err(q(&action))?;
        notify(&mut tx, QUEUE_CHANNEL, &claim.id, &action).await?;
        tx.commit().await.map_err(q(action))?;
        Ok(done.rows_affected() == 1)
    }

    /// Where a routed step is.
    pub async fn step_state(&self, id: &str, lease: Duration) -> Result<StepState, StateError> {
        let action = format!("reading routed step {id}");
        let row = sqlx::query(
            "SELECT status, claims, worker, outcome, claimed_at, \
             (status = 'claimed' AND heartbeat_at < now() - $2 * interval '1 millisecond') AS stale \
             FROM cairn_step_queue WHERE id = $1",
        )
        .bind(id)
        .bind(millis(lease))
        .fetch_one(&self.pool)
        .await
        .map_err(q(&action))?;
        let outcome: Option<Jsonb<Json>> = row.try_get("outcome").map_err(q(&action))?;
        Ok(StepState {
            status: row.try_get("status").map_err(q(&action))?,
            claims: row.try_get("claims").map_err(q(&action))?,
            worker: row.try_get("worker").map_err(q(&action))?,
            stale: row.try_get("stale").map_err(q(&action))?,
            outcome: outcome.map(|o| o.0),
            claimed_at: row.try_get("claimed_at").map_err(q(action))?,
        })
    }

    /// Ends a routed step from the run's side, with `outcome`: one still queued, or (`stale`)
    /// one whose worker went silent holding claim `claims`. False when it moved on meanwhile.
    pub async fn end_step(
        &self,
        id: &str,
        claims: i64,
        outcome: &Json,
        lease: Duration,
    ) -> Result<bool, StateError> {
        let done = sqlx::query(
            "UPDATE cairn_step_queue SET status = 'done', outcome = $3, finished_at = now() \
             WHERE id = $1 AND claims = $2 AND (status = 'queued' OR (status = 'claimed' \
               AND heartbeat_at < now() - $4 * interval '1 millisecond'))",
        )
        .bind(id)
        .bind(claims)
        .bind(Jsonb(outcome))
        .bind(millis(lease))
        .execute(&self.pool)
        .await
        .map_err(q(format!("ending routed step {id}")))?;
        Ok(done.rows_affected() == 1)
    }

    /// The run no longer wants a routed step (it was cancelled): its worker's next heartbeat
    /// stops it, and no worker claims it any more.
    pub async fn cancel_step(&self, id: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE cairn_step_queue SET cancel = true WHERE id = $1 AND status <> 'done'")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q(format!("cancelling routed step {id}")))?;
        Ok(())
    }

    /// Listens for routed steps done, on a connection of its own.
    pub async fn step_wakeups(&self) -> Result<StepWakeups, StateError> {
        Ok(StepWakeups(
            self.listen(STEPS_CHANNEL, "listening for routed steps")
                .await?,
        ))
    }
}
