//! SQLite rows to records and back: times as RFC 3339 text, JSON as text.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::codec::{
    item_from_key, item_key, json_text, parse_enum, parse_json, parse_opt_json, parse_opt_ts,
    parse_ts, to_u32, ts,
};
use crate::error::StateError;
use crate::lock::effective_status;
use crate::types::{Approval, LockInfo, RunRecord, RunStatus, StepDef, StepRecord};

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StateError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|e| StateError::Corrupt(format!("column `{column}`: {e}")))
}

pub(super) fn run_from_row(row: &SqliteRow) -> Result<RunRecord, StateError> {
    Ok(RunRecord {
        id: get(row, "id")?,
        runbook: get(row, "runbook")?,
        path: get(row, "path")?,
        content_hash: get(row, "content_hash")?,
        inputs: parse_json(&get::<String>(row, "inputs")?)?,
        status: parse_enum(&get::<String>(row, "status")?)?,
        started_at: parse_ts(&get::<String>(row, "started_at")?)?,
        finished_at: parse_opt_ts(get(row, "finished_at")?)?,
        heartbeat_at: parse_ts(&get::<String>(row, "heartbeat_at")?)?,
        host: get(row, "host")?,
        pid: to_u32(get(row, "pid")?, "pid")?,
        user: get(row, "username")?,
        parent_run: get(row, "parent_run")?,
        outputs: parse_opt_json(get(row, "outputs")?)?,
        error: get(row, "error")?,
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        claimed_at: match get::<Option<String>>(row, "claimed_at")? {
            Some(t) => parse_ts(&t)?,
            None => parse_ts(&get::<String>(row, "started_at")?)?,
        },
        parent_step: get(row, "parent_step")?,
    })
}

pub(super) fn step_from_row(row: &SqliteRow) -> Result<StepRecord, StateError> {
    Ok(StepRecord {
        run_id: get(row, "run_id")?,
        step_id: get(row, "step_id")?,
        item: item_from_key(get(row, "item")?)?,
        status: parse_enum(&get::<String>(row, "status")?)?,
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        started_at: parse_opt_ts(get(row, "started_at")?)?,
        finished_at: parse_opt_ts(get(row, "finished_at")?)?,
        result: parse_opt_json(get(row, "result")?)?,
        outputs: parse_opt_json(get(row, "outputs")?)?,
        error: get(row, "error")?,
        log_path: get(row, "log_path")?,
        def_hash: get(row, "def_hash")?,
        idempotent: get::<i64>(row, "idempotent")? != 0,
    })
}

/// A lock row joined with its holder run: the lock, and the holder's effective status (`None`
/// when the holder run is not in the store).
pub(super) fn lock_from_row(
    row: &SqliteRow,
    now: DateTime<Utc>,
) -> Result<(LockInfo, Option<RunStatus>), StateError> {
    let info = LockInfo {
        name: get(row, "name")?,
        run_id: get(row, "run_id")?,
        host: get(row, "host")?,
        pid: to_u32(get(row, "pid")?, "pid")?,
        since: parse_ts(&get::<String>(row, "since")?)?,
        lease_until: parse_ts(&get::<String>(row, "lease_until")?)?,
    };
    let status = match get::<Option<String>>(row, "run_status")? {
        None => None,
        Some(status) => {
            let host: String = get(row, "run_host")?;
            let pid = to_u32(get(row, "run_pid")?, "pid")?;
            let heartbeat = parse_ts(&get::<String>(row, "run_heartbeat")?)?;
            Some(effective_status(
                parse_enum(&status)?,
                &host,
                pid,
                heartbeat,
                now,
            ))
        }
    };
    Ok((info, status))
}

pub(super) fn approval_from_row(row: &SqliteRow) -> Result<Approval, StateError> {
    Ok(Approval {
        run_id: get(row, "run_id")?,
        step_id: get(row, "step_id")?,
        decision: parse_enum(&get::<String>(row, "decision")?)?,
        by: get(row, "decided_by")?,
        at: parse_ts(&get::<String>(row, "decided_at")?)?,
    })
}

pub(super) async fn insert_defs(
    tx: &mut Transaction<'static, Sqlite>,
    run_id: &str,
    defs: &[StepDef],
) -> Result<(), StateError> {
    for (pos, def) in defs.iter().enumerate() {
        sqlx::query(
            "INSERT INTO cairn_step_defs (run_id, pos, step_id, def_hash, needs) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(i64::try_from(pos).unwrap_or(i64::MAX))
        .bind(&def.step_id)
        .bind(&def.def_hash)
        .bind(json_text(&serde_json::json!(def.needs)))
        .execute(&mut **tx)
        .await
        .map_err(StateError::query(format!(
            "saving the steps of run {run_id}"
        )))?;
    }
    Ok(())
}

pub(super) async fn step_defs(pool: &SqlitePool, run_id: &str) -> Result<Vec<StepDef>, StateError> {
    let rows = sqlx::query(
        "SELECT step_id, def_hash, needs FROM cairn_step_defs WHERE run_id = ? ORDER BY pos",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(StateError::query(format!(
        "reading the steps of run {run_id}"
    )))?;
    rows.iter()
        .map(|row| {
            let needs: String = get(row, "needs")?;
            Ok(StepDef {
                step_id: get(row, "step_id")?,
                def_hash: get(row, "def_hash")?,
                needs: serde_json::from_str(&needs)
                    .map_err(|e| StateError::Corrupt(format!("bad `needs` list: {e}")))?,
            })
        })
        .collect()
}

/// The step checkpoint as one autocommit statement, written only while the run's attempt is
/// still `attempt` (SQLite runs the check and the write under its one write lock): durable
/// (per the file's `sync`) on return. Returns whether it wrote.
pub(super) async fn upsert_step(
    pool: &SqlitePool,
    attempt: u32,
    rec: &StepRecord,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "INSERT INTO cairn_steps (",
        step_columns!(),
        ") SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
         WHERE EXISTS (SELECT 1 FROM cairn_runs WHERE id = ? AND attempt = ?) \
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
    .bind(rec.started_at.map(ts))
    .bind(rec.finished_at.map(ts))
    .bind(rec.result.as_ref().map(json_text))
    .bind(rec.outputs.as_ref().map(json_text))
    .bind(&rec.error)
    .bind(&rec.log_path)
    .bind(&rec.def_hash)
    .bind(i64::from(rec.idempotent))
    .bind(&rec.run_id)
    .bind(i64::from(attempt))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
