//! What this host has seen of the heartbeat counters of runs of other hosts, kept in
//! `cairn_sightings` so that every reader on the host measures from the first one's sighting
//! (see [`crate::sighting`]).

use crate::error::StateError;
use crate::lock::current_host;
use crate::sighting::{Now, Seen, Sighting, look};

use super::dialect::{Bind, Dialect, Ex};

/// Looks at `seq`, the heartbeat counter of `run_id` as just read, against this host's earlier
/// sighting, and keeps the new sighting if there is one. On `conn`, so that a lock decision
/// reads and writes it inside its own transaction.
pub(super) async fn look_at<D: Dialect>(
    conn: &mut D::Connection,
    run_id: &str,
    seq: u64,
) -> Result<Seen, StateError> {
    let q = || StateError::query(format!("watching the heartbeat of run {run_id}"));
    let observer = current_host();
    let row = D::fetch_optional(
        Ex::Conn(&mut *conn),
        sqlx::query(
            "SELECT boot_id, seq, since_ns FROM cairn_sightings \
             WHERE run_id = $1 AND observer = $2",
        )
        .text(run_id)
        .text(&observer),
    )
    .await
    .map_err(q())?;
    let earlier = match row {
        Some(row) => Some(Sighting {
            boot_id: D::text(&row, "boot_id").map_err(q())?.unwrap_or_default(),
            seq: counter(D::int(&row, "seq").map_err(q())?),
            since_ns: counter(D::int(&row, "since_ns").map_err(q())?),
        }),
        None => None,
    };
    let (seen, keep) = look(earlier.as_ref(), seq, Now::read().as_ref());
    if let Some(keep) = keep {
        let upsert = sqlx::query(
            "INSERT INTO cairn_sightings (run_id, observer, boot_id, seq, since_ns) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, observer) DO UPDATE SET \
             boot_id = excluded.boot_id, seq = excluded.seq, since_ns = excluded.since_ns",
        )
        .text(run_id)
        .text(&observer)
        .text(&keep.boot_id)
        .int(stored(keep.seq))
        .int(stored(keep.since_ns));
        D::execute(Ex::Conn(&mut *conn), upsert)
            .await
            .map_err(q())?;
    }
    Ok(seen)
}

/// A counter or boot-clock reading as stored (BIGINT): neither comes near `i64::MAX`.
pub(super) fn stored(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Back from the column; a negative value (a hand-edited row) reads as 0.
pub(super) fn counter(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}
