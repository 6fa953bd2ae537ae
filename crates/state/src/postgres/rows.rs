//! PostgreSQL rows to records and back: TIMESTAMPTZ, JSONB, BIGINT, BOOLEAN.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row};

use crate::codec::{item_from_key, parse_enum, to_u32};
use crate::error::StateError;
use crate::lock::effective_status;
use crate::types::{Approval, LockInfo, RunRecord, RunStatus, StepDef, StepRecord};

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StateError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column)
        .map_err(|e| StateError::Corrupt(format!("column `{column}`: {e}")))
}

fn json(row: &PgRow, column: &str) -> Result<Value, StateError> {
    get::<Json<Value>>(row, column).map(|j| j.0)
}

fn opt_json(row: &PgRow, column: &str) -> Result<Option<Value>, StateError> {
    get::<Option<Json<Value>>>(row, column).map(|j| j.map(|j| j.0))
}

/// JSONB rejects the NUL character (`\u0000`), which captured output can contain; it becomes
/// U+FFFD rather than failing the checkpoint. Values without one are passed through as is.
pub(super) fn jsonb(v: &Value) -> Json<Cow<'_, Value>> {
    if has_nul(v) {
        Json(Cow::Owned(without_nul(v)))
    } else {
        Json(Cow::Borrowed(v))
    }
}

/// TEXT rejects NUL too: the same replacement for free-form text (error messages).
pub(super) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn without_nul(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(text(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (text(k).into_owned(), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub(super) fn run_from_row(row: &PgRow) -> Result<RunRecord, StateError> {
    Ok(RunRecord {
        id: get(row, "id")?,
        runbook: get(row, "runbook")?,
        path: get(row, "path")?,
        content_hash: get(row, "content_hash")?,
        inputs: json(row, "inputs")?,
        status: parse_enum(&get::<String>(row, "status")?)?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        heartbeat_at: get(row, "heartbeat_at")?,
        host: get(row, "host")?,
        pid: to_u32(get(row, "pid")?, "pid")?,
        user: get(row, "username")?,
        parent_run: get(row, "parent_run")?,
        outputs: opt_json(row, "outputs")?,
        error: get(row, "error")?,
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        claimed_at: get(row, "claimed_at")?,
        parent_step: get(row, "parent_step")?,
    })
}

pub(super) fn step_from_row(row: &PgRow) -> Result<StepRecord, StateError> {
    Ok(StepRecord {
        run_id: get(row, "run_id")?,
        step_id: get(row, "step_id")?,
        item: item_from_key(get(row, "item")?)?,
        status: parse_enum(&get::<String>(row, "status")?)?,
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        result: opt_json(row, "result")?,
        outputs: opt_json(row, "outputs")?,
        error: get(row, "error")?,
        log_path: get(row, "log_path")?,
        def_hash: get(row, "def_hash")?,
        idempotent: get(row, "idempotent")?,
    })
}

/// A lock row joined with its holder run: the lock, and the holder's effective status (`None`
/// when the holder run is not in the store).
pub(super) fn lock_from_row(
    row: &PgRow,
    now: DateTime<Utc>,
) -> Result<(LockInfo, Option<RunStatus>), StateError> {
    let info = LockInfo {
        name: get(row, "name")?,
        run_id: get(row, "run_id")?,
        host: get(row, "host")?,
        pid: to_u32(get(row, "pid")?, "pid")?,
        since: get(row, "since")?,
        lease_until: get(row, "lease_until")?,
    };
    let status = match get::<Option<String>>(row, "run_status")? {
        None => None,
        Some(status) => {
            let host: String = get(row, "run_host")?;
            let pid = to_u32(get(row, "run_pid")?, "pid")?;
            let heartbeat: DateTime<Utc> = get(row, "run_heartbeat")?;
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

pub(super) fn approval_from_row(row: &PgRow) -> Result<Approval, StateError> {
    Ok(Approval {
        run_id: get(row, "run_id")?,
        step_id: get(row, "step_id")?,
        decision: parse_enum(&get::<String>(row, "decision")?)?,
        by: get(row, "decided_by")?,
        at: get(row, "decided_at")?,
    })
}

pub(super) fn def_from_row(row: &PgRow) -> Result<StepDef, StateError> {
    Ok(StepDef {
        step_id: get(row, "step_id")?,
        def_hash: get(row, "def_hash")?,
        needs: serde_json::from_value(json(row, "needs")?)
            .map_err(|e| StateError::Corrupt(format!("bad `needs` list: {e}")))?,
    })
}

pub(super) async fn insert_defs(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    run_id: &str,
    defs: &[StepDef],
) -> Result<(), StateError> {
    for (pos, def) in defs.iter().enumerate() {
        sqlx::query(
            "INSERT INTO cairn_step_defs (run_id, pos, step_id, def_hash, needs) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run_id)
        .bind(i64::try_from(pos).unwrap_or(i64::MAX))
        .bind(&def.step_id)
        .bind(&def.def_hash)
        .bind(Json(&def.needs))
        .execute(&mut **tx)
        .await
        .map_err(StateError::query(format!(
            "saving the steps of run {run_id}"
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced_only_where_present() {
        let clean = serde_json::json!({ "a": ["x", 1] });
        assert!(matches!(jsonb(&clean).0, Cow::Borrowed(_)));
        let dirty = serde_json::json!({ "k\u{0}": ["a\u{0}b"] });
        assert_eq!(
            jsonb(&dirty).0.into_owned(),
            serde_json::json!({ "k\u{FFFD}": ["a\u{FFFD}b"] })
        );
    }
}
