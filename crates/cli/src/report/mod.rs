//! Reports of a run for the tools that read them: JUnit XML for CI servers, Markdown for people
//! (with a Mermaid graph), the Prometheus text format for node_exporter's textfile collector.
//! All are made from what the state store recorded, so a report of a run now and one asked for
//! later with `cairn show RUN` are the same.

pub mod console;
pub mod data;
pub mod junit;
pub mod markdown;
pub mod metrics;

use cairn_state::Store;
use std::sync::Arc;

pub use data::*;

pub fn write_all(data: &RunData, args: &ReportArgs) -> anyhow::Result<()> {
    if let Some(p) = &args.junit {
        write_atomic(p, junit::render(data).as_bytes())?;
    }
    if let Some(p) = &args.report {
        write_atomic(p, markdown::render(data).as_bytes())?;
    }
    if let Some(p) = &args.metrics_file {
        write_atomic(p, metrics::render(data).as_bytes())?;
    }
    Ok(())
}

/// Loads run `id` from the store at `url` and writes the reports asked for.
pub async fn write_for_run(
    store: &Arc<dyn Store>,
    id: &str,
    args: &ReportArgs,
) -> anyhow::Result<()> {
    if !args.any() {
        return Ok(());
    }
    let run = store
        .get_run(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no run `{id}` in the state store"))?;
    let data = RunData::load(store, run).await?;
    write_all(&data, args)
}
