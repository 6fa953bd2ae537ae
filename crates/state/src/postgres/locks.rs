//! PostgreSQL locks and heartbeats. Taking a lock is one transaction that locks the lock's
//! row (`SELECT ... FOR UPDATE`), so two hosts deciding at once are serialised by the server.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::StateError;
use crate::lock::{lease_end, lease_ms, lock_is_free, now, taken_since};
use crate::types::{Claim, LockHolder, LockInfo};

use super::rows::lock_from_row;

// Why try_lock loops: when nobody holds the lock, two hosts may both find no row; the second
// INSERT then inserts nothing (ON CONFLICT DO NOTHING waits for the first to commit), and it
// looks again, this time at the winner's row, locked FOR UPDATE.
const LOCK_ATTEMPTS: usize = 5;

/// Returns false (and renews nothing) when the claim is no longer held.
pub(super) async fn heartbeat(pool: &PgPool, claim: &Claim) -> Result<bool, StateError> {
    let run_id = claim.run_id.as_str();
    let q = || StateError::query(format!("heartbeating run {run_id}"));
    let now = now();
    let mut tx = pool.begin().await.map_err(q())?;
    let done = sqlx::query(
        "UPDATE cairn_runs SET heartbeat_at = GREATEST(heartbeat_at, $2) \
         WHERE id = $1 AND attempt = $3",
    )
    .bind(run_id)
    .bind(now)
    .bind(i64::from(claim.attempt))
    .execute(&mut *tx)
    .await
    .map_err(q())?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Each lock keeps the lease length it was taken with.
    sqlx::query(
        "UPDATE cairn_locks SET lease_until = $2 + lease_ms * interval '1 millisecond' \
         WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(q())?;
    tx.commit().await.map_err(q())?;
    Ok(true)
}

pub(super) async fn try_lock(
    pool: &PgPool,
    name: &str,
    holder: &LockHolder,
    lease: Duration,
) -> Result<Result<(), LockInfo>, StateError> {
    let q = || StateError::query(format!("taking lock `{name}`"));
    for _ in 0..LOCK_ATTEMPTS {
        let mut tx = pool.begin().await.map_err(q())?;
        let now = now();
        let row = sqlx::query(
            "SELECT l.name, l.run_id, l.host, l.pid, l.since, l.lease_until, \
             r.status AS run_status, r.host AS run_host, r.pid AS run_pid, \
             r.heartbeat_at AS run_heartbeat \
             FROM cairn_locks l LEFT JOIN cairn_runs r ON r.id = l.run_id \
             WHERE l.name = $1 FOR UPDATE OF l",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q())?;
        let Some(row) = row else {
            let inserted = sqlx::query(
                "INSERT INTO cairn_locks (name, run_id, host, pid, since, lease_until, \
                 lease_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&holder.run_id)
            .bind(&holder.host)
            .bind(i64::from(holder.pid))
            .bind(now)
            .bind(lease_end(now, lease))
            .bind(lease_ms(lease))
            .execute(&mut *tx)
            .await
            .map_err(q())?;
            if inserted.rows_affected() == 1 {
                tx.commit().await.map_err(q())?;
                return Ok(Ok(()));
            }
            continue;
        };
        let (held, holder_status) = lock_from_row(&row, now)?;
        if !lock_is_free(&held, holder_status, &holder.run_id, now) {
            return Ok(Err(held));
        }
        let since = taken_since(&held, &holder.run_id, now);
        sqlx::query(
            "UPDATE cairn_locks SET run_id = $2, host = $3, pid = $4, since = $5, \
             lease_until = $6, lease_ms = $7 WHERE name = $1",
        )
        .bind(name)
        .bind(&holder.run_id)
        .bind(&holder.host)
        .bind(i64::from(holder.pid))
        .bind(since)
        .bind(lease_end(now, lease))
        .bind(lease_ms(lease))
        .execute(&mut *tx)
        .await
        .map_err(q())?;
        tx.commit().await.map_err(q())?;
        return Ok(Ok(()));
    }
    Err(StateError::LockContended(name.to_string()))
}

pub(super) async fn release_lock(
    pool: &PgPool,
    name: &str,
    run_id: &str,
) -> Result<(), StateError> {
    sqlx::query("DELETE FROM cairn_locks WHERE name = $1 AND run_id = $2")
        .bind(name)
        .bind(run_id)
        .execute(pool)
        .await
        .map_err(StateError::query(format!("releasing lock `{name}`")))?;
    Ok(())
}

pub(super) async fn release_locks(pool: &PgPool, run_id: &str) -> Result<(), StateError> {
    sqlx::query("DELETE FROM cairn_locks WHERE run_id = $1")
        .bind(run_id)
        .execute(pool)
        .await
        .map_err(StateError::query(format!(
            "releasing the locks of run {run_id}"
        )))?;
    Ok(())
}

pub(super) async fn locks(pool: &PgPool) -> Result<Vec<LockInfo>, StateError> {
    let rows = sqlx::query(
        "SELECT name, run_id, host, pid, since, lease_until, NULL::text AS run_status, \
         NULL::text AS run_host, NULL::bigint AS run_pid, \
         NULL::timestamptz AS run_heartbeat FROM cairn_locks ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .map_err(StateError::query("listing locks"))?;
    let now = now();
    rows.iter()
        .map(|row| lock_from_row(row, now).map(|(info, _)| info))
        .collect()
}
