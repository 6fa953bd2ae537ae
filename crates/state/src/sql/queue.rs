//! The run queue, on PostgreSQL only: `cairn submit` adds a row to `cairn_queue`, `cairn
//! worker` claims rows whose wanted labels its own labels contain, in one statement
//! (`UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …`), heartbeats what it
//! holds, and records how each ended. A claimed row whose heartbeat is older than the lease is
//! claimed again by the next worker that looks. Every time compared is the server's `now()`:
//! no worker's clock is read.
//!
//! A queued run's id is the id its run gets in `cairn_runs`, so a worker that reclaims a row
//! knows whether the run was started (resume it) or not (start it).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::types::Json as Jsonb;

use super::PgStore;
use crate::error::StateError;

/// How often a worker heartbeats itself and the queued runs it holds.
pub const WORKER_HEARTBEAT: Duration = Duration::from_secs(3);
/// A held run whose worker has not heartbeated for this long (by the server's clock) is
/// claimed by the next worker that looks, and resumed.
pub const WORKER_LEASE: Duration = Duration::from_secs(15);

/// The channel a submit notifies and idle workers listen on.
pub const QUEUE_CHANNEL: &str = "cairn_queue";

/// A run to enqueue.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The run id it will have ([`crate::new_run_id`]).
    pub id: String,
    /// The runbook's path as the workers see it (absolute).
    pub path: String,
    /// `--set` pairs, in order.
    pub sets: Vec<(String, String)>,
    /// The `--inputs` file's map, read at submit time.
    pub inputs: Option<serde_json::Map<String, Json>>,
    /// Labels a worker must have (each key with the same value) to claim it.
    pub labels: BTreeMap<String, String>,
    /// Who submitted it (the OS user, as `cairn run` records a run's user).
    pub submitter: String,
}

/// Where a queued run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it (its lease is renewed by the worker's heartbeat).
    Claimed,
    /// Its run paused on an approval: no worker holds it; answer, then `cairn resume` it.
    Paused,
    /// A worker could not go on without a human (an in-doubt step, a changed runbook): see
    /// its outcome, then `cairn resume` the run.
    Held,
    /// Its run ended (succeeded or failed), or it could not start (see its outcome).
    Done,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Queued => "queued",
            QueueStatus::Claimed => "claimed",
            QueueStatus::Paused => "paused",
            QueueStatus::Held => "held",
            QueueStatus::Done => "done",
        }
    }

    fn parse(s: &str) -> Result<Self, StateError> {
        Ok(match s {
            "queued" => QueueStatus::Queued,
            "claimed" => QueueStatus::Claimed,
            "paused" => QueueStatus::Paused,
            "held" => QueueStatus::Held,
            "done" => QueueStatus::Done,
            other => {
                return Err(StateError::Corrupt(format!(
                    "column `status` of cairn_queue: unknown status `{other}`"
                )));
            }
        })
    }
}

/// A row of the queue.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub id: String,
    pub path: String,
    pub sets: Vec<(String, String)>,
    pub inputs: Option<serde_json::Map<String, Json>>,
    pub labels: BTreeMap<String, String>,
    pub submitter: String,
    pub submitted_at: DateTime<Utc>,
    pub status: QueueStatus,
    /// The worker that holds it, or last held it.
    pub worker: Option<String>,
    /// How many times it was claimed: 1 for the first claim, one more per reclaim. Fences the
    /// holder's writes to the row.
    pub claims: i64,
    pub claimed_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended, one line.
    pub outcome: Option<String>,
}

impl QueueItem {
    /// This holder's claim: what fences its heartbeats and its end.
    pub fn claim(&self) -> ItemClaim {
        ItemClaim {
            id: self.id.clone(),
            claims: self.claims,
        }
    }
}

/// A worker's hold on a queued run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ItemClaim {
    pub id: String,
    pub claims: i64,
}

/// A worker as it registered itself.
#[derive(Clone, Debug)]
pub struct WorkerRecord {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub labels: BTreeMap<String, String>,
    pub concurrency: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Set when it exited cleanly.
    pub stopped_at: Option<DateTime<Utc>>,
    /// The queued runs it holds now.
    pub holds: Vec<String>,
    /// Seconds since its last heartbeat, by the server's clock.
    pub silent_for: f64,
}

/// Wakes an idle worker when a run is submitted (PostgreSQL `LISTEN`).
pub struct QueueWakeups(PgListener);

impl QueueWakeups {
    /// Waits for the next submit's notification: true when one came, false when the
    /// connection failed (it is made again on the next call; meanwhile the caller polls).
    pub async fn recv(&mut self) -> bool {
        match self.0.recv().await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("queue notifications: {e}");
                false
            }
        }
    }
}

const ITEM_COLUMNS: &str = "id, path, sets, inputs, labels, submitter, submitted_at, status, \
     worker, claims, claimed_at, heartbeat_at, finished_at, outcome";

pub(super) fn q(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StateError {
    StateError::query(action.into())
}

/// Wakes whoever listens on `channel` (idle workers, a run waiting for its routed step) with
/// `payload`, in the transaction of the write it announces: sent when that commits, never
/// before.
pub(super) async fn notify(
    conn: &mut sqlx::PgConnection,
    channel: &str,
    payload: &str,
    action: &str,
) -> Result<(), StateError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(conn)
        .await
        .map_err(q(action))?;
    Ok(())
}

fn labels_json(labels: &BTreeMap<String, String>) -> Jsonb<&BTreeMap<String, String>> {
    Jsonb(labels)
}

fn item_from_row(row: &PgRow) -> Result<QueueItem, StateError> {
    let bad = |c: &str| {
        let c = c.to_string();
        move |e: sqlx::Error| StateError::Corrupt(format!("column `{c}` of cairn_queue: {e}"))
    };
    let status: String = row.try_get("status").map_err(bad("status"))?;
    let Jsonb(sets): Jsonb<Vec<(String, String)>> = row.try_get("sets").map_err(bad("sets"))?;
    let inputs: Option<Jsonb<serde_json::Map<String, Json>>> =
        row.try_get("inputs").map_err(bad("inputs"))?;
    let Jsonb(labels): Jsonb<BTreeMap<String, String>> =
        row.try_get("labels").map_err(bad("labels"))?;
    Ok(QueueItem {
        id: row.try_get("id").map_err(bad("id"))?,
        path: row.try_get("path").map_err(bad("path"))?,
        sets,
        inputs: inputs.map(|j| j.0),
        labels,
        submitter: row.try_get("submitter").map_err(bad("submitter"))?,
        submitted_at: row.try_get("submitted_at").map_err(bad("submitted_at"))?,
        status: QueueStatus::parse(&status)?,
        worker: row.try_get("worker").map_err(bad("worker"))?,
        claims: row.try_get("claims").map_err(bad("claims"))?,
        claimed_at: row.try_get("claimed_at").map_err(bad("claimed_at"))?,
        heartbeat_at: row.try_get("heartbeat_at").map_err(bad("heartbeat_at"))?,
        finished_at: row.try_get("finished_at").map_err(bad("finished_at"))?,
        outcome: row.try_get("outcome").map_err(bad("outcome"))?,
    })
}

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Enqueues a run and wakes the idle workers.
    pub async fn submit(&self, s: &Submission) -> Result<(), StateError> {
        let action = format!("queueing run {}", s.id);
        let mut tx = self.pool.begin().await.map_err(q(&action))?;
        sqlx::query(
            "INSERT INTO cairn_queue (id, path, sets, inputs, labels, submitter, submitted_at, \
             status) VALUES ($1, $2, $3, $4, $5, $6, now(), 'queued')",
        )
        .bind(&s.id)
        .bind(&s.path)
        .bind(Jsonb(&s.sets))
        .bind(s.inputs.as_ref().map(Jsonb))
        .bind(labels_json(&s.labels))
        .bind(&s.submitter)
        .execute(&mut *tx)
        .await
        .map_err(q(&action))?;
        notify(&mut tx, QUEUE_CHANNEL, &s.id, &action).await?;
        tx.commit().await.map_err(q(action))
    }

    /// Records a worker starting.
    pub async fn register_worker(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        concurrency: u32,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO cairn_workers (id, host, pid, labels, concurrency, started_at, \
             heartbeat_at) VALUES ($1, $2, $3, $4, $5, now(), now())",
        )
        .bind(id)
        .bind(crate::current_host())
        .bind(i64::from(std::process::id()))
        .bind(labels_json(labels))
        .bind(i64::from(concurrency))
        .execute(&self.pool)
        .await
        .map_err(q(format!("registering worker {id}")))?;
        Ok(())
    }

    /// Records a worker's clean exit.
    pub async fn stop_worker(&self, id: &str) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE cairn_workers SET stopped_at = now(), heartbeat_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q(format!("recording the stop of worker {id}")))?;
        Ok(())
    }

    /// Claims the oldest queued run whose wanted labels `labels` contains, or a claimed one
    /// whose holder has not heartbeated for `lease`, in one statement: of several workers
    /// asking at once each gets a different row (`SKIP LOCKED`), and the row's claim count
    /// goes up by one, which fences the previous holder.
    pub async fn claim_next(
        &self,
        worker: &str,
        labels: &BTreeMap<String, String>,
        lease: Duration,
    ) -> Result<Option<QueueItem>, StateError> {
        let sql = format!(
            "UPDATE cairn_queue SET status = 'claimed', worker = $1, claims = claims + 1, \
             claimed_at = now(), heartbeat_at = now() \
             WHERE id = (SELECT id FROM cairn_queue \
                 WHERE (status = 'queued' OR (status = 'claimed' \
                        AND heartbeat_at < now() - $3 * interval '1 millisecond')) \
                   AND labels <@ $2 \
                 ORDER BY submitted_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {ITEM_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(labels_json(labels))
            .bind(millis(lease))
            .fetch_optional(&self.pool)
            .await
            .map_err(q(format!("claiming a queued run for worker {worker}")))?;
        let Some(row) = row else { return Ok(None) };
        match item_from_row(&row) {
            Ok(item) => Ok(Some(item)),
            Err(e) => {
                // A row that cannot be read (edited by hand) is held with the reason, not
                // claimed again and again by every worker.
                let id: String = row.try_get("id").unwrap_or_default();
                sqlx::query("UPDATE cairn_queue SET status = 'held', outcome = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(format!("held for a human: unreadable: {e}"))
                    .execute(&self.pool)
                    .await
                    .map_err(q(format!("holding unreadable queued run {id}")))?;
                Err(e)
            }
        }
    }

    /// Heartbeats the worker and the queued runs it holds; gives back the claims it no longer
    /// holds (taken by another worker after its lease ran out): their runs must stop.
    pub async fn heartbeat_worker(
        &self,
        worker: &str,
        held: &[ItemClaim],
    ) -> Result<Vec<ItemClaim>, StateError> {
        let action = format!("heartbeat of worker {worker}");
        sqlx::query("UPDATE cairn_workers SET heartbeat_at = now() WHERE id = $1")
            .bind(worker)
            .execute(&self.pool)
            .await
            .map_err(q(&action))?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = held.iter().map(|c| c.id.as_str()).collect();
        let claims: Vec<i64> = held.iter().map(|c| c.claims).collect();
        let rows = sqlx::query(
            "UPDATE cairn_queue AS q SET heartbeat_at = now() \
             FROM unnest($2::text[], $3::bigint[]) AS h(id, claims) \
             WHERE q.id = h.id AND q.claims = h.claims AND q.worker = $1 \
               AND q.status = 'claimed' RETURNING q.id",
        )
        .bind(worker)
        .bind(&ids)
        .bind(&claims)
        .fetch_all(&self.pool)
        .await
        .map_err(q(action))?;
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

    /// Records how a held queued run ended (or hands it back with [`QueueStatus::Queued`]).
    /// Fenced: false, and nothing written, when another worker claimed it since.
    pub async fn release_item(
        &self,
        claim: &ItemClaim,
        status: QueueStatus,
        outcome: &str,
    ) -> Result<bool, StateError> {
        let done = sqlx::query(
            "UPDATE cairn_queue SET status = $3, outcome = $4, \
             finished_at = CASE WHEN $3 = 'done' THEN now() ELSE NULL END, \
             heartbeat_at = now() \
             WHERE id = $1 AND claims = $2 AND status = 'claimed'",
        )
        .bind(&claim.id)
        .bind(claim.claims)
        .bind(status.as_str())
        .bind(outcome)
        .execute(&self.pool)
        .await
        .map_err(q(format!("recording the end of queued run {}", claim.id)))?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a paused or held queued run back in the queue (after its gate was answered), so
    /// that a worker resumes it. False when it is not paused or held.
    pub async fn requeue(&self, id: &str) -> Result<bool, StateError> {
        let action = format!("queueing run {id} again");
        let mut tx = self.pool.begin().await.map_err(q(&action))?;
        let done = sqlx::query(
            "UPDATE cairn_queue SET status = 'queued', outcome = NULL, finished_at = NULL \
             WHERE id = $1 AND status IN ('paused', 'held')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(q(&action))?;
        notify(&mut tx, QUEUE_CHANNEL, id, &action).await?;
        tx.commit().await.map_err(q(action))?;
        Ok(done.rows_affected() == 1)
    }

    /// The queue's status of run `id`; `None` when it was never queued.
    pub async fn queue_status(&self, id: &str) -> Result<Option<QueueStatus>, StateError> {
        let row = sqlx::query("SELECT status FROM cairn_queue WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q(format!("reading queued run {id}")))?;
        row.map(|r| QueueStatus::parse(r.get("status"))).transpose()
    }

    /// A run whose queued item's lease ran out, recorded `running` by the worker that lost it:
    /// saved `interrupted` so that it can be resumed. The lost worker, should it wake, is fenced
    /// by the resume's claim.
    pub async fn interrupt_abandoned(&self, run_id: &str) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE cairn_runs SET status = 'interrupted', heartbeat_seq = heartbeat_seq + 1 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(q(format!("marking run {run_id} interrupted")))?;
        Ok(())
    }

    /// The queue, oldest first: every row not done, and the last `done` ones up to `limit`.
    pub async fn queue(&self, limit: u32) -> Result<Vec<QueueItem>, StateError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM cairn_queue WHERE status <> 'done' \
             OR id IN (SELECT id FROM cairn_queue WHERE status = 'done' \
                       ORDER BY finished_at DESC LIMIT $1) \
             ORDER BY submitted_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(q("reading the run queue"))?;
        rows.iter().map(item_from_row).collect()
    }

    /// Every worker, newest first, with what it holds.
    pub async fn workers(&self) -> Result<Vec<WorkerRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT w.id, w.host, w.pid, w.labels, w.concurrency, w.started_at, \
             w.heartbeat_at, w.stopped_at, \
             EXTRACT(EPOCH FROM (now() - w.heartbeat_at))::float8 AS silent_for, \
             coalesce((SELECT array_agg(q.id ORDER BY q.id) FROM cairn_queue q \
                       WHERE q.worker = w.id AND q.status = 'claimed'), '{}') AS holds \
             FROM cairn_workers w ORDER BY w.started_at DESC, w.id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the workers"))?;
        rows.iter()
            .map(|row| {
                let bad = |e: sqlx::Error| StateError::Corrupt(format!("cairn_workers: {e}"));
                let Jsonb(labels): Jsonb<BTreeMap<String, String>> =
                    row.try_get("labels").map_err(bad)?;
                let pid: i64 = row.try_get("pid").map_err(bad)?;
                let concurrency: i64 = row.try_get("concurrency").map_err(bad)?;
                Ok(WorkerRecord {
                    id: row.try_get("id").map_err(bad)?,
                    host: row.try_get("host").map_err(bad)?,
                    pid: u32::try_from(pid).unwrap_or(0),
                    labels,
                    concurrency: u32::try_from(concurrency).unwrap_or(0),
                    started_at: row.try_get("started_at").map_err(bad)?,
                    heartbeat_at: row.try_get("heartbeat_at").map_err(bad)?,
                    stopped_at: row.try_get("stopped_at").map_err(bad)?,
                    holds: row.try_get("holds").map_err(bad)?,
                    silent_for: row.try_get("silent_for").map_err(bad)?,
                })
            })
            .collect()
    }

    /// Listens for submits, on a connection of its own.
    pub async fn queue_wakeups(&self) -> Result<QueueWakeups, StateError> {
        Ok(QueueWakeups(
            self.listen(QUEUE_CHANNEL, "listening for queued runs")
                .await?,
        ))
    }

    /// A listener on `channel` over a connection of its own, outside the store's pool: a pooled
    /// connection stays taken for as long as it listens, and a small pool (`cairn worker
    /// --pool 1`) was left with nothing for the queries the listener's owner waits on.
    pub(crate) async fn listen(
        &self,
        channel: &str,
        action: &str,
    ) -> Result<PgListener, StateError> {
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let mut l = PgListener::connect_with(&own).await.map_err(q(action))?;
        l.listen(channel).await.map_err(q(action))?;
        Ok(l)
    }
}
