//! Runs queued with `cairn submit` that no worker has started yet, for `cairn runs`: they have
//! no run record. Only a PostgreSQL store has a queue; any other has none to show.

use cairn_state::{QueueItem, QueueStatus, Store};

/// The queued runs not started yet, newest first (as `cairn runs` lists runs).
pub async fn not_started(url: &str) -> anyhow::Result<Vec<QueueItem>> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(Vec::new());
    }
    let store = cairn_state::PgStore::connect_existing(url).await?;
    let items = store.queue(0).await;
    store.close().await;
    Ok(items?
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
