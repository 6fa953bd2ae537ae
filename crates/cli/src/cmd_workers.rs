//! `cairn workers`: the workers of a PostgreSQL state store (labels, last heartbeat, the
//! queued runs they hold) and, with `--queue`, the run queue.

use crate::exit;
use crate::location::{StateArg, open_queue, show_labels};
use crate::output::{print, print_json};
use crate::plan_view::Format;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

#[derive(clap::Args)]
pub struct Args {
    /// List the run queue instead: every queued run not done, and the latest done ones
    #[arg(long)]
    queue: bool,
    /// With --queue: at most this many done runs
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
    #[command(flatten)]
    state: StateArg,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let location = args.state.location();
    crate::runtime()?.block_on(async move {
        let store = open_queue(&location).await?;
        let code = if args.queue {
            queue(&store, &args).await
        } else {
            workers(&store, &args).await
        };
        cairn_state::Store::close(&store).await;
        code
    })
}

async fn workers(store: &cairn_state::PgStore, args: &Args) -> anyhow::Result<u8> {
    let list = store.workers().await?;
    let state = |w: &cairn_state::WorkerRecord| {
        if w.stopped_at.is_some() {
            "stopped"
        } else if w.silent_for > cairn_state::WORKER_LEASE.as_secs_f64() {
            "silent"
        } else {
            "running"
        }
    };
    if args.output == Format::Json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|w| {
                serde_json::json!({
                    "id": w.id, "host": w.host, "pid": w.pid, "labels": w.labels,
                    "concurrency": w.concurrency, "started_at": w.started_at,
                    "heartbeat_at": w.heartbeat_at, "stopped_at": w.stopped_at,
                    "state": state(w), "holds": w.holds,
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
        "worker",
        "host",
        "pid",
        "labels",
        "state",
        "last heartbeat",
        "holds",
    ]);
    for w in &list {
        t.add_row(vec![
            w.id.clone(),
            w.host.clone(),
            w.pid.to_string(),
            show_labels(&w.labels),
            state(w).to_string(),
            format!("{} ({:.0}s ago)", time(w.heartbeat_at), w.silent_for),
            if w.holds.is_empty() {
                "-".to_string()
            } else {
                w.holds.join(" ")
            },
        ]);
    }
    print(&format!("{t}\n"))?;
    Ok(exit::OK)
}

async fn queue(store: &cairn_state::PgStore, args: &Args) -> anyhow::Result<u8> {
    let list = store.queue(args.limit).await?;
    if args.output == Format::Json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|q| {
                serde_json::json!({
                    "id": q.id, "path": q.path, "labels": q.labels, "submitter": q.submitter,
                    "submitted_at": q.submitted_at, "status": q.status.as_str(),
                    "worker": q.worker, "claims": q.claims, "claimed_at": q.claimed_at,
                    "heartbeat_at": q.heartbeat_at, "finished_at": q.finished_at,
                    "outcome": q.outcome,
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
        "run",
        "runbook",
        "labels",
        "status",
        "submitted",
        "worker",
        "outcome",
    ]);
    for q in &list {
        t.add_row(vec![
            q.id.clone(),
            q.path.clone(),
            show_labels(&q.labels),
            q.status.as_str().to_string(),
            format!("{} by {}", time(q.submitted_at), q.submitter),
            q.worker.clone().unwrap_or_else(|| "-".to_string()),
            q.outcome.clone().unwrap_or_default(),
        ]);
    }
    print(&format!("{t}\n"))?;
    Ok(exit::OK)
}
