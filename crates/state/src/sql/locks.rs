//! Locks and heartbeats. Taking a lock is one write transaction that holds the lock's row
//! (PostgreSQL: `SELECT … FOR UPDATE`; SQLite: the database's write lock from `BEGIN
//! IMMEDIATE`), so two processes deciding at once, on any hosts, are serialised.

use std::time::Duration;

use crate::error::StateError;
use crate::lock::{lease_end, lease_ms, lock_is_free, now, taken_since};
use crate::sighting::Seen;
use crate::types::{Claim, LockHolder, LockInfo};

use super::SqlStore;
use super::dialect::{Bind, Dialect, Ex};
use super::rows::{holder_run, holder_to_watch, lock_from_row};
use super::sightings::look_at;

// Why take_lock loops: on PostgreSQL, when nobody holds the lock, two hosts may both find no
// row; the second INSERT then inserts nothing (ON CONFLICT DO NOTHING waits for the first to
// commit), and it looks again, this time at the winner's row, locked FOR UPDATE.
const LOCK_ATTEMPTS: usize = 5;

impl<D: Dialect> SqlStore<D> {
    /// Marks the run alive and renews its locks' leases; false (and nothing renewed) when
    /// the claim is no longer held.
    pub(super) async fn renew(&self, claim: &Claim) -> Result<bool, StateError> {
        let run_id = claim.run_id.as_str();
        let q = || StateError::query(format!("heartbeating run {run_id}"));
        let now = now();
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(q())?;
        let alive = sqlx::query(
            "UPDATE cairn_runs \
             SET heartbeat_at = CASE WHEN heartbeat_at > $1 THEN heartbeat_at ELSE $1 END, \
             heartbeat_seq = heartbeat_seq + 1 \
             WHERE id = $2 AND attempt = $3",
        )
        .time(now)
        .text(run_id)
        .int(i64::from(claim.attempt));
        if D::execute(Ex::Conn(&mut *tx), alive).await.map_err(q())? == 0 {
            return Ok(false);
        }
        // Each lock keeps the lease length it was taken with; a run holds few locks.
        let held = D::fetch_all(
            Ex::Conn(&mut *tx),
            sqlx::query("SELECT name, lease_ms FROM cairn_locks WHERE run_id = $1").text(run_id),
        )
        .await
        .map_err(q())?;
        for row in held {
            let name = D::text(&row, "name").map_err(q())?.unwrap_or_default();
            let ms = D::int(&row, "lease_ms").map_err(q())?.unwrap_or(0);
            let lease = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            let renew = sqlx::query("UPDATE cairn_locks SET lease_until = $1 WHERE name = $2")
                .time(lease_end(now, lease))
                .text(&name);
            D::execute(Ex::Conn(&mut *tx), renew).await.map_err(q())?;
        }
        tx.commit().await.map_err(q())?;
        Ok(true)
    }

    pub(super) async fn take_lock(
        &self,
        name: &str,
        holder: &LockHolder,
        lease: Duration,
    ) -> Result<Result<(), LockInfo>, StateError> {
        let q = || StateError::query(format!("taking lock `{name}`"));
        for _ in 0..LOCK_ATTEMPTS {
            let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(q())?;
            let now = now();
            let row = D::fetch_optional(Ex::Conn(&mut *tx), sqlx::query(D::LOCK_ROW).text(name))
                .await
                .map_err(q())?;
            let Some(row) = row else {
                let insert = sqlx::query(
                    "INSERT INTO cairn_locks (name, run_id, host, pid, since, lease_until, \
                     lease_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
                )
                .text(name)
                .text(&holder.run_id)
                .text(&holder.host)
                .int(i64::from(holder.pid))
                .time(now)
                .time(lease_end(now, lease))
                .int(lease_ms(lease));
                if D::execute(Ex::Conn(&mut *tx), insert).await.map_err(q())? == 1 {
                    tx.commit().await.map_err(q())?;
                    return Ok(Ok(()));
                }
                continue;
            };
            let held = lock_from_row::<D>(&row)?;
            let seen = match holder_to_watch::<D>(&row)? {
                Some(seq) => look_at::<D>(&mut tx, &held.run_id, seq).await?,
                None => Seen::First,
            };
            let held_for = D::int(&row, "lease_ms").map_err(q())?.unwrap_or(0);
            let held_for = Duration::from_millis(u64::try_from(held_for).unwrap_or(0));
            let holder_run = holder_run::<D>(&row, seen, now)?;
            if !lock_is_free(&held, held_for, holder_run.as_ref(), holder, now) {
                // Committed all the same: the sighting just made is what a later try measures
                // from.
                tx.commit().await.map_err(q())?;
                return Ok(Err(held));
            }
            let since = taken_since(&held, &holder.run_id, now);
            let update = sqlx::query(
                "UPDATE cairn_locks SET run_id = $2, host = $3, pid = $4, since = $5, \
                 lease_until = $6, lease_ms = $7 WHERE name = $1",
            )
            .text(name)
            .text(&holder.run_id)
            .text(&holder.host)
            .int(i64::from(holder.pid))
            .time(since)
            .time(lease_end(now, lease))
            .int(lease_ms(lease));
            D::execute(Ex::Conn(&mut *tx), update).await.map_err(q())?;
            tx.commit().await.map_err(q())?;
            return Ok(Ok(()));
        }
        Err(StateError::LockContended(name.to_string()))
    }

    /// Releases one lock (or all) of the run, only while `claim` still holds the run: a
    /// process that lost the run cannot free what the new attempt holds.
    pub(super) async fn release(
        &self,
        name: Option<&str>,
        claim: &Claim,
    ) -> Result<(), StateError> {
        let action = match name {
            Some(name) => format!("releasing lock `{name}`"),
            None => format!("releasing the locks of run {}", claim.run_id),
        };
        let q = sqlx::query(if name.is_some() {
            D::RELEASE_ONE
        } else {
            D::RELEASE_ALL
        })
        .text(&claim.run_id)
        .int(i64::from(claim.attempt));
        let q = match name {
            Some(name) => q.text(name),
            None => q,
        };
        let released = D::execute(self.pool(), q)
            .await
            .map_err(StateError::query(action))?;
        if released == 0 {
            // Nothing to release, or not ours to release any more.
            let stored = self.stored(&claim.run_id).await?;
            if let Some(run) = stored.filter(|r| r.attempt != claim.attempt) {
                return Err(StateError::Fenced {
                    run_id: claim.run_id.clone(),
                    attempt: claim.attempt,
                    holder: run.holder(),
                });
            }
        }
        Ok(())
    }

    pub(super) async fn all_locks(&self) -> Result<Vec<LockInfo>, StateError> {
        let rows = D::fetch_all(
            self.pool(),
            sqlx::query(
                "SELECT name, run_id, host, pid, since, lease_until FROM cairn_locks \
                 ORDER BY name",
            ),
        )
        .await
        .map_err(StateError::query("listing locks"))?;
        rows.iter().map(lock_from_row::<D>).collect()
    }
}
