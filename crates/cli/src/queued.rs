//! Runs queued with `cairn submit` that no worker has started yet, for `cairn runs`: they have
//! no run record. Only a PostgreSQL store has a queue; any other has none to show.

use cairn_state::{PgStore, QueueItem, QueueStatus};

/// The queued runs not started yet, newest first (as `cairn runs` lists runs); none without
/// a queue.
pub async fn not_started(queue: Option<&PgStore>) -> anyhow::Result<Vec<QueueItem>> {
    let Some(queue) = queue else {
        return Ok(Vec::new());
    };
    Ok(queue
        .queue(0)
        .await?
        .into_iter()
        .rev()
        // A run handed back or taken over has a run record, listed with the others.
        .filter(|q| q.status == QueueStatus::Queued && q.claims == 0)
        .collect())
}

/// A queued run as `cairn runs --output json` lists it.
pub fn json(q: &QueueItem) -> serde_json::Value {
    serde_json::json!({
        "id": q.id, "status": "queued", "outcome": "queued", "path": q.path,
        "labels": q.labels, "user": q.submitter, "submitted_at": q.submitted_at,
    })
}
