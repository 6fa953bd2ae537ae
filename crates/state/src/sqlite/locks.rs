//! SQLite locks and heartbeats. Taking a lock runs in a `BEGIN IMMEDIATE` transaction: it
//! holds the database's write lock from the first read, so no other process decides between
//! our read of the lock row and our write of it.

use std::time::Duration;

use sqlx::{Row, SqlitePool};

use crate::codec::ts;
use crate::error::StateError;
use crate::lock::{lease_end, lease_ms, lock_is_free, now, taken_since};
use crate::types::{Claim, LockHolder, LockInfo};

use super::rows::lock_from_row;

/// Returns false (and renews nothing) when the claim is no longer held.
pub(super) async fn heartbeat(pool: &SqlitePool, claim: &Claim) -> Result<bool, StateError> {
    let run_id = claim.run_id.as_str();
    let q = || StateError::query(format!("heartbeating run {run_id}"));
    let now = now();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(q())?;
    let done = sqlx::query(
        "UPDATE cairn_runs SET heartbeat_at = max(heartbeat_at, ?) WHERE id = ? AND attempt = ?",
    )
    .bind(ts(now))
    .bind(run_id)
    .bind(i64::from(claim.attempt))
    .execute(&mut *tx)
    .await
    .map_err(q())?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Each lock keeps the lease length it was taken with; a run holds few locks.
    let held = sqlx::query("SELECT name, lease_ms FROM cairn_locks WHERE run_id = ?")
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(q())?;
    for row in held {
        let name: String = row.try_get("name").map_err(q())?;
        let ms: i64 = row.try_get("lease_ms").map_err(q())?;
        let lease = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        sqlx::query("UPDATE cairn_locks SET lease_until = ? WHERE name = ?")
            .bind(ts(lease_end(now, lease)))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q())?;
    }
    tx.commit().await.map_err(q())?;
    Ok(true)
}

pub(super) async fn try_lock(
    pool: &SqlitePool,
    name: &str,
    holder: &LockHolder,
    lease: Duration,
) -> Result<Result<(), LockInfo>, StateError> {
    let q = || StateError::query(format!("taking lock `{name}`"));
    // IMMEDIATE takes the write lock up front: no other process can decide in between.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(q())?;
    let now = now();
    let row = sqlx::query(
        "SELECT l.name, l.run_id, l.host, l.pid, l.since, l.lease_until, \
         r.status AS run_status, r.host AS run_host, r.pid AS run_pid, \
         r.heartbeat_at AS run_heartbeat \
         FROM cairn_locks l LEFT JOIN cairn_runs r ON r.id = l.run_id WHERE l.name = ?",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(q())?;
    let mut since = now;
    if let Some(row) = row {
        let (held, holder_status) = lock_from_row(&row, now)?;
        if !lock_is_free(&held, holder_status, &holder.run_id, now) {
            return Ok(Err(held));
        }
        since = taken_since(&held, &holder.run_id, now);
    }
    sqlx::query(
        "INSERT INTO cairn_locks (name, run_id, host, pid, since, lease_until, lease_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
         run_id = excluded.run_id, host = excluded.host, pid = excluded.pid, \
         since = excluded.since, lease_until = excluded.lease_until, \
         lease_ms = excluded.lease_ms",
    )
    .bind(name)
    .bind(&holder.run_id)
    .bind(&holder.host)
    .bind(i64::from(holder.pid))
    .bind(ts(since))
    .bind(ts(lease_end(now, lease)))
    .bind(lease_ms(lease))
    .execute(&mut *tx)
    .await
    .map_err(q())?;
    tx.commit().await.map_err(q())?;
    Ok(Ok(()))
}

pub(super) async fn release_lock(
    pool: &SqlitePool,
    name: &str,
    run_id: &str,
) -> Result<(), StateError> {
    sqlx::query("DELETE FROM cairn_locks WHERE name = ? AND run_id = ?")
        .bind(name)
        .bind(run_id)
        .execute(pool)
        .await
        .map_err(StateError::query(format!("releasing lock `{name}`")))?;
    Ok(())
}

pub(super) async fn release_locks(pool: &SqlitePool, run_id: &str) -> Result<(), StateError> {
    sqlx::query("DELETE FROM cairn_locks WHERE run_id = ?")
        .bind(run_id)
        .execute(pool)
        .await
        .map_err(StateError::query(format!(
            "releasing the locks of run {run_id}"
        )))?;
    Ok(())
}

pub(super) async fn locks(pool: &SqlitePool) -> Result<Vec<LockInfo>, StateError> {
    let rows = sqlx::query(
        "SELECT name, run_id, host, pid, since, lease_until, NULL AS run_status, \
         NULL AS run_host, NULL AS run_pid, NULL AS run_heartbeat \
         FROM cairn_locks ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .map_err(StateError::query("listing locks"))?;
    let now = now();
    rows.iter()
        .map(|row| lock_from_row(row, now).map(|(info, _)| info))
        .collect()
}
