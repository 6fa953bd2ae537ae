//! Rows to records, through the dialect's readers: the same decoding on both backends.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::codec::{item_from_key, parse_enum, to_u32};
use crate::error::StateError;
use crate::lock::{HolderRun, Liveness, needs_sighting};
use crate::sighting::Seen;
use crate::types::RunStatus;
use crate::types::{Action, Approval, LockInfo, RunRecord, StepDef, StepRecord, WaitingGate};

use super::dialect::{Dialect, corrupt};

fn opt_text<D: Dialect>(row: &D::Row, column: &str) -> Result<Option<String>, StateError> {
    D::text(row, column).map_err(corrupt(column))
}

fn text<D: Dialect>(row: &D::Row, column: &str) -> Result<String, StateError> {
    opt_text::<D>(row, column)?.ok_or_else(|| null(column))
}

fn int<D: Dialect>(row: &D::Row, column: &str) -> Result<i64, StateError> {
    D::int(row, column)
        .map_err(corrupt(column))?
        .ok_or_else(|| null(column))
}

fn time<D: Dialect>(row: &D::Row, column: &str) -> Result<DateTime<Utc>, StateError> {
    D::time(row, column)?.ok_or_else(|| null(column))
}

fn json<D: Dialect>(row: &D::Row, column: &str) -> Result<Value, StateError> {
    D::json(row, column)?.ok_or_else(|| null(column))
}

fn null(column: &str) -> StateError {
    StateError::Corrupt(format!("column `{column}`: unexpected NULL"))
}

pub(super) fn run_from_row<D: Dialect>(row: &D::Row) -> Result<RunRecord, StateError> {
    let started_at = time::<D>(row, "started_at")?;
    Ok(RunRecord {
        id: text::<D>(row, "id")?,
        runbook: text::<D>(row, "runbook")?,
        path: text::<D>(row, "path")?,
        content_hash: text::<D>(row, "content_hash")?,
        inputs: json::<D>(row, "inputs")?,
        labels: labels::<D>(row, "labels")?,
        status: parse_enum(&text::<D>(row, "status")?)?,
        started_at,
        finished_at: D::time(row, "finished_at")?,
        heartbeat_at: time::<D>(row, "heartbeat_at")?,
        host: text::<D>(row, "host")?,
        pid: to_u32(int::<D>(row, "pid")?, "pid")?,
        user: text::<D>(row, "username")?,
        parent_run: opt_text::<D>(row, "parent_run")?,
        outputs: D::json(row, "outputs")?,
        error: opt_text::<D>(row, "error")?,
        attempt: to_u32(int::<D>(row, "attempt")?, "attempt")?,
        // NULL only in a row written before schema version 2 and not migrated by it.
        claimed_at: D::time(row, "claimed_at")?.unwrap_or(started_at),
        parent_step: opt_text::<D>(row, "parent_step")?,
        pid_start: D::int(row, "pid_start")
            .map_err(corrupt("pid_start"))?
            .and_then(|t| u64::try_from(t).ok())
            .filter(|&t| t > 0),
        heartbeat_seq: super::sightings::counter(
            D::int(row, "heartbeat_seq").map_err(corrupt("heartbeat_seq"))?,
        ),
        unconfirmed: None,
        parent_attempt: None,
    })
}

// NULL: a run recorded before schema version 9, which has none.
fn labels<D: Dialect>(
    row: &D::Row,
    column: &str,
) -> Result<std::collections::BTreeMap<String, String>, StateError> {
    match D::json(row, column)? {
        None => Ok(std::collections::BTreeMap::new()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| StateError::Corrupt(format!("column `{column}`: bad labels: {e}"))),
    }
}

pub(super) fn step_from_row<D: Dialect>(row: &D::Row) -> Result<StepRecord, StateError> {
    Ok(StepRecord {
        run_id: text::<D>(row, "run_id")?,
        step_id: text::<D>(row, "step_id")?,
        item: item_from_key(int::<D>(row, "item")?)?,
        status: parse_enum(&text::<D>(row, "status")?)?,
        attempt: to_u32(int::<D>(row, "attempt")?, "attempt")?,
        started_at: D::time(row, "started_at")?,
        finished_at: D::time(row, "finished_at")?,
        result: D::json(row, "result")?,
        outputs: D::json(row, "outputs")?,
        error: opt_text::<D>(row, "error")?,
        log_path: opt_text::<D>(row, "log_path")?,
        def_hash: text::<D>(row, "def_hash")?,
        idempotent: D::flag(row, "idempotent").map_err(corrupt("idempotent"))?,
    })
}

pub(super) fn gate_from_row<D: Dialect>(row: &D::Row) -> Result<WaitingGate, StateError> {
    Ok(WaitingGate {
        runbook: text::<D>(row, "gate_runbook")?,
        starter: text::<D>(row, "gate_starter")?,
        labels: labels::<D>(row, "gate_labels")?,
        step: step_from_row::<D>(row)?,
    })
}

pub(super) fn def_from_row<D: Dialect>(row: &D::Row) -> Result<StepDef, StateError> {
    Ok(StepDef {
        step_id: text::<D>(row, "step_id")?,
        def_hash: text::<D>(row, "def_hash")?,
        needs: serde_json::from_value(json::<D>(row, "needs")?)
            .map_err(|e| StateError::Corrupt(format!("bad `needs` list: {e}")))?,
    })
}

pub(super) fn lock_from_row<D: Dialect>(row: &D::Row) -> Result<LockInfo, StateError> {
    Ok(LockInfo {
        name: text::<D>(row, "name")?,
        run_id: text::<D>(row, "run_id")?,
        host: text::<D>(row, "host")?,
        pid: to_u32(int::<D>(row, "pid")?, "pid")?,
        since: time::<D>(row, "since")?,
        lease_until: time::<D>(row, "lease_until")?,
    })
}

/// The heartbeat counter of a lock's holder run, from a lock row joined with it, when only the
/// counter can tell whether that run is alive (it is `running` on another host).
pub(super) fn holder_to_watch<D: Dialect>(row: &D::Row) -> Result<Option<u64>, StateError> {
    let Some(status) = opt_text::<D>(row, "run_status")? else {
        return Ok(None);
    };
    let status: RunStatus = parse_enum(&status)?;
    if !needs_sighting(status, &text::<D>(row, "run_host")?) {
        return Ok(None);
    }
    Ok(Some(super::sightings::counter(
        D::int(row, "run_seq").map_err(corrupt("heartbeat_seq"))?,
    )))
}

/// A lock's holder run (effective status, claiming process), from a lock row joined with it;
/// `None` when the holder run is not in the store. `seen`: what this host has seen of its
/// heartbeat counter ([`holder_to_watch`]).
pub(super) fn holder_run<D: Dialect>(
    row: &D::Row,
    seen: Seen,
    now: DateTime<Utc>,
) -> Result<Option<HolderRun>, StateError> {
    let Some(status) = opt_text::<D>(row, "run_status")? else {
        return Ok(None);
    };
    let host = text::<D>(row, "run_host")?;
    let pid = to_u32(int::<D>(row, "run_pid")?, "pid")?;
    let heartbeat = time::<D>(row, "run_heartbeat")?;
    let pid_start = D::int(row, "run_pid_start")
        .map_err(corrupt("pid_start"))?
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0);
    let status = parse_enum(&status)?;
    let status = Liveness {
        status,
        host: &host,
        pid,
        pid_start,
        heartbeat_at: heartbeat,
        seen,
    }
    .effective(now);
    Ok(Some(HolderRun {
        status,
        host,
        pid,
        seen,
    }))
}

pub(super) fn approval_from_row<D: Dialect>(row: &D::Row) -> Result<Approval, StateError> {
    Ok(Approval {
        run_id: text::<D>(row, "run_id")?,
        step_id: text::<D>(row, "step_id")?,
        decision: parse_enum(&text::<D>(row, "decision")?)?,
        by: text::<D>(row, "decided_by")?,
        at: time::<D>(row, "decided_at")?,
        comment: opt_text::<D>(row, "comment")?,
        host: opt_text::<D>(row, "host")?,
        tty: opt_text::<D>(row, "tty")?,
    })
}

pub(super) fn action_from_row<D: Dialect>(row: &D::Row) -> Result<Action, StateError> {
    Ok(Action {
        run_id: text::<D>(row, "run_id")?,
        at: time::<D>(row, "at")?,
        by: text::<D>(row, "by_user")?,
        source: text::<D>(row, "source")?,
        action: text::<D>(row, "action")?,
        step_id: opt_text::<D>(row, "step_id")?,
        detail: opt_text::<D>(row, "detail")?,
    })
}
